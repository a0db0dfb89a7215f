#!/bin/sh
# tests/layers.sh: vmgrd's files call only downward, with no cycle
# (scripts/layers.sh, on the objects `make test` has just built).
here=$(dirname "$0")
exec "$here/../scripts/layers.sh" "${VMGR_BUILD:-$here/../build}/obj/daemon" --tap
