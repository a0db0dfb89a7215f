#!/bin/sh
# `make run`: start vmgrd (unless it already runs) on the default state dir
# (or $VMGR_STATE_DIR), create the VM "demo" from the built-in guest if it
# does not exist, start it, and wait for the guest to be ready.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
VMGR="$top/build/vmgr"
VMGRD="$top/build/vmgrd"

if ! "$VMGR" host >/dev/null 2>&1; then
	echo "starting vmgrd"
	"$VMGRD"
fi
"$VMGR" host | sed -n 's/^\(accel\|qemu\|state dir\):/  &/p'
if ! "$VMGR" info demo >/dev/null 2>&1; then
	"$VMGR" create demo --image tiny --vcpus 1 --memory 128M --nic nat
fi
case $("$VMGR" info demo --json | sed -n 's/^  "state": "\(.*\)",$/\1/p') in
running|paused|stopping) echo "demo is already running" ;;
*)
	"$VMGR" start demo
	printf 'waiting for the guest'
	i=0
	until "$VMGR" console demo --log | grep -q GUEST-READY; do
		i=$((i + 1))
		if [ $i -gt 120 ]; then
			echo; echo "the guest did not get ready; see: $VMGR console demo --log" >&2
			exit 1
		fi
		printf .
		sleep 0.5
	done
	echo " ready"
	;;
esac
cat <<MSG

The VM "demo" runs.  Try:
  $VMGR list
  $VMGR console demo        (Ctrl-] detaches)
  $VMGR pause demo; $VMGR resume demo
  $VMGR shutdown demo
  $VMGR events
MSG
