#!/bin/sh
# The libFuzzer harnesses (fuzz/), briefly: each replays its committed
# corpus and regression inputs and then fuzzes for a few seconds (`make
# fuzz` runs them longer).  Built by `make test`.
top=$(cd "$(dirname "$0")/.." && pwd)
exec "$top/fuzz/run.sh" "${VMGR_BUILD:-$top/build}/fuzz" "${VMGR_FUZZ_SECONDS:-5}" --tap
