#!/bin/sh
# The benchmark programs build and a one-iteration run of the floor and
# vmgr parts completes (figures are `make bench`'s business, not a test's).
. "$(dirname "$0")/lib.sh"
top=$(cd "$(dirname "$0")/../.." && pwd)

check "build/floor and build/vmgrbench exist" test -x "$BUILD/floor" -a -x "$BUILD/vmgrbench"
before=$(pgrep -f 'qemu-system.*vmgr-bench' | wc -l)
out=$(VMGR_BENCH_OUT=$STATE/bench "$top/bench/run.sh" --quick 2>&1)
ok $? "bench/run.sh --quick completes"
like "$out" 'start +[0-9.]+ +[0-9.]+ +[0-9.]+' "the table has start for floor, CLI and API"
r=$STATE/bench/results.json
for op in start pause resume stop; do
	is "$(jq -r ".floor.$op.n" "$r") $(jq -r ".vmgr_cli.$op.n" "$r") $(jq -r ".vmgr_api.$op.n" "$r")" \
	    "1 1 1" "results.json has one $op sample per column"
done
is "$(jq -r '.vmgr_cli.list.median_ms > 0' "$r")" true "list was timed"
is "$(jq -r '.load.failed' "$r")" 0 "under load, no request failed (only the expected 409s)"
is "$(jq -c '[.load.race.pause_winners, .load.race.resume_winners]' "$r")" "[[1,1],[1,1]]" \
    "10 clients racing to pause (then resume) a VM: exactly one wins, each time"
is "$(jq -r '.backup.incremental_size_vs_full < 0.2' "$r")" true "the incremental backup is a fraction of the full one"
is "$(pgrep -f 'qemu-system.*vmgr-bench' | wc -l)" "$before" "no QEMU is left behind"
done_testing
