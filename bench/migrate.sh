#!/bin/sh
# bench/migrate.sh OUT.json [ROUNDS]: live migration over loopback, vmgr
# against the floor, in one run.  The guest: tiny, 1 vCPU, 512 MiB, a 1 GiB
# disk, no NIC; idle, then copying 16 MiB in its RAM four times a second
# (64 MiB/s dirtied).  vmgr: two vmgrd on this host (TLS from a CA made
# here), the guest moved back and forth ROUNDS times (default 5) with
# `vmgr migrate --json`.  The floor (build/migfloor): two QEMUs with
# vmgrd's command line and the same TLS, NBD and mirror, driven by QMP
# alone.  Figures per workload: QEMU's downtime and the switch-over (the
# guest stopped on the source to running on the destination), p50 and
# p95; total time p50; memory MiB p50; and vmgr's over the floor's.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
OUT=$1
R=${2:-5}
T=$(mktemp -d /tmp/vmgr-bench-mig.XXXXXX)
chmod 711 "$T"	# QEMU runs as each VM's own user
A_DIR=$T/a B_DIR=$T/b
mkdir -p "$A_DIR" "$B_DIR"
PA=$((20000 + $$ % 20000)) PB=$((20001 + $$ % 20000))
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	for p in $(pgrep -f "qemu-system.*$T/" || true); do kill -9 "$p"; done
	for d in "$A_DIR" "$B_DIR"; do
		awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/mounts |
		    while read -r m; do umount -l "$m"; done
	done
	rm -rf "$T"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=bench -keyout "$T/key.pem" \
    -out "$T/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/san.ext"
openssl x509 -req -in "$T/req.pem" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
    -CAcreateserial -days 2 -extfile "$T/san.ext" -out "$T/cert.pem" 2>/dev/null
for h in a b; do
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/token-$h"
	chmod 600 "$T/token-$h"
done
va() { "$B/vmgr" --state-dir "$A_DIR" "$@"; }
vb() { "$B/vmgr" --state-dir "$B_DIR" "$@"; }
for h in a b; do
	d=$A_DIR p=$PA
	[ $h = b ] && d=$B_DIR p=$PB
	"$B/vmgrd" --state-dir "$d" --foreground --listen "tcp:127.0.0.1:$p" \
	    --token-file "$T/token-$h" --tls-cert "$T/cert.pem" \
	    --tls-key "$T/key.pem" >"$d/vmgrd.out" 2>&1 &
	pids="$pids $!"
done
i=0; until va host >/dev/null 2>&1 && vb host >/dev/null 2>&1 || [ $i -gt 600 ]; do
	sleep 0.05; i=$((i + 1)); done
va remote add hostb "https://127.0.0.1:$PB" --token-file "$T/token-b" --cacert "$T/ca.pem" >/dev/null
vb remote add hosta "https://127.0.0.1:$PA" --token-file "$T/token-a" --cacert "$T/ca.pem" >/dev/null
accel=$(va host --json | jq -r .accel)

# One guest per workload, moved back and forth; its figures, one per line.
vmgr_rounds() {	# vmgr_rounds NAME idle|dirty OUT.jsonl
	printf '{"name":"%s","image":"tiny","vcpus":1,"memory_mib":512,"disks":[{"volume":"%s-disk0","size":"1G"}],"nics":[]}\n' \
	    "$1" "$1" >"$T/$1.json"
	va create -f "$T/$1.json" >/dev/null
	va start "$1" >/dev/null
	k=0; until va console "$1" --log | grep -q GUEST-READY || [ $k -gt 300 ]; do
		sleep 0.1; k=$((k + 1)); done
	if [ "$2" = dirty ]; then
		printf '%s\n' 'yes 0123456789abcdef | head -c 65536 >/tmp/x; for k in 1 2 3 4 5 6 7 8; do cat /tmp/x /tmp/x >/tmp/z; mv /tmp/z /tmp/x; done' | va console "$1" >/dev/null
		sleep 3
		printf '%s\n' 'while :; do cat /tmp/x >/tmp/y; sleep 0.25; done &' | va console "$1" >/dev/null
		sleep 2
	fi
	: >"$3"
	src=a
	for r in $(seq 1 "$R"); do
		if [ $src = a ]; then va migrate "$1" --to hostb --json >>"$3"; src=b
		else vb migrate "$1" --to hosta --json >>"$3"; src=a; fi
		echo >>"$3"
		sleep 1
	done
	if [ $src = a ]; then va stop "$1" >/dev/null; va delete "$1" >/dev/null
	else vb stop "$1" >/dev/null; vb delete "$1" >/dev/null; fi
}

