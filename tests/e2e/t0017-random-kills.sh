#!/bin/sh
# Random kills: a loop of operations picked at random (VMs made and
# deleted, volumes made, cloned and deleted, a running guest paused and
# resumed, snapshots taken and deleted live, full and incremental backups,
# prunes) in which vmgrd is killed with SIGKILL at a random moment every few
# operations, while an operation is in flight.  After every restart and at
# the end, the invariants of lib.sh hold.  VMGR_KILL_OPS sets the number of
# operations (default 200); the seed is printed, VMGR_KILL_SEED replays it.
. "$(dirname "$0")/lib.sh"
start_daemon

OPS=${VMGR_KILL_OPS:-200}
SEED=${VMGR_KILL_SEED:-$(date +%s)}
diag "seed $SEED, $OPS operations"
# A stream of pseudo-random numbers from the seed, one per line.
awk -v s="$SEED" -v n=$((OPS * 4)) 'BEGIN { srand(s); for (i = 0; i < n; i++) print int(rand() * 1000) }' \
    >"$STATE/rand"
exec 3<"$STATE/rand"
rnd() { read -r _r <&3; echo "$_r"; }	# 0..999

check "create w with a disk" vmgr create w --image tiny --disk new:1G
check "start w" vmgr start w
check "w boots" wait_until 60 console_has w GUEST-READY

op() {	# one random operation, in the background
	k=$1
	case $(( $(rnd) % 12 )) in
	0) vmgr create "e$k" --image tiny ;;
	1) vmgr delete "$(vmgr list --json | jq -r '[.[] | select(.name != "w")][0].name // "none"')" ;;
	2) vmgr volume create "v$k" --size 16M ;;
	3) vmgr volume create "c$k" --from "$(vmgr volume list --json | jq -r '[.[] | select(.name | startswith("v")) | select(.used_by == null)][0].name // "none"')" ;;
	4) vmgr volume delete "$(vmgr volume list --json | jq -r '[.[] | select(.used_by == null) | select(.clones == 0)][0].name // "none"')" ;;
	5) vmgr pause w; vmgr resume w ;;
	6) vmgr snapshot create w "s$k" ;;
	7) vmgr snapshot delete w "$(vmgr snapshot list w --json | jq -r '.[0].name // "none"')" ;;
	8) vmgr backup create w ;;
	9|10) vmgr backup create w --incremental ;;
	11) vmgr backup prune w --keep 2 ;;
	esac >/dev/null 2>&1
}

kills=0 k=0
while [ $k -lt "$OPS" ]; do
	k=$((k + 1))
	if [ $(( $(rnd) % 6 )) = 0 ]; then
		# Kill vmgrd while this operation is in flight.
		op "$k" &
		opid=$!
		sleep "0.$(printf '%03d' "$(rnd)")"
		kill -9 "$_daemon_pid" 2>/dev/null
		wait "$_daemon_pid" 2>/dev/null
		_daemon_pid=
		wait "$opid" 2>/dev/null
		kills=$((kills + 1))
		start_daemon
		# A paused-by-us w may be left paused by a kill: that is its state.
		has_state w paused && vmgr resume w >/dev/null 2>&1
		_before=$_failed
		invariants "after kill $kills (operation $k)"
		[ "$_failed" = "$_before" ] || fail_diag "the kill at operation $k broke something (seed $SEED; VMGR_KILL_SEED=$SEED replays it)"
	else
		op "$k"
	fi
done
diag "$kills kills in $OPS operations"
is "$(state_of w)" running "w ran through it all"
invariants "at the end"
check "a full backup of w still works" vmgr backup create w
check "and an incremental after it" vmgr backup create w --incremental
check "stop w" vmgr stop w

done_testing
