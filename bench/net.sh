#!/bin/sh
# bench/net.sh OUT.json [SECONDS] [ROUNDS]: the networks between two guests of the
# Debian 12 image (`vmgr image build debian-12`, cached in
# build/image-cache; iperf3 is in it), 1 vCPU and 512 MiB each, side by
# side in one run: TCP throughput with iperf3 (SECONDS each way, default
# 8) and round-trip time (ping -c 100), ROUNDS times (default 3, medians;
# the order alternates), over a vmgr isolated network and over a vmgr
# bridge, and guest to host through a port forward over NAT, with each
# NAT backend this host has (passt, QEMU's slirp).  The isolated network
# is measured on each switch vmgrd has: first what it picks (the
# kernel's bridges in its namespace, as root), then, with vmgrd started
# again with --switch user and the guests too, vmgrd's own switch; each
# phase has bridge runs of its own, and ratios are to those.  While the
# isolated network is saturated: vmgrd's CPU (its switch thread and the
# whole process) per Gbit/s forwarded, and `vmgr list`'s latency
# (p50/p99).  Needs root (the bridge).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
OUT=$1
SECS=${2:-8}
ROUNDS=${3:-3}
STATE=$(mktemp -d /tmp/vmgr-bench-net.XXXXXX)
V="$B/vmgr --state-dir $STATE"
D=
start_vmgrd() {	# start_vmgrd [ARGS]: a vmgrd on STATE (the VMs go on)
	VMGR_IMAGE_CACHE=$B/image-cache "$B/vmgrd" --state-dir "$STATE" \
	    --foreground "$@" >>"$STATE/vmgrd.out" 2>&1 &
	D=$!
	i=0; until $V host >/dev/null 2>&1 || [ $i -gt 600 ]; do sleep 0.05; i=$((i + 1)); done
}
cleanup() {
	set +e		# every step, whatever failed before
	# vmgrd takes down what it made: the VMs' taps, the bridge, its DHCP.
	for g in na nb; do $V stop $g >/dev/null 2>&1; $V delete $g >/dev/null 2>&1; done
	for n in br lan; do $V network delete $n >/dev/null 2>&1; done
	pkill -9 -f "qemu-system.*$STATE/" 2>/dev/null || true
	[ -z "$D" ] || { kill $D 2>/dev/null; wait $D 2>/dev/null; }
	# The namespace of the kernel's switch, bound in the state dir.
	umount "$STATE/net/ns" 2>/dev/null
	rm -rf "$STATE"
}
trap cleanup EXIT
start_vmgrd

$V image build debian-12 >/dev/null
$V network create lan --subnet 10.81.0.0/24 >/dev/null
$V network create br --type bridge --subnet 10.82.0.0/24 >/dev/null
P=$((31000 + $$ % 2000))
for g in a b; do
	P=$((P + 1))
	$V create "n$g" --image debian-12 --vcpus 1 --memory 512M \
	    --nic nat --forward "tcp:$P:5201" --nic lan --nic br >/dev/null
	$V start "n$g" >/dev/null
done
agent_up() { [ "$($V info "$1" --json | jq -r .guest.agent)" = connected ]; }
for g in na nb; do
	i=0
	until agent_up $g; do
		[ $i -lt 900 ] || { echo "net.sh: $g's agent never connected" >&2; exit 1; }
		sleep 0.5; i=$((i + 1))
	done
done
gx() { $V exec "$@"; }	# gx VM [--timeout T] -- COMMAND...
# Each guest's address on each network, as the guest has it.
addr() {	# addr VM NIC
	gx "$1" -- sh -c "ip -4 -o addr show eth$2 | awk '{print \$4}' | cut -d/ -f1"
}
i=0
until [ -n "$(addr nb 2)" ]; do	# the bridge's DHCP
	[ $i -lt 120 ] || { echo "net.sh: nb has no address on br" >&2; exit 1; }
	sleep 0.5; i=$((i + 1))
done
lan_b=$(addr nb 1) br_b=$(addr nb 2)
for g in na nb; do
	gx $g -- sh -c 'iperf3 -s -D >/dev/null 2>&1' >/dev/null
