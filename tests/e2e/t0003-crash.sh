#!/bin/sh
# A QEMU killed while vmgrd runs makes its VM crashed at once, with an
# event; start works again.  A guest that powers off by itself makes its
# VM created.  A shutdown the guest ignores is forced after the timeout.
. "$(dirname "$0")/lib.sh"
start_daemon

check "create web" vmgr create web --image tiny
check "start web" vmgr start web
pid=$(vmgr info web --json | jq -r .pid)
kill -9 "$pid"
check "killing QEMU makes the VM crashed within a second" \
    wait_until 1 has_state web crashed
like "$(vmgr info web --json | jq -r .state_reason)" 'killed by signal 9' \
    "the reason names the signal"
is "$(vmgr events web --json | jq -r '.[-1] | .from + ">" + .to + ":" + .event')" \
    "running>crashed:crash" "the crash is an event"
for a in pause resume shutdown; do
	like "$(api POST /v1/vms/web/$a)" "^409 .*it is crashed \\(crashed allows: start, stop, delete\\)" \
	    "$a on a crashed VM: 409"
done
check "start works again after a crash" vmgr start web
check "... and the guest boots" wait_until 60 console_has web GUEST-READY
check "QMP is connected after the restart" \
    sh -c "'$VMGR_BIN' --state-dir '$STATE' info web --json | jq -e '.runtime.qmp_connected'"

printf 'poweroff\n' | vmgr console web >/dev/null
check "a guest that powers off by itself: created" wait_until 20 has_state web created
is "$(vmgr info web --json | jq -r .state_reason)" "guest powered off" \
    "the reason says the guest powered off"
is "$(vmgr events web --json | jq -r '.[-1].event')" guest_off \
    "recorded as guest_off"

# A guest that ignores the power button (its acpid killed) is forced off
# when the timeout runs out.
check "start again" vmgr start web
check "boots" wait_until 60 console_has web GUEST-READY
printf 'killall acpid; echo acpid-gone-$((2*2))\n' | vmgr console web >/dev/null
check "the guest no longer listens to the button" wait_until 10 console_has web acpid-gone-4
t0=$(date +%s)
check "shutdown --timeout 3s returns" vmgr shutdown web --timeout 3s
t1=$(date +%s)
is "$(state_of web)" created "a forced shutdown ends in created"
is "$(vmgr info web --json | jq -r .state_reason)" "shutdown timed out; forced off" \
    "the reason says it was forced"
ok $(( t1 - t0 < 3 || t1 - t0 > 10 )) "it waited for the timeout ($((t1 - t0)) s)"
done_testing
