#!/bin/sh
# fuzz/run.sh BINDIR SECONDS [--tap]: for each libFuzzer harness in BINDIR,
# replay its committed inputs (fuzz/corpus/NAME and fuzz/regress/NAME: the
# inputs that once crashed it), then fuzz it for SECONDS from a working copy
# of the corpus.  A crash leaves its input in BINDIR/artifacts/NAME/ and
# fails the run; copy it to fuzz/regress/NAME/ once fixed.  --tap prints
# TAP (tests/fuzz.sh, in `make test`).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BIN=$1
SECONDS_EACH=$2
TAP=${3:-}
n=0 failed=0
for h in "$BIN"/fuzz_*; do
	[ -x "$h" ] || continue
	name=$(basename "$h")
	corpus=$top/fuzz/corpus/$name
	regress=$top/fuzz/regress/$name
	work=$BIN/work/$name
	art=$BIN/artifacts/$name
	mkdir -p "$work" "$art" "$regress"
	cp "$corpus"/* "$work"/ 2>/dev/null
	log=$BIN/$name.log
	# Replay: every committed input once, with no mutation.
	if "$h" -runs=0 "$corpus" "$regress" >"$log" 2>&1 &&
	    "$h" -max_total_time="$SECONDS_EACH" -max_len=65536 \
	    -artifact_prefix="$art/" -print_final_stats=1 "$work" >>"$log" 2>&1; then
		res=ok
	else
		res="not ok"
		failed=$((failed + 1))
	fi
	n=$((n + 1))
	runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
	if [ -n "$TAP" ]; then
		echo "$res $n - $name: committed inputs replayed, ${runs:-0} runs in ${SECONDS_EACH}s without a crash"
		[ "$res" = ok ] || { tail -30 "$log" | sed 's/^/# /'; ls "$art" | sed 's/^/# artifact: /'; }
	else
		echo "fuzz: $name: $res (${runs:-0} runs; log $log)"
	fi
done
[ -n "$TAP" ] && echo "1..$n"
[ "$failed" = 0 ]
