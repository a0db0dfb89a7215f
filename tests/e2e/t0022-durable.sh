#!/bin/sh
# What a rename commits is on disk first: for an imported volume, a new
# one, a restored disk, a prune's merged backup and a saved state, vmgrd
# (or its file worker) fsyncs the file, then renames it into place, then
# fsyncs the directory, so a power cut can lose the new file or keep the
# old one, never leave the name on half a file.  Watched with strace on a
# vmgrd started under it.
. "$(dirname "$0")/lib.sh"
if ! command -v strace >/dev/null || ! strace -f -o /dev/null true 2>/dev/null; then
	echo "1..0 # SKIP strace cannot trace here"
	_done=1; _n=0; trap - EXIT; rm -rf "$STATE"; exit 0
fi
log=$STATE/strace.log
# LeakSanitizer cannot run under ptrace; an ASan build checks the rest.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
VMGRD_WRAP="strace -f -qq -y -e trace=fsync,fdatasync,rename,renameat,renameat2 -o $log" start_daemon
vpid=$(pgrep -f "^$VMGRD_BIN --state-dir $STATE " | head -1)

# committed PARTIAL FINAL DIR: an fsync of PARTIAL, then its rename to
# FINAL, then an fsync of DIR, in that order.
committed() {
	awk -v p="$1" -v f="$2" -v d="$3" '
		index($0, "fsync(") && index($0, "<" p ">)") && !s { s = NR }
		index($0, "rename") && index($0, "\"" p "\", ") &&
		    index($0, "\"" f "\"") && s && !r { r = NR }
		index($0, "fsync(") && index($0, "<" d ">)") && r && NR > r && !ds { ds = NR }
		END { exit !(s && r && ds) }' "$log"
}
V=$STATE/volumes

head -c 8388608 /dev/urandom >"$STATE/disk.raw"
check "import a raw image" vmgr volume import imp "$STATE/disk.raw"
check "... synced, renamed, its directory synced" committed "$V/imp.qcow2.partial" "$V/imp.qcow2" "$V"
check "make a volume" vmgr volume create nv --size 16M
check "... synced, renamed, its directory synced" committed "$V/nv.qcow2.partial" "$V/nv.qcow2" "$V"

check "create a with a disk" vmgr create a --image tiny --disk new:32M
check "a full backup of a (stopped)" vmgr backup create a
check "an incremental one" vmgr backup create a --incremental
b2=$(vmgr backup list a --json | jq '.[-1].id')
bdir=$(vmgr backup show "$b2" --json | jq -r .dir)
check "the backup's rename into place is followed by an fsync of its store" \
    awk -v d="$(dirname "$bdir")" 'index($0, "rename") && index($0, "\"" d "/") { r = NR }
	    r && index($0, "fsync(") && index($0, "<" d ">)") { ok = 1 } END { exit !ok }' "$log"
check "restore the incremental as a new VM" vmgr backup restore "$b2" --as r
check "the restored disk: synced, renamed, its directory synced" committed "$V/r-disk0.qcow2.partial" "$V/r-disk0.qcow2" "$V"
check "prune to the newest: it is merged into a full backup" vmgr backup prune a --keep 1
check "the merged file: synced, renamed over the old, its directory synced" \
    committed "$bdir/disk0.qcow2.merge" "$bdir/disk0.qcow2" "$bdir"

check "start a" vmgr start a
check "a boots" wait_until 60 console_has a GUEST-READY
check "save a" vmgr save a
run=$(vmgr info a --json | jq -r .runtime.dir)
check "the saved state: synced, renamed, its directory synced" committed "$run/state.new" "$run/state.sav" "$run"
check "start a again: restored" vmgr start a
check "stop a" vmgr stop a

# strace goes when vmgrd does: end vmgrd itself.
kill "$vpid"
wait_until 10 sh -c "! kill -0 $vpid 2>/dev/null"
kill_daemon
done_testing
