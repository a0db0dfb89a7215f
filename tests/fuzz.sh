#!/bin/sh
# The libFuzzer harnesses (fuzz/), briefly: each replays its committed
# corpus and regression inputs and then fuzzes for a few seconds (`make
# fuzz` runs them longer).  Built by `make test`.
top=$(cd "$(dirname "$0")/.." && pwd)
build=${VMGR_BUILD:-$top/build}
if grep -q fsanitize "$build/.flags" 2>/dev/null; then
	echo "1..0 # SKIP the fuzzers are ASan builds in either pass: the first ran them"
	exit 0
fi
exec "$top/fuzz/run.sh" "$build/fuzz" "${VMGR_FUZZ_SECONDS:-5}" --tap
