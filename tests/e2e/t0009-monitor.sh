#!/bin/sh
# Monitoring: a guest that burns CPU shows about one core and an idle one
# little; CPU seconds only grow; 20 MiB written in the guest shows as disk
# write bytes; /metrics passes promtool and agrees with `vmgr stats`;
# history has the right number of samples through pause, stop and crash;
# a QEMU that stops answering (SIGSTOP) holds up neither the other VMs'
# samples nor the API.
. "$(dirname "$0")/lib.sh"
export VMGR_ROLLUP_SECONDS=2	# rollups every 2 s instead of every minute
start_daemon --sample-interval 1

check "create busy (with a disk)" vmgr create busy --image tiny --disk new:1G
check "create idle" vmgr create idle --image tiny
check "start busy" vmgr start busy
check "start idle" vmgr start idle
check "both boot" wait_until 90 sh -c "'$VMGR_BIN' --state-dir '$STATE' console busy --log | grep -q GUEST-READY && '$VMGR_BIN' --state-dir '$STATE' console idle --log | grep -q GUEST-READY"
sleep 2
printf 'while :; do :; done &\n' | vmgr console busy >/dev/null
sleep 5
st() { vmgr stats "$1" --json | jq -r "$2"; }
cb=$(st busy .cpu_percent); ci=$(st idle .cpu_percent)
diag "cpu: busy $cb%, idle $ci%"
ok $(awk -v v="$cb" 'BEGIN { exit !(v >= 60 && v <= 130) }'; echo $?) "a busy guest uses about one core ($cb%)"
ok $(awk -v v="$ci" 'BEGIN { exit !(v < 30) }'; echo $?) "an idle guest uses little ($ci%)"
mono=$(vmgr stats busy --history 6 --json | jq '[.samples[].cpu_seconds] | . == sort')
is "$mono" true "CPU seconds increase monotonically"
is "$(vmgr stats idle --json | jq 'has("nics")')" false "no made-up NIC counters (user-mode NAT keeps none)"

printf 'dd if=/dev/zero of=/dev/vda bs=1M count=20 conv=fsync 2>/dev/null; echo dd-done-$((20+1))\n' | vmgr console busy >/dev/null
check "the guest wrote 20 MiB" wait_until 60 console_has busy dd-done-21
sleep 2.5
wb=$(st busy '.disks[0].write_bytes')
ok $(( wb < 20971520 )) "disk write bytes >= 20 MiB ($wb)"

m=$(curl -s --unix-socket "$STATE/vmgrd.sock" http://x/metrics)
if command -v promtool >/dev/null; then
	echo "$m" | promtool check metrics >"$STATE/promtool.out" 2>&1
	ok $? "promtool check metrics passes"
else
	ok 0 "# SKIP promtool is not installed"
fi
is "$(echo "$m" | sed -n 's/^vmgr_vm_disk_write_bytes_total{vm="busy",disk="disk0"} //p')" \
    "$(st busy '.disks[0].write_bytes')" "/metrics and stats agree on disk write bytes"
mc=$(echo "$m" | sed -n 's/^vmgr_vm_cpu_seconds_total{vm="idle"} //p')
sc=$(st idle .cpu_seconds)
ok $(awk -v a="$mc" -v b="$sc" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1.5) }'; echo $?) \
    "/metrics and stats agree on CPU seconds ($mc vs $sc)"
is "$(echo "$m" | grep -c '^vmgr_vm_state{vm="busy",state="running"} 1$')" 1 "vmgr_vm_state says running"

n=$(vmgr stats idle --history 5 --json | jq '.samples | length')
ok $(( n < 4 || n > 6 )) "a 5 s window at 1 s holds 5 samples ($n)"
r=$(vmgr stats busy --history 2h --json)
is "$(echo "$r" | jq .resolution_s)" 2 "history beyond the hour comes from the rollups"
n=$(echo "$r" | jq '.samples | length')
ok $(( n < 5 )) "... which hold a sample per period ($n)"
is "$(echo "$r" | jq '[.samples[].cpu_seconds] | . == sort')" true "... in order, CPU seconds growing"
like "$(vmgr stats busy --history 2h)" 'every 2s, averaged' "the CLI says they are averages"

# A wedged QEMU: the other VM's samples and the API go on.
pb=$(vmgr info busy --json | jq .pid)
kill -STOP "$pb"
sleep 4
age=$(( $(date +%s%3N) - $(st idle .time_ms) ))
ok $(( age > 2500 )) "the other VM is still sampled while busy's QEMU is stopped (last sample ${age} ms old)"
t0=$(date +%s%N); vmgr list >/dev/null; t1=$(date +%s%N)
ok $(( (t1 - t0) / 1000000 > 500 )) "the API answers at once ($(( (t1 - t0) / 1000000 )) ms)"
is "$(st busy .stale)" true "the wedged VM's disk counters are marked stale"
kill -CONT "$pb"

# Pause, stop and crash in the middle of a window.
check "pause idle" vmgr pause idle
sleep 2
check "stop idle" vmgr stop idle
h=$(vmgr stats idle --history 15 --json)
like "$(echo "$h" | jq -r '[.samples[].state] | unique | join(" ")')" 'paused' "history shows the paused samples"
n=$(echo "$h" | jq '.samples | length')
ok $(( n < 10 )) "history still serves the samples before the stop ($n)"
kill -9 "$pb"
check "busy crashed" wait_until 3 has_state busy crashed
n=$(vmgr stats busy --history 60 --json | jq '.samples | length')
ok $(( n < 20 )) "and a crashed VM's history is still there ($n samples)"
like "$(vmgr stats busy)" 'last sample; the VM is not running' "stats says the VM no longer runs"
like "$(vmgr top --once)" 'NAME +STATE +CPU%' "vmgr top --once prints its table"
done_testing
