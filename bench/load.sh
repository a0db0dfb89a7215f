#!/bin/sh
# bench/load.sh VMS CLIENTS SECONDS OUT.json: loadbench against a vmgrd of
# its own with VMS running tiny guests, and vmgrd's RSS sampled every 5 s
# through it (flat, or it leaks).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
NVM=$1 CLIENTS=$2 SECS=$3 OUT=$4
STATE=$(mktemp -d /tmp/vmgr-bench-load.XXXXXX)
V="$B/vmgr --state-dir $STATE"
"$B/vmgrd" --state-dir "$STATE" --foreground --cpu-ratio 16 >"$STATE/vmgrd.out" 2>&1 &
D=$!
cleanup() {
	for p in $(pgrep -f "qemu-system.*$STATE/vm/" || true); do kill -9 "$p" 2>/dev/null || true; done
	kill $D 2>/dev/null || true; wait $D 2>/dev/null || true
	rm -rf "$STATE"
}
trap cleanup EXIT
i=0; until $V host >/dev/null 2>&1 || [ $i -gt 600 ]; do sleep 0.05; i=$((i + 1)); done
names=
for k in $(seq 1 "$NVM"); do
	$V create "l$k" --image tiny --memory 128M >/dev/null
	$V start "l$k" >/dev/null
	names="$names l$k"
done
for k in $(seq 1 "$NVM"); do
	i=0; until $V console "l$k" --log | grep -q GUEST-READY || [ $i -gt 600 ]; do sleep 0.1; i=$((i + 1)); done
done
rss() { awk '/^VmRSS/ {print $2}' /proc/$D/status; }
( while kill -0 $D 2>/dev/null; do rss; sleep 5; done ) >"$STATE/rss" &
S=$!
"$B/loadbench" -s "$STATE/vmgrd.sock" -c "$CLIENTS" -d "$SECS" -o "$STATE/load.json" $names
kill $S 2>/dev/null || true
jq --argjson rss "$(jq -s . "$STATE/rss")" '. + {vmgrd_rss_kib: $rss}' "$STATE/load.json" >"$OUT"
