#!/bin/sh
# bench/agent.sh OUT.json [PINGS] [BACKUPS]: the guest agent of a Debian 12
# guest (the image of `vmgr image build debian-12`, cached in
# build/image-cache): the round trip of guest-ping through vmgrd's queue
# (POST /v1/vms/NAME/ping, PINGS times, default 100), and the freeze
# window of consistent backups while the guest appends and syncs lines
# all along: a full backup, then BACKUPS incremental ones (default 20),
# each freezing the file systems just around its transaction.  The window
# is from the freeze sent to the thaw answered, as vmgrd logs it.
# Reported as p50/p99; the target for the window's p99 is under 1 s.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
OUT=$1
PINGS=${2:-100}
BACKUPS=${3:-20}
STATE=$(mktemp -d /tmp/vmgr-bench-agent.XXXXXX)
V="$B/vmgr --state-dir $STATE"
VMGR_IMAGE_CACHE=$B/image-cache "$B/vmgrd" --state-dir "$STATE" --foreground \
    >"$STATE/vmgrd.out" 2>&1 &
D=$!
trap 'kill $D 2>/dev/null; wait $D 2>/dev/null; pkill -9 -f "qemu-system.*$STATE/" 2>/dev/null; rm -rf "$STATE"' EXIT
i=0; until $V host >/dev/null 2>&1 || [ $i -gt 600 ]; do sleep 0.05; i=$((i + 1)); done

$V image build debian-12 >/dev/null
$V create ag --image debian-12 --vcpus 2 --memory 1G >/dev/null
$V start ag >/dev/null
i=0
until [ "$($V info ag --json | jq -r .guest.agent)" = connected ]; do
	[ $i -lt 600 ] || { echo "agent.sh: the agent never connected" >&2; exit 1; }
	sleep 0.5; i=$((i + 1))
done

pct() {	# pct P FILE: the P-th percentile of the numbers in FILE
	sort -n "$2" | awk -v p="$1" '{a[NR] = $1} END {i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; print a[i]}'
}

# ---- guest-ping through the API
: >"$STATE/ping"
for k in $(seq 1 "$PINGS"); do
	curl -s --unix-socket "$STATE/vmgrd.sock" -X POST http://vmgrd/v1/vms/ag/ping |
	    jq -r .rtt_ms >>"$STATE/ping"
done

# ---- the freeze window of backups under write load
$V exec ag -- sh -c 'nohup sh -c "i=0; while :; do i=\$((i+1)); echo line-\$i >>/root/log; sync; done" </dev/null >/dev/null 2>&1 &' >/dev/null
sleep 2
$V backup create ag >/dev/null
for k in $(seq 1 "$BACKUPS"); do
	$V backup create ag --incremental >/dev/null
done
grep -o 'thawed ([0-9]*), [0-9]* ms after the freeze was sent' "$STATE/vmgrd.out" |
    sed 's/.*, \([0-9]*\) ms.*/\1/' >"$STATE/window"
n=$(wc -l <"$STATE/window")
[ "$n" -gt 0 ] || { echo "agent.sh: no freeze was logged" >&2; exit 1; }
fs=$($V backup list ag --json | jq '[.[] | .id] | .[-1]')
cons=$($V backup show "$fs" --json | jq -r .consistency)

jq -n --argjson n "$PINGS" --argjson p50 "$(pct 50 "$STATE/ping")" \
    --argjson p99 "$(pct 99 "$STATE/ping")" --argjson bn "$n" \
    --argjson w50 "$(pct 50 "$STATE/window")" --argjson w99 "$(pct 99 "$STATE/window")" \
    --argjson wmax "$(sort -n "$STATE/window" | tail -1)" --arg cons "$cons" \
    '{ping: {n: $n, p50_ms: $p50, p99_ms: $p99},
      freeze_window: {backups: $bn, p50_ms: $w50, p99_ms: $w99, max_ms: $wmax,
                      last_consistency: $cons}}' >"$OUT"
