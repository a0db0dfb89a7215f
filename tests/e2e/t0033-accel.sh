#!/bin/sh
# The accelerator vmgrd picks runs guests: KVM only when the built-in
# guest boots under it (a host can open /dev/kvm, pass QEMU's set-up and
# still hang every guest), else TCG with the reason.  Whatever it picks,
# a guest boots.  VMGR_ACCEL=tcg, which other tests may set, is not used.
. "$(dirname "$0")/lib.sh"
unset VMGR_ACCEL
start_daemon
accel=$(vmgr host --json | jq -r .accel)
reason=$(vmgr host --json | jq -r .accel_reason)
diag "accel: $accel ($reason)"
like "$accel" '^(kvm|tcg)$' "vmgr host names the accelerator"
ok "$([ -n "$reason" ]; echo $?)" "... and why"
if [ -e /dev/kvm ] && [ "$accel" = tcg ]; then
	like "$reason" '/dev/kvm|KVM' "TCG on a host with /dev/kvm: the reason says what KVM did"
fi
if [ "$accel" = tcg ] && printf '%s' "$reason" | grep -q 'did not boot under KVM'; then
	f=/run/vmgr/kvm-probe
	[ "$(id -u)" = 0 ] || f=$STATE/kvm-probe
	like "$(cat "$f")" "^$(cut -c1-36 /proc/sys/kernel/random/boot_id) .*
hangs" "the verdict is kept for this boot of the host"
	kill_daemon TERM
	start_daemon
	is "$(vmgr host --json | jq -r .accel_reason)" "$reason" "a vmgrd started again takes it"
fi
check "create a guest" vmgr create g --image tiny --memory 128M
check "start it" vmgr start g
check "it boots on $accel" wait_until 60 console_has g GUEST-READY
is "$(vmgr info g --json | jq -r .runtime.accel)" "$accel" "on the accelerator vmgr host names"
vmgr stop g >/dev/null
done_testing
