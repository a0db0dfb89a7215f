#!/bin/sh
# QEMU outlives vmgrd: kill -9 the daemon with one VM running and one
# paused, restart it, and find both re-adopted in the right states with no
# second QEMU, and manageable.  A QEMU that vanished while vmgrd was down
# comes back as crashed, reason lost.
. "$(dirname "$0")/lib.sh"
start_daemon

check "create a" vmgr create a --image tiny --memory 96M
check "create b" vmgr create b --image tiny --memory 96M
check "create c" vmgr create c --image tiny --memory 96M
check "start a" vmgr start a
check "start b" vmgr start b
check "start c" vmgr start c
check "b boots" wait_until 60 console_has b GUEST-READY
check "pause b" vmgr pause b
pa=$(vmgr info a --json | jq -r .pid)
pb=$(vmgr info b --json | jq -r .pid)
pc=$(vmgr info c --json | jq -r .pid)

kill_daemon KILL
check "QEMU of a survives vmgrd's death" kill -0 "$pa"
check "QEMU of b survives vmgrd's death" kill -0 "$pb"
kill -9 "$pc"	# c's QEMU dies while nobody watches
start_daemon

is "$(state_of a) $(vmgr info a --json | jq -r .pid)" "running $pa" \
    "a is running again, same pid"
is "$(state_of b) $(vmgr info b --json | jq -r .pid)" "paused $pb" \
    "b is paused again, same pid"
is "$(state_of c) $(vmgr info c --json | jq -r .state_reason)" \
    "crashed lost: QEMU (pid $pc) is gone" "c, whose QEMU vanished, is crashed: lost"
is "$(qemu_pids | wc -l)" 2 "no second QEMU was started"

check "a still boots to GUEST-READY" wait_until 60 console_has a GUEST-READY
check "pause a after the restart" vmgr pause a
is "$(state_of a)" paused "a is paused"
check "resume b after the restart" vmgr resume b
printf 'echo alive-$((5*5))\n' | vmgr console b >/dev/null
check "b answers on its console" wait_until 10 console_has b alive-25
check "stop a" vmgr stop a
check "a's QEMU is gone" wait_until 5 sh -c "! kill -0 $pa"
done_testing
