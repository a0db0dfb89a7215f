#!/bin/sh
# The cmocka unit tests under valgrind's memcheck: no invalid access, no
# uninitialised read, no definite or indirect leak.  Skipped for an ASan
# build (the two do not mix); run by `make test`.
top=$(cd "$(dirname "$0")/.." && pwd)
B=${VMGR_BUILD:-$top/build}
n=0
if grep -q fsanitize "$B/.flags" 2>/dev/null; then
	echo "1..0 # SKIP an ASan build: memcheck cannot run it"
	exit 0
fi
mkdir -p "$B/valgrind"
for t in "$B"/tests/test_*; do
	case $t in *.*) continue ;; esac	# a log of an older layout
	n=$((n + 1))
	log=$B/valgrind/$(basename "$t").log
	if valgrind -q --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite,indirect "$t" >"$log" 2>&1; then
		echo "ok $n - $(basename "$t") is clean under memcheck"
	else
		echo "not ok $n - $(basename "$t") under memcheck"
		grep -E '==[0-9]+==' "$log" | head -30 | sed 's/^/# /'
	fi
done
echo "1..$n"
