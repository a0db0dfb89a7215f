#!/bin/sh
# scripts/layers.sh [OBJDIR] [--tap]: vmgrd's layers, checked.  Each file of
# src/daemon/ has a layer below (lowest first); a file may use what files of
# lower layers define, and what files of its own layer define as long as
# no cycle forms.  The uses are read from the objects' symbol tables (nm):
# what a file needs (U) and which file defines it (T, D, B, R).  Prints
# each file's layer and every use that goes up or round; exits 1 if any.
# `make test` runs it (tests/layers.sh).
set -u
OBJ=${1:-build/obj/daemon}
TAP=${2:-}

# The layers, lowest first.  A file missing here is an error.
layers='
0 registry fault db http fdwork img job cgroup host
1 events priv
2 net net_switch net_kernel net_bridge net_nat net_api volume image cloudinit monitor agent display
3 vm vm_create vm_spawn vm_qemu vm_save vm_actions vm_adopt firmware
4 sched snapshot backup backup_qsd backup_job backup_verify backup_restore backup_prune backup_api
5 status peer migrate migrate_offline
6 api
7 remote
8 main
'
layer_of() {
	echo "$layers" | awk -v f="$1" '{ for (i = 2; i <= NF; i++) if ($i == f) print $1 }'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
for o in "$OBJ"/*.o; do
	f=$(basename "$o" .o)
	nm "$o" | awk -v f="$f" '$2 ~ /^[TDBR]$/ { print "D", f, $3 } $1 == "U" { print "U", f, $2 }'
done >"$tmp/syms"
# file -> file, one line per pair.
awk '$1 == "D" { def[$3] = $2 } $1 == "U" { use[++n] = $2 " " $3 }
     END { for (i = 1; i <= n; i++) { split(use[i], a, " ");
	if ((a[2] in def) && def[a[2]] != a[1]) print a[1], def[a[2]], a[2] } }' "$tmp/syms" |
    sort -u >"$tmp/uses"

out() { if [ -n "$TAP" ]; then echo "# $*"; else echo "$*"; fi; }
for o in "$OBJ"/*.o; do
	f=$(basename "$o" .o)
	if [ -z "$(layer_of "$f")" ]; then
		out "$f: not in any layer (add it to scripts/layers.sh)"
		bad=$((bad + 1))
	fi
done
while read -r from to sym; do
	lf=$(layer_of "$from"); lt=$(layer_of "$to")
	[ -n "$lf" ] && [ -n "$lt" ] || continue
	if [ "$lt" -gt "$lf" ]; then
		out "UP: $from (layer $lf) uses $sym of $to (layer $lt)"
		bad=$((bad + 1))
	fi
done <"$tmp/uses"
# Cycles, within a layer or across: a depth-first walk names each one
# by its files and the symbol of each step.
awk '{ n[$1]++; to[$1, n[$1]] = $2; sym[$1, $2] = $3 }
function walk(f,    i, t, k, c) {
	state[f] = 1; path[++depth] = f
	for (i = 1; i <= n[f]; i++) {
		t = to[f, i]
		if (state[t] == 1) {
			c = ""
			for (k = depth; path[k] != t; k--)
				;
			for (; k <= depth; k++)
				c = c path[k] " -(" sym[path[k], k < depth ? path[k + 1] : t] ")-> "
			print "CYCLE: " c t
		} else if (state[t] == 0)
			walk(t)
	}
	depth--; state[f] = 2
}
END { for (f in n) if (state[f] == 0) walk(f) }' "$tmp/uses" >"$tmp/cycles"
while read -r line; do out "$line"; bad=$((bad + 1)); done <"$tmp/cycles"
# The picture: each layer's files, those used by others first.
awk '{ print $2, $1 }' "$tmp/uses" | sort -u >"$tmp/pairs"
for o in "$OBJ"/*.o; do b=$(basename "$o" .o); echo "$b $b"; done >>"$tmp/pairs"
order=$(tsort "$tmp/pairs" 2>/dev/null)
echo "$layers" | while read -r l files; do
	[ -n "$l" ] || continue
	line=""
	for f in $order; do
		case " $files " in *" $f "*) line="$line $f";; esac
	done
	out "layer $l:$line"
done
if [ -n "$TAP" ]; then
	[ "$bad" = 0 ] && echo "ok 1 - vmgrd's files use only their own and lower layers, with no cycle" ||
	    echo "not ok 1 - vmgrd's layers: $bad problems (above)"
	echo "1..1"
fi
[ "$bad" = 0 ]