done
sleep 1

pct() {	# pct P FILE: the P-th percentile of the numbers in FILE
	sort -n "$2" | awk -v p="$1" '{a[NR] = $1} END {i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; print a[i]}'
}
ticks() { awk '{print $14 + $15} END {if (NR == 0) print 0}' "$1"; }
switch_stat() {
	for t in /proc/$D/task/*; do
		[ "$(cat "$t/comm")" = vmgr-switch ] && { echo "$t/stat"; return; }
	done
	echo /dev/null
}
say() { echo "net.sh: $*" >&2; }
# mbit JSON_FILE WHAT: the received side's Mbit/s of an iperf3 -J run.
mbit() {
	jq -e '.end.sum_received.bits_per_second / 1e6 | floor' "$1" 2>/dev/null || {
		say "$2: iperf3 failed: $(jq -r '.error // empty' "$1" 2>/dev/null || head -c 300 "$1")"
		exit 1
	}
}
# iperf TO [-R]: Mbit/s from na to TO (-R: from TO to na), received side.
iperf() {
	say "iperf3 na -> $1 ${2:-}"
	gx na --timeout $((SECS + 30))s -- iperf3 -c "$1" -t "$SECS" -J ${2:-} >"$STATE/iperf.json" || true
	mbit "$STATE/iperf.json" "na -> $1 ${2:-}"
}
# rtt TO: the median round trip from na to TO, in ms.
rtt() {
	say "ping na -> $1"
	gx na --timeout 60s -- ping -c 10 -i 0.05 -q "$1" >/dev/null
	gx na --timeout 60s -- ping -c 100 -i 0.05 "$1" |
	    sed -n 's/.*time=\([0-9.]*\) ms/\1/p' >"$STATE/rtt"
	pct 50 "$STATE/rtt"
}

# sampled NAME: run the rest of the line with `vmgr list` timed every
# 50 ms meanwhile (microseconds, appended to STATE/list.NAME).
sampled() {
	_f=$STATE/list.$1; shift
	rm -f "$STATE/sampler.stop"
	( while [ ! -f "$STATE/sampler.stop" ]; do
		t=$(date +%s%N); $V list >/dev/null; echo $(( ($(date +%s%N) - t) / 1000 ))
		sleep 0.05
	  done >>"$_f" ) &
	_l=$!
	"$@"
	touch "$STATE/sampler.stop"; wait $_l
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
hz=$(getconf CLK_TCK)
# ---- the bridge and the isolated network, ROUNDS times, alternating
# which goes first; vmgr list sampled during each a->b run; vmgrd's CPU
# (and its switch thread's) counted over the isolated a->b runs.  A
# phase is one vmgrd's switch: "kernel" (its bridges, vmgrd as root) or
# "user" (vmgrd's own switch thread).  Results go to STATE/PHASE.*.
one() {	# one PHASE br|lan ADDR
	if [ "$2" = lan ]; then
		st=$(switch_stat)
		s0=$(ticks "$st") p0=$(ticks /proc/$D/stat) f0=$(date +%s%N)
		sampled "$1.lan" iperf "$3" >"$STATE/tx"
		f1=$(date +%s%N) s1=$(ticks "$st") p1=$(ticks /proc/$D/stat)
		echo "$((s1 - s0)) $((p1 - p0)) $(( (f1 - f0) / 1000000 )) $(( $(cat "$STATE/tx") * (f1 - f0) / 1000000 ))" >>"$STATE/$1.cpu"
	else
		sampled "$1.br" iperf "$3" >"$STATE/tx"
	fi
	cat "$STATE/tx" >>"$STATE/$1.$2.tx"
	iperf "$3" -R >>"$STATE/$1.$2.rx"
	rtt "$3" >>"$STATE/$1.$2.rtt"
	say "$1 $2, round $r: $(tail -1 "$STATE/$1.$2.tx") and $(tail -1 "$STATE/$1.$2.rx") Mbit/s, rtt $(tail -1 "$STATE/$1.$2.rtt") ms"
}
phase() {	# phase NAME
	: >"$STATE/$1.cpu"; : >"$STATE/list.$1.br"; : >"$STATE/list.$1.lan"
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then one "$1" br "$br_b"; one "$1" lan "$lan_b"
		else one "$1" lan "$lan_b"; one "$1" br "$br_b"; fi
	done
}
fmed() { sort -n "$1" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
# CPU share of one core per Gbit/s forwarded, over a phase's isolated
# a->b runs: CPU seconds / wall seconds / (Gbit/s on average).  Column 1
# is the switch thread's ticks, 2 vmgrd's.
cpu() {	# cpu PHASE COLUMN
	awk -v hz="$hz" -v k="$2" '{c += $k; w += $3; m += $4}
	    END {g = w > 0 ? m / w / 1000 : 0; printf "%.1f", (g > 0 ? 100 * (c / hz) / (w / 1000) / g : 0)}' "$STATE/$1.cpu"
}
lp() { awk '{print $1 / 1000}' "$STATE/list.$1" | pct "$2" /dev/stdin; }
ratio() { echo "$1 $2" | awk '{printf "%.2f", $1 / $2}'; }
# phase_json PHASE: its figures, ratios to the same phase's bridge runs.
phase_json() {
	jq -n --argjson brtx "$(fmed "$STATE/$1.br.tx")" --argjson brrx "$(fmed "$STATE/$1.br.rx")" \
	    --argjson brrtt "$(fmed "$STATE/$1.br.rtt")" \
	    --argjson ltx "$(fmed "$STATE/$1.lan.tx")" --argjson lrx "$(fmed "$STATE/$1.lan.rx")" \
	    --argjson lrtt "$(fmed "$STATE/$1.lan.rtt")" \
	    --argjson swcpu "$(cpu "$1" 1)" --argjson dcpu "$(cpu "$1" 2)" \
	    --argjson lp50 "$(lp "$1.lan" 50)" --argjson lp99 "$(lp "$1.lan" 99)" \
	    --argjson blp99 "$(lp "$1.br" 99)" --argjson n "$(wc -l <"$STATE/list.$1.lan")" \
	    --arg sw "$1" '{switch: $sw,
	    bridge: {a_to_b_mbit: $brtx, b_to_a_mbit: $brrx, rtt_ms: $brrtt,
		list_p99_ms: $blp99},
	    isolated: {a_to_b_mbit: $ltx, b_to_a_mbit: $lrx, rtt_ms: $lrtt,
		ratio_a_to_b: ($ltx / $brtx), ratio_b_to_a: ($lrx / $brrx),
		ratio_rtt: ($lrtt / $brrtt),
		switch_cpu_pct_per_gbit: $swcpu, vmgrd_cpu_pct_per_gbit: $dcpu,
		list_p50_ms: $lp50, list_p99_ms: $lp99, list_calls: $n}}'
}
first=$($V host --json | jq -r .switch.backend)
phase "$first"

# ---- NAT: host to guest through a's forward, each backend there is
nat_json=
fwd=$(( $($V info na --json | jq '.spec.nics[0].forwards[0].host_port') ))
# host_iperf WHAT [-R]: Mbit/s through the forward; an iperf3 server that
# is still closing the last test refuses the next now and then: retried.
host_iperf() {
	for try in 1 2 3; do
		iperf3 -c 127.0.0.1 -p "$fwd" -t "$SECS" -J ${2:-} >"$STATE/iperf.json" 2>&1 &&
		    jq -e .end.sum_received "$STATE/iperf.json" >/dev/null 2>&1 && break
		say "$1: try $try: $(jq -r '.error // empty' "$STATE/iperf.json" 2>/dev/null)"
		sleep 3
	done
	mbit "$STATE/iperf.json" "$1"
}
nat_run() {	# nat_run BACKEND: iperf3 from the host through the forward
	say "iperf3 through the forward ($1)"
	tx=$(host_iperf "nat $1 guest->host" -R)
	sleep 1
	rx=$(host_iperf "nat $1 host->guest")
	nat_json="$nat_json${nat_json:+,}{\"backend\":\"$1\",\"guest_to_host_mbit\":$tx,\"host_to_guest_mbit\":$rx}"
	printf '%-22s %8s %8s %8s   %s\n' "nat ($1)" "$tx" "$rx" - \
	    "$(echo "$tx $br_tx" | awk '{printf "%.2fx", $1 / $2}')" >>"$STATE/table"
}
: >"$STATE/table"
br_tx=$(fmed "$STATE/$first.br.tx")
backend=$($V info na --json | jq -r '.runtime.nics[0].backend // "slirp"')
nat_run "$backend"

# ---- vmgrd again on its own switch (and slirp, when the first NAT was
# passt): the guests start again, since a running NIC keeps its switch.
phases=$first
if [ "$first" = kernel ] || [ "$backend" = passt ]; then
	for g in na nb; do $V stop $g >/dev/null; done
	kill $D; wait $D 2>/dev/null || true
	start_vmgrd --switch user --nat slirp
	for g in na nb; do $V start $g >/dev/null; done
	for g in na nb; do
		i=0; until agent_up $g; do [ $i -lt 900 ] || exit 1; sleep 0.5; i=$((i + 1)); done
		gx $g -- sh -c 'iperf3 -s -D >/dev/null 2>&1' >/dev/null
	done
	sleep 1
	if [ "$first" = kernel ]; then
		phase user
		phases="$phases user"
	fi
	[ "$backend" != passt ] || nat_run slirp
fi

{
	echo "networks: 2 guests (Debian 12, 1 vCPU, 512 MiB), iperf3 ${SECS}s, ping -c 100; medians of $ROUNDS rounds"
	printf '%-22s %8s %8s %8s   %s\n' network "a->b" "b->a" "rtt ms" "vs bridge (a->b, b->a, rtt)"
	for p in $phases; do
		printf '%-22s %8s %8s %8s   %s\n' "bridge ($p run)" "$(fmed "$STATE/$p.br.tx")" \
		    "$(fmed "$STATE/$p.br.rx")" "$(fmed "$STATE/$p.br.rtt")" "1.00x"
		printf '%-22s %8s %8s %8s   %sx %sx %sx\n' "isolated ($p)" "$(fmed "$STATE/$p.lan.tx")" \
		    "$(fmed "$STATE/$p.lan.rx")" "$(fmed "$STATE/$p.lan.rtt")" \
		    "$(ratio "$(fmed "$STATE/$p.lan.tx")" "$(fmed "$STATE/$p.br.tx")")" \
		    "$(ratio "$(fmed "$STATE/$p.lan.rx")" "$(fmed "$STATE/$p.br.rx")")" \
		    "$(ratio "$(fmed "$STATE/$p.lan.rtt")" "$(fmed "$STATE/$p.br.rtt")")"
	done
	echo "NAT, Mbit/s guest->host and host->guest through a forward:"
	cat "$STATE/table"
	for p in $phases; do
		echo "isolated ($p), saturated: vmgrd's switch thread $(cpu "$p" 1)% of a core per Gbit/s" \
		    "(vmgrd in all $(cpu "$p" 2)%); vmgr list p50 $(lp "$p.lan" 50) ms, p99 $(lp "$p.lan" 99) ms" \
		    "($(wc -l <"$STATE/list.$p.lan") calls; p99 $(lp "$p.br" 99) ms during the bridge's)"
	done
} | tee "$STATE/summary" >&2
# "isolated" is the first phase (what vmgrd picks by default here);
# "isolated_user" vmgrd's own switch, when the first was the kernel's.
phase_json "$first" >"$STATE/p1.json"
if [ "$phases" != "$first" ]; then phase_json user; else echo null; fi >"$STATE/p2.json"
jq -n --argjson secs "$SECS" --argjson rounds "$ROUNDS" --argjson nat "[$nat_json]" \
    --slurpfile p1 "$STATE/p1.json" --slurpfile p2 "$STATE/p2.json" '
	$p1[0] as $a | $p2[0] as $b | {
	seconds: $secs, rounds: $rounds, switch: $a.switch,
	bridge: $a.bridge, isolated: $a.isolated,
	bridge_user_run: ($b.bridge // null), isolated_user: ($b.isolated // null),
	nat: $nat}' >"$OUT"
