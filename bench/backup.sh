#!/bin/sh
# bench/backup.sh DATA_MIB OUT.json: backup throughput, side by side.
# A volume of twice DATA_MIB holding DATA_MIB of data (by qemu-io) is attached
# to a stopped VM.  Timed, each the median of 3, on the same filesystem
# with a warm page cache: `cp` of the volume's file, `cp` + `sync` of the
# copy (a backup is durable; cp alone is not), and `vmgr backup create`
# (QEMU's block job through a storage daemon, the target flushed, every
# file hashed, the manifest written).  Then 5% of the data is overwritten
# and an incremental backup is timed and sized against the full one.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
DATA=$1
OUT=$2
STATE=$(mktemp -d /tmp/vmgr-bench-bk.XXXXXX)
V="$B/vmgr --state-dir $STATE"
"$B/vmgrd" --state-dir "$STATE" --foreground >"$STATE/vmgrd.out" 2>&1 &
D=$!
trap 'kill $D 2>/dev/null; wait $D 2>/dev/null; rm -rf "$STATE"' EXIT
i=0; until $V host >/dev/null 2>&1 || [ $i -gt 600 ]; do sleep 0.05; i=$((i + 1)); done

ms() { date +%s%N | cut -c1-13; }
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
$V volume create bench-data --size $((DATA * 2))M >/dev/null
img=$STATE/volumes/bench-data.qcow2
qemu-io -f qcow2 -c "write -P 0x5a 0 ${DATA}M" "$img" >/dev/null
$V create bk --image tiny --disk bench-data >/dev/null
cat "$img" >/dev/null	# a warm cache for everybody

cp_t= cps_t= full_t=
for k in 1 2 3; do
	t0=$(ms); cp "$img" "$STATE/copy.qcow2"; t1=$(ms)
	rm -f "$STATE/copy.qcow2"
	cp_t="$cp_t $((t1 - t0))"
	t0=$(ms); cp "$img" "$STATE/copy.qcow2"; sync "$STATE/copy.qcow2"; t1=$(ms)
	rm -f "$STATE/copy.qcow2"
	cps_t="$cps_t $((t1 - t0))"
	t0=$(ms); $V backup create bk >/dev/null; t1=$(ms)
	full_t="$full_t $((t1 - t0))"
	[ $k = 3 ] || $V backup delete "$($V backup list --json | jq '.[-1].id')" >/dev/null
done
full_id=$($V backup list --json | jq '.[-1].id')
full_bytes=$($V backup show "$full_id" --json | jq .size_bytes)
# vmgrd's own split of the last full backup: the copy, then the hashing.
copy_ms=$($V backup show "$full_id" --json | jq .timing.copy_ms)
hash_ms=$($V backup show "$full_id" --json | jq .timing.hash_ms)

# 5% of the data changes, in its middle.
change=$((DATA * 5 / 100))
qemu-io -f qcow2 -c "write -P 0xa5 $((DATA / 2))M ${change}M" "$img" >/dev/null
t0=$(ms); $V backup create bk --incremental >/dev/null; t1=$(ms)
inc_t=$((t1 - t0))
inc_id=$($V backup list --json | jq '.[-1].id')
inc_bytes=$($V backup show "$inc_id" --json | jq .size_bytes)
$V backup verify "$inc_id" >/dev/null

jq -n --argjson data "$DATA" --argjson cp "$(median3 $cp_t)" \
    --argjson cps "$(median3 $cps_t)" --argjson full "$(median3 $full_t)" \
    --argjson fb "$full_bytes" --argjson inc "$inc_t" --argjson ib "$inc_bytes" \
    --argjson ch "$((change * 1048576))" --argjson size "$(stat -c %s "$img")" \
    --argjson copy "$copy_ms" --argjson hash "$hash_ms" '{
    data_mib: $data, file_bytes: $size, cp_ms: $cp, cp_sync_ms: $cps,
    full_ms: $full, full_bytes: $fb,
    full_mib_s: ($data / ($full / 1000)), cp_mib_s: ($data / ($cp / 1000)),
    ratio_vs_cp: ($cp / $full), ratio_vs_cp_sync: ($cps / $full),
    copy_ms: $copy, hash_ms: $hash, copy_ratio_vs_cp: ($cp / $copy),
    change_bytes: $ch, incremental_ms: $inc, incremental_bytes: $ib,
    incremental_time_vs_full: ($inc / $full),
    incremental_size_vs_full: ($ib / $fb)}' >"$OUT"
