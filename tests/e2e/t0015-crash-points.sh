#!/bin/sh
# Crash points: vmgrd is killed (SIGKILL, by itself: VMGR_CRASH_AT=POINT)
# at the worst moment of create, volume create, start, pause, snapshot,
# backup (after the jobs, after the manifest, after the rename), prune,
# save, shutdown, stop and delete.  After each restart: every VM's
# recorded state agrees with its QEMU, no QEMU or storage daemon runs
# without a running VM, the volume files are exactly the volume list with
# nothing partial, no partial backup is left, and every backup in the
# catalog verifies.  Two guest boots serve it all.
. "$(dirname "$0")/lib.sh"
start_daemon

crash_at() {	# crash_at POINT COMMAND...: COMMAND on a vmgrd that dies at POINT
	_point=$1; shift
	kill_daemon
	VMGR_CRASH_AT=$_point; export VMGR_CRASH_AT
	start_daemon
	unset VMGR_CRASH_AT
	"$@" >/dev/null 2>&1
	if wait_until 60 sh -c "! kill -0 $_daemon_pid 2>/dev/null"; then
		wait "$_daemon_pid"; _st=$?
	else
		_st=running; kill -9 "$_daemon_pid"; wait "$_daemon_pid"
	fi
	_daemon_pid=
	is "$_st" 137 "vmgrd killed itself at $_point"
	start_daemon
}

check "create w with a disk" vmgr create w --image tiny --disk new:1G

crash_at create:after-volumes vmgr create c1 --image tiny --disk new:1G
check "c1 was never made" sh -c "! '$VMGR_BIN' --state-dir '$STATE' info c1 2>/dev/null"
invariants "a crash between c1's volume rows and its VM row"

crash_at create:after-insert vmgr create c2 --image tiny --disk new:1G
is "$(state_of c2)" created "c2 was recorded before the crash: it exists"
invariants "a crash after c2's VM row"

crash_at volume:after-file vmgr volume create v1 --size 64M
invariants "a crash between v1's file and its row"

crash_at start:after-spawn vmgr start w
check "w runs after the restart (its half-started QEMU was replaced)" wait_until 30 has_state w running
check "w boots" wait_until 60 console_has w GUEST-READY
invariants "a crash right after w's QEMU was spawned"

crash_at pause:after-stop vmgr pause w
is "$(state_of w)" paused "w is paused, as QEMU is"
check "resume w" vmgr resume w
invariants "a crash between QEMU's stop and the record"

crash_at snapshot:after-take vmgr snapshot create w s1 --memory
is "$(vmgr snapshot list w --json | jq -r '.[].name')" s1 "the snapshot QEMU took is listed"
is "$(state_of w)" running "w runs on"
invariants "a crash after a snapshot"

for p in backup:after-jobs backup:after-manifest backup:after-rename; do
	crash_at "$p" vmgr backup create w
	is "$(vmgr backup list --json | jq length)" 0 "$p: the cut-short backup is not in the catalog"
	invariants "a crash at $p"
done
check "a full backup of w works after those crashes" vmgr backup create w
check "and an incremental after it" vmgr backup create w --incremental
check "and another" vmgr backup create w --incremental
# Once a row with no directory yet made the clean-up at start remove the
# whole store (found by t0017's random kills).
crash_at backup:after-insert vmgr backup create w --incremental
is "$(vmgr backup list --json | jq length)" 3 "a backup cut short right after its row: the three before it stay"
invariants "a crash right after a backup's catalog row"
crash_at prune:after-next vmgr backup prune w --keep 2
invariants "a crash in the middle of a prune's merge"

printf 'echo keep-$((20+1)) > /tmp/k\n' | vmgr console w >/dev/null
crash_at save:after-state vmgr save w
check "the save was finished after the restart: w is saved" wait_until 30 has_state w saved
invariants "a crash after the saved state was written"
check "start w (restores the saved state)" vmgr start w
printf 'echo K-$(cat /tmp/k)\n' | vmgr console w >/dev/null
check "the guest came back where it was" wait_until 30 console_has w K-keep-21
crash_at shutdown:after-button vmgr shutdown w
check "the guest powers off by itself; w ends created" wait_until 60 has_state w created
invariants "a crash after the power button"

crash_at delete:after-row vmgr delete c2
check "c2 is gone" sh -c "! '$VMGR_BIN' --state-dir '$STATE' info c2 2>/dev/null"
is "$(vmgr volume list --json | jq -r '.[].name' | grep -c '^c2-')" 0 "c2's volume went with it"
invariants "a crash after a delete's row"

done_testing
