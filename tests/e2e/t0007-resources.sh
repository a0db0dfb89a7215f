#!/bin/sh
# Enforcement and memory: a VM's cgroup files hold what `vmgr info`
# reports and follow `vmgr set`; a dynamic VM's balloon follows the
# division as a second VM arrives and leaves; save and start bring a guest
# back where it was (uptime, RAM); a save onto a full disk fails with 507
# and the VM keeps running.
. "$(dirname "$0")/lib.sh"
start_daemon --capacity-memory 300M

enforced=$(vmgr host --json | jq -r .enforcement.enforced)
diag "enforcement: $(vmgr host --json | jq -r .enforcement.reason)"
check "create d1 (dynamic)" vmgr create d1 --image tiny --memory 256M --min-memory 128M --policy dynamic
check "create d2 (dynamic)" vmgr create d2 --image tiny --memory 256M --min-memory 128M --policy dynamic
check "start d1" vmgr start d1
check "d1 boots" wait_until 60 console_has d1 GUEST-READY

alloc() { vmgr info "$1" --json | jq -r ".allocation.$2"; }
if [ "$enforced" = true ]; then
	dir=$(alloc d1 'cgroup.path')
	shares_file=$dir/cpu.shares
	[ -e "$shares_file" ] || shares_file=$dir/cpu.weight	# cgroup v2
	is "$(cat "$shares_file")" "$(alloc d1 '"cgroup"["cpu.shares"] // .cgroup["cpu.weight"]')" \
	    "the cgroup file holds the CPU weight info reports"
	is "$(alloc d1 '"cgroup"["cpu.shares"]')" 512 "weight from the entitlement: 1 vCPU x 5/10 x 1 = 0.5 -> 512 shares"
	pid=$(vmgr info d1 --json | jq .pid)
	check "QEMU runs inside the VM's cgroup" grep -q "vm-$(vmgr info d1 --json | jq .id)" /proc/$pid/cgroup
fi
check "vmgr set on a running VM" vmgr set d1 --priority 8 --weight 2
is "$(alloc d1 entitlement)" 1.6 "the entitlement follows: 1 vCPU x 8/10 x 2 = 1.6"
if [ "$enforced" = true ]; then
	is "$(cat "$shares_file")" 1638 "the cgroup follows: 1.6 -> 1638 shares"
	is "$(alloc d1 '"cgroup"["cpu.shares"]')" 1638 "and info reports it"
else
	ok 0 "# SKIP cgroup checks: cgroups are not writable here"
fi

is "$(alloc d1 balloon_target_mib)" 256 "alone, the dynamic d1 may use all it asked for (256 MiB)"
check "start d2" vmgr start d2
# d1 now has priority 8 and weight 2 (set above): e1 = 256 x 0.8 x 2 =
# 409.6 against e2 = 256 x 0.5 x 1 = 128, so of the 300 - 2 x 128 = 44 MiB
# above the floors d1 gets 44 x 409.6 / 537.6 = 33.5: 161.5, rounded 162.
is "$(alloc d1 balloon_target_mib)" 162 "with d2 the division gives d1 128 + 33.5 = 162 MiB (weighted)"
check "the guest's balloon follows (query via BALLOON_CHANGE)" \
    wait_until 20 sh -c "[ \"\$('$VMGR_BIN' --state-dir '$STATE' info d1 --json | jq .allocation.balloon_actual_mib)\" -le 164 ]"
check "stop d2" vmgr stop d2
is "$(alloc d1 balloon_target_mib)" 256 "d2 gone: d1 is back to 256 MiB"
check "... and its balloon deflates" \
    wait_until 20 sh -c "[ \"\$('$VMGR_BIN' --state-dir '$STATE' info d1 --json | jq .allocation.balloon_actual_mib)\" -ge 250 ]"

# Save and restore.
printf 'echo secret-$((6*7)) > /tmp/s; cat /proc/uptime\n' | vmgr console d1 >/dev/null
sleep 1
u1=$(vmgr console d1 --log | grep -E '^[0-9]+\.[0-9]+ [0-9.]+' | tail -1 | cut -d' ' -f1)
diag "uptime before save: $u1"
t0=$(date +%s)
qpid=$(vmgr info d1 --json | jq .pid)
out=$(vmgr save d1); rc=$?
is "$rc" 0 "save succeeds"
is "$(state_of d1)" saved "state saved"
check "QEMU is gone" sh -c "! kill -0 $qpid"
check "the state file exists" test -s "$STATE/vm/1/state.sav"
sleep 3
check "start from saved" vmgr start d1
is "$(vmgr info d1 --json | jq -r .state_reason)" "restored from saved state" "it was restored"
printf 'cat /tmp/s; cat /proc/uptime\n' | vmgr console d1 >/dev/null
check "the value written in the guest's RAM survived" wait_until 10 console_has d1 secret-42
sleep 1
u2=$(vmgr console d1 --log | grep -E '^[0-9]+\.[0-9]+ [0-9.]+' | tail -1 | cut -d' ' -f1)
elapsed=$(( $(date +%s) - t0 ))
diag "uptime after restore: $u2 ($elapsed s of wall time later)"
ok $(awk -v a="$u1" -v b="$u2" -v e="$elapsed" 'BEGIN { exit !(b >= a && b < a + e - 2) }'; echo $?) \
    "the uptime continues from where it was (not rebooted, no jump over the saved time)"
is "$(vmgr console d1 --log | grep -c GUEST-READY)" 0 "the guest did not boot again"

# A save onto a full disk: the VM's directory on a 16 MiB filesystem.
if [ "$(id -u)" = 0 ]; then
	check "stop d2's cgroup free; stop d1" vmgr stop d1
	id1=$(vmgr info d1 --json | jq .id)
	mount -t tmpfs -o size=16M vmgr-test-full "$STATE/vm/$id1"
	check "start d1 with its directory on a small filesystem" vmgr start d1
	check "boots" wait_until 60 console_has d1 GUEST-READY
	out=$(api POST /v1/vms/d1/save)
	like "$out" '^507 .*no_space.*it keeps running' "save onto a full disk: 507, saying the VM keeps running"
	is "$(state_of d1)" running "the VM is still running"
	printf 'echo still-$((3+4))\n' | vmgr console d1 >/dev/null
	check "and answers on its console" wait_until 10 console_has d1 still-7
	check "stop d1" vmgr stop d1
	umount "$STATE/vm/$id1"
else
	ok 0 "# SKIP full-disk save: needs root to mount a small filesystem"
fi
done_testing
