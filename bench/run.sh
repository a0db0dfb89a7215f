#!/bin/sh
# bench/run.sh [--quick] [--libvirt] [-n ITERATIONS]: `make bench`.
# Measures, in one run on this machine: the raw QEMU floor, vmgr through its
# CLI and its API, optionally libvirt through virsh, and vmgrd at scale;
# prints one table and writes build/bench/results.json.  See bench/README.md.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
OUT=${VMGR_BENCH_OUT:-$B/bench}
N=20
QUICK=0
LIBVIRT=0
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1; N=1; export VMGR_BENCH_BOOT_S=0 ;;
	--libvirt) LIBVIRT=1 ;;
	-n) N=$2; shift ;;
	*) echo "usage: bench/run.sh [--quick] [--libvirt] [-n N]" >&2; exit 2 ;;
	esac
	shift
done
mkdir -p "$OUT"
rm -f "$OUT"/*.json
STATE=$(mktemp -d /tmp/vmgr-bench.XXXXXX)
V="$B/vmgr --state-dir $STATE"
say() { echo "bench: $*" >&2; }

# 20 and 10 one-vCPU guests on a small host: let fixed vCPUs overcommit
# beyond the default 4x, or the scheduler (rightly) queues some of them.
"$B/vmgrd" --state-dir "$STATE" --foreground --cpu-ratio 16 \
    >"$STATE/vmgrd.out" 2>&1 &
DPID=$!
cleanup() {
	for p in $(pgrep -f "qemu-system.*$STATE/vm/" || true); do kill -9 "$p" 2>/dev/null || true; done
	kill "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	rm -rf "$STATE"
}
trap cleanup EXIT
i=0
until $V host >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || { cat "$STATE/vmgrd.out" >&2; exit 1; }
	sleep 0.05
done
rss() { awk '/^VmRSS/ {print $2}' /proc/$DPID/status; }	# KiB
ticks() { awk '{print $14 + $15}' /proc/$DPID/stat; }
accel=$($V host --json | jq -r .accel)
qemu=$($V host --json | jq -r .qemu_version)
rss_idle=$(rss)

say "floor: QEMU + QMP directly, $N iterations ($accel)"
"$B/floor" -n "$N" -a "$accel" -d "$B/images/tiny" -t "$STATE" \
    -b "$([ "$QUICK" = 1 ] && echo 0 || echo 6)" -o "$OUT/floor.json"

say "vmgr: CLI and API, $N iterations"
$V create b --image tiny --vcpus 1 --memory 128M >/dev/null
"$B/vmgrbench" seq -n "$N" -o "$STATE/cli-life.json" \
    "start=$B/vmgr --state-dir $STATE start b" \
    "list=$B/vmgr --state-dir $STATE list" \
    "info=$B/vmgr --state-dir $STATE info b" \
    "stop=$B/vmgr --state-dir $STATE stop b"
"$B/vmgrbench" api -n "$N" -s "$STATE/vmgrd.sock" -v b -m lifecycle \
    -o "$STATE/api-life.json"
# Pause and resume are timed on a guest that has booted: a booting TCG
# guest keeps a core busy and makes every column noisier.
$V start b >/dev/null
booted() { $V console b --log | grep -q GUEST-READY; }
i=0; until booted || [ $i -gt 300 ]; do sleep 0.1; i=$((i + 1)); done
"$B/vmgrbench" seq -n "$N" -o "$STATE/cli-pr.json" \
    "pause=$B/vmgr --state-dir $STATE pause b" \
    "resume=$B/vmgr --state-dir $STATE resume b"
"$B/vmgrbench" api -n "$N" -s "$STATE/vmgrd.sock" -v b -m pauseresume \
    -o "$STATE/api-pr.json"
$V stop b >/dev/null
$V delete b >/dev/null
merge() { jq -s '{ops: (.[0].ops + .[1].ops)}' "$1" "$2"; }
merge "$STATE/cli-life.json" "$STATE/cli-pr.json" >"$OUT/vmgr-cli.json"
merge "$STATE/api-life.json" "$STATE/api-pr.json" >"$OUT/vmgr-api.json"

if [ "$LIBVIRT" = 1 ]; then
	say "libvirt: virsh, $N iterations"
	"$top/bench/libvirt.sh" "$N" "$OUT/libvirt.json"
fi

say "backup: full against cp, incremental against full"
"$top/bench/backup.sh" "$([ "$QUICK" = 1 ] && echo 64 || echo 1024)" "$OUT/backup.json"

if [ "$QUICK" = 0 ]; then
	say "a real OS: Debian 12 booted by SeaBIOS and OVMF, vmgr and the floor"
	"$top/bench/debian.sh" "$OUT/debian.json"
	say "the guest agent: guest-ping, and the freeze window of backups under write load"
	"$top/bench/agent.sh" "$OUT/agent.json"
	say "live migration: idle and dirtying guests, vmgr and the floor"
	"$top/bench/migrate.sh" "$OUT/migrate.json" 5
	if [ "$(id -u)" = 0 ]; then
		say "networks: isolated (on the kernel's bridges, then vmgrd's own switch) and bridge, NAT by passt and slirp"
		"$top/bench/net.sh" "$OUT/net.json"
	fi
fi

if [ "$QUICK" = 1 ]; then
	say "load: 10 clients, 2 VMs, 5 s"
	"$top/bench/load.sh" 2 10 5 "$OUT/load.json"
else
	say "load: 50 clients, 10 VMs, 60 s"
	"$top/bench/load.sh" 10 50 60 "$OUT/load.json"
fi

if [ "$QUICK" = 0 ]; then
	say "scale: 100 defined VMs"
	for k in $(seq -w 1 100); do
		$V create "s$k" --image tiny --memory 64M >/dev/null
	done
	rss_100=$(rss)
	"$B/vmgrbench" seq -n "$N" -o "$OUT/scale-list.json" \
	    "list100=$B/vmgr --state-dir $STATE list"
	# The sampler's CPU per sample over a window (GET /v1/host "monitor").
	mon() { $V host --json | jq '.monitor.samples, .monitor.cpu_us_per_sample * .monitor.samples' | tr '\n' ' '; }
	window() {	# window SECONDS -> us of CPU per sample in it
		set -- "$1" $(mon); sleep "$1"; set -- "$@" $(mon)
		echo "$2 $3 $4 $5" | awk '{printf "%.1f", ($4 - $2) / ($3 - $1)}'
	}
	say "monitor: sampling 1, 10, 20 and 30 running guests"
	$V start s001 >/dev/null
	mon_1=$(window 5)
	for k in $(seq -w 2 10); do $V start "s0$k" >/dev/null; done
	mon_10=$(window 5)
	say "scale: 20 running guests"
	for k in $(seq -w 11 20); do $V start "s0$k" >/dev/null; done
	running=$($V list --json | jq '[.[] | select(.state == "running")] | length')
	[ "$running" = 20 ] || { say "only $running of 20 run"; exit 1; }
	sleep 10	# let them boot and settle
	rss_20=$(rss)
	t0=$(ticks); sleep 10; t1=$(ticks)
	cpu_pct=$(echo "$t0 $t1 $(getconf CLK_TCK)" | awk '{printf "%.2f", ($2 - $1) / $3 / 10 * 100}')
	say "scale: 10 VMs started at once (30 running then)"
	set --
	for k in $(seq 21 30); do
		set -- "$@" "s0$k=$B/vmgr --state-dir $STATE start s0$k"
	done
	"$B/vmgrbench" par -o "$OUT/scale-par.json" "$@"
	running=$($V list --json | jq '[.[] | select(.state == "running")] | length')
	[ "$running" = 30 ] || { say "only $running of 30 run"; exit 1; }
	mon_30=$(window 5)
	"$B/vmgrbench" get -n "$N" -s "$STATE/vmgrd.sock" -p /metrics \
	    -o "$OUT/metrics30.json"
	for k in $(seq -w 1 30); do $V stop "s0$k" >/dev/null; done
	jq -n --argjson m1 "$mon_1" --argjson m10 "$mon_10" --argjson m30 "$mon_30" \
	    '{cpu_us_per_sample: {"1": $m1, "10": $m10, "30": $m30}}' >"$OUT/monitor.json"
	say "scheduler: pure decisions, 1,000 running and 10,000 queued"
	"$B/schedbench" -o "$OUT/schedbench.json" >/dev/null
	say "scheduler: rr among 50 VMs on a host for two, 20 s"
	S2=$(mktemp -d /tmp/vmgr-bench-rr.XXXXXX)
	V2="$B/vmgr --state-dir $S2"
	"$B/vmgrd" --state-dir "$S2" --foreground --capacity-memory 300M \
	    --policy rr --quantum 2s >"$S2/vmgrd.out" 2>&1 &
	D2=$!
	i=0; until $V2 host >/dev/null 2>&1 || [ $i -gt 600 ]; do sleep 0.05; i=$((i + 1)); done
	for k in $(seq -w 1 50); do
		$V2 create "r$k" --image tiny --memory 128M --preemptible >/dev/null
		$V2 start "r$k" >/dev/null
	done
	c0=$(awk '{print $14 + $15}' /proc/$D2/stat)
	p0=$($V2 scheduler --json | jq '.stats.passes')
	sleep 20
	c1=$(awk '{print $14 + $15}' /proc/$D2/stat)
	st=$($V2 scheduler --json)
	preempt=$($V2 events --json --limit 100000 | jq '[.[] | select(.event == "save" and .actor == "scheduler")] | length')
	# The queued first (newest first), so no stop admits another.
	for k in $(seq -w 50 -1 1); do $V2 stop "r$k" >/dev/null 2>&1 || true; done
	kill $D2; wait $D2 2>/dev/null || true
	for p in $(pgrep -f "qemu-system.*$S2/vm/" || true); do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$S2"
	echo "$st" | jq --argjson c0 "$c0" --argjson c1 "$c1" --argjson p0 "$p0" \
	    --argjson pre "$preempt" --argjson hz "$(getconf CLK_TCK)" '{
	    passes: (.stats.passes - $p0), cpu_us_per_pass: .stats.cpu_us_per_pass,
	    preemptions: $pre, daemon_cpu_pct: (($c1 - $c0) / $hz / 20 * 100)}' \
	    >"$OUT/rr.json"
	jq -n --argjson idle "$rss_idle" --argjson d100 "$rss_100" \
	    --argjson r20 "$rss_20" --argjson cpu "$cpu_pct" '{
	    rss_idle_kib: $idle, rss_100_defined_kib: $d100,
	    rss_20_running_kib: $r20, cpu_pct_20_running: $cpu,
	    per_defined_vm_kib: (($d100 - $idle) / 100),
	    per_running_vm_kib: (($r20 - $d100) / 20)}' >"$OUT/scale.json"
fi

jq -n --arg accel "$accel" --arg qemu "$qemu" --argjson n "$N" \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg host "$(uname -r), $(nproc) cpus" \
    '{meta: {date: $date, accel: $accel, qemu: $qemu, iterations: $n, host: $host}}' \
    >"$OUT/meta.json"
"$top/bench/report.sh" "$OUT"