# p50/p95 of a list of numbers on stdin.
pct() { sort -n | awk -v p="$1" '{ a[NR] = $1 } END { if (NR == 0) { print 0; exit }
	i = int((NR - 1) * p / 100 + 0.5) + 1; print a[i] }'; }

for w in idle dirty; do
	echo "migrate: $w guest, floor, $R rounds" >&2
	"$B/migfloor" -n "$R" -o "$T/floor-$w.json" -a "$accel" -d "$B/images/tiny" \
	    -m 512 -s 1024 -w "$w" -t "$T"
	echo "migrate: $w guest, vmgr, $R rounds" >&2
	vmgr_rounds "m$w" "$w" "$T/vmgr-$w.jsonl"
done

jq -n --arg accel "$accel" --argjson rounds "$R" \
    --slurpfile fi "$T/floor-idle.json" --slurpfile fd "$T/floor-dirty.json" \
    --slurpfile vi "$T/vmgr-idle.jsonl" --slurpfile vd "$T/vmgr-dirty.jsonl" '
def p($a; $q): ($a | sort) as $s | if ($s | length) == 0 then null
	else $s[((($s | length) - 1) * $q / 100 + 0.5) | floor] end;
def fl($f): $f[0].ops as $o |
	{ downtime_p50_ms: p($o.downtime.samples_ms; 50), downtime_p95_ms: p($o.downtime.samples_ms; 95),
	  switchover_p50_ms: p($o.switchover.samples_ms; 50), switchover_p95_ms: p($o.switchover.samples_ms; 95),
	  total_p50_ms: p($o.total.samples_ms; 50), memory_p50_mib: p($o.memory_mib.samples_ms; 50) };
def vm($v): ($v | map(select(.state == "completed"))) as $c |
	{ completed: ($c | length), rounds: ($v | length),
	  downtime_p50_ms: p($c | map(.downtime_ms); 50), downtime_p95_ms: p($c | map(.downtime_ms); 95),
	  switchover_p50_ms: p($c | map(.switchover_ms); 50), switchover_p95_ms: p($c | map(.switchover_ms); 95),
	  total_p50_ms: p($c | map(.total_ms); 50), memory_p50_mib: p($c | map(.memory_bytes / 1048576); 50),
	  disk_p50_mib: p($c | map(.disk_bytes / 1048576); 50) };
def ratio($v; $f): { downtime_p50: ($v.downtime_p50_ms / $f.downtime_p50_ms),
	switchover_p50: ($v.switchover_p50_ms / $f.switchover_p50_ms),
	total_p50: ($v.total_p50_ms / $f.total_p50_ms) };
{ accel: $accel, rounds: $rounds,
  idle: { floor: fl($fi), vmgr: vm($vi) }, dirty: { floor: fl($fd), vmgr: vm($vd) } }
| .idle.ratio = ratio(.idle.vmgr; .idle.floor)
| .dirty.ratio = ratio(.dirty.vmgr; .dirty.floor)' >"$OUT"

jq -r '
def r: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
"live migration over loopback (\(.accel), \(.rounds) rounds each; ms; vmgr/floor)",
(["idle", "dirty"][] as $w | .[$w] as $x |
 "  \($w): downtime p50 \($x.vmgr.downtime_p50_ms | r) vs \($x.floor.downtime_p50_ms | r) (\($x.ratio.downtime_p50 * 100 | round / 100)x), p95 \($x.vmgr.downtime_p95_ms | r) vs \($x.floor.downtime_p95_ms | r); switch-over p50 \($x.vmgr.switchover_p50_ms | r) vs \($x.floor.switchover_p50_ms | r) (\($x.ratio.switchover_p50 * 100 | round / 100)x); total p50 \($x.vmgr.total_p50_ms | r) vs \($x.floor.total_p50_ms | r) (\($x.ratio.total_p50 * 100 | round / 100)x); memory \($x.vmgr.memory_p50_mib | r) vs \($x.floor.memory_p50_mib | r) MiB; completed \($x.vmgr.completed)/\($x.vmgr.rounds)")' "$OUT"
