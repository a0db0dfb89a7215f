#!/bin/sh
# Backups that restore.  A guest writes a known pattern to its data disk;
# a full backup is taken live; the guest writes a second pattern elsewhere;
# the VM is shut down and started again and vmgrd restarted; an
# incremental follows, about the size of the change.  Each backup is
# restored as a new VM and read inside the restored guest: each holds the
# data of its moment.  Then: verify, prune (keeping every kept backup
# restorable), a damaged backup (verify names the file, restore refuses
# and leaves nothing), a full store (507, nothing left, the VM runs on),
# one backup at a time, and bad input.
. "$(dirname "$0")/lib.sh"
start_daemon

MiB=1048576
# The patterns: 4 MiB of a repeated seed line, at 1 MiB and at 512 MiB.
pattern() { yes "vmgr-pattern-$1" | head -c $((4 * MiB)); }
sum_of() { pattern "$1" | sha256sum | cut -c1-64; }
ZERO=$(head -c $((4 * MiB)) /dev/zero | sha256sum | cut -c1-64)
A=$(sum_of A); B=$(sum_of B); C=$(sum_of C)

type_in() { printf '%s\n' "$2" | vmgr console "$1" >/dev/null; }
# write VM SEED OFFSET_MIB: the pattern onto /dev/vda, synced.
write() {
	type_in "$1" "yes vmgr-pattern-$2 | head -c $((4 * MiB)) | dd of=/dev/vda bs=65536 seek=$(($3 * 16)) conv=fsync 2>/dev/null; echo WRITTEN-$2-\$((1+1))"
	wait_until 30 console_has "$1" "WRITTEN-$2-2"
}
# read_sum VM OFFSET_MIB TAG: the guest's sha256 of 4 MiB there.
read_sum() {
	type_in "$1" "echo SUM-$3-\$(dd if=/dev/vda bs=65536 skip=$(($2 * 16)) count=64 2>/dev/null | sha256sum | cut -c1-64)-END"
	wait_until 30 console_has "$1" "SUM-$3-[0-9a-f]*-END" &&
	    vmgr console "$1" --log | grep -o "SUM-$3-[0-9a-f]*-END" | tail -1 |
	    sed "s/^SUM-$3-//; s/-END$//"
}
backup_field() { vmgr backup show "$1" --json | jq -r ".$2"; }

check "create web with a 1 GiB data disk" vmgr create web --image tiny --disk new:1G
check "start web" vmgr start web
check "web boots" wait_until 60 console_has web GUEST-READY
check "the guest writes pattern A at 1 MiB" write web A 1
is "$(read_sum web 1 a0)" "$A" "the guest reads pattern A back"

out=$(api POST /v1/backups '{"vm":"web","incremental":true}')
like "$out" '^409 .*incremental_impossible.*full backup first' "--incremental with no backup yet: 409, take a full one"

# A slowed full backup (256 MiB/s over the 1 GiB disk, about 4 s):
# what happens meanwhile.
check "backup create web --bwlimit 256M (full, live)" sh -c "'$VMGR_BIN' --state-dir '$STATE' backup create web --bwlimit 256M > '$STATE/b1.out' 2>&1 &"
check "the backup is running" wait_until 10 sh -c "'$VMGR_BIN' --state-dir '$STATE' backup list --json | jq -e 'length == 1'"
out=$(api POST /v1/backups '{"vm":"web"}')
like "$out" '^409 .*busy.*one backup of a VM at a time' "a second backup of the same VM meanwhile: 409"
out=$(api POST /v1/vms/web/stop)
like "$out" '^409 .*backup in progress' "stopping the VM meanwhile: 409"
check "progress is reported from QEMU's job (between 0 and 100%)" wait_until 10 sh -c \
    "'$VMGR_BIN' --state-dir '$STATE' backup show 1 --json | jq -e '.progress.percent > 0 and .progress.percent < 100'"
check "the backup completes" wait_until 60 sh -c "[ \"\$('$VMGR_BIN' --state-dir '$STATE' backup show 1 --json | jq -r .state)\" = complete ]"
is "$(state_of web)" running "web ran through its backup"
is "$(vmgr events web --json | jq '[.[] | select(.event == "pause")] | length')" 0 "and was never paused"
check "the CLI reports the full backup" wait_until 5 grep -q '^backup 1 of web: full' "$STATE/b1.out"
full_size=$(backup_field 1 size_bytes)
diag "full backup: $full_size bytes"

# The second pattern, then a VM restart and a vmgrd restart.
check "the guest writes pattern B at 512 MiB" write web B 512
check "shutdown web" vmgr shutdown web
check "start web again" vmgr start web
check "web boots again" wait_until 60 console_has web GUEST-READY
kill_daemon
start_daemon
is "$(state_of web)" running "vmgrd restarted; web still runs"
check "backup create web --incremental" vmgr backup create web --incremental
is "$(backup_field 2 kind):$(backup_field 2 parent)" "incremental:1" "backup 2 is an incremental on 1"
inc_size=$(backup_field 2 size_bytes)
diag "incremental after a VM and a vmgrd restart: $inc_size bytes for a 4 MiB change"
check "the incremental is about the change (4 to 6 MiB), not the 1 GiB disk" \
    sh -c "[ $inc_size -ge $((4 * MiB)) ] && [ $inc_size -lt $((6 * MiB)) ]"
check "its file backs onto backup 1's (relative)" sh -c \
    "qemu-img info --output=json '$STATE/backups/web/2/disk0.qcow2' | jq -e '.\"backing-filename\" == \"../1/disk0.qcow2\"'"
is "$(jq -r '.format, .vm, .kind, .parent, (.disks | length)' "$STATE/backups/web/2/manifest.json" | tr '\n' ' ')" \
    "1 web incremental 1 1 " "the manifest: format 1, vm, kind, parent, disks"
check "the manifest's SHA-256 is the file's" sh -c \
    "[ \"\$(jq -r '.disks[0].sha256' '$STATE/backups/web/2/manifest.json')\" = \"\$(sha256sum '$STATE/backups/web/2/disk0.qcow2' | cut -c1-64)\" ]"

# Restore each backup as a new VM, and read inside the restored guests.
check "backup restore 1 --as r1" vmgr backup restore 1 --as r1
check "backup restore 2 --as r2" vmgr backup restore 2 --as r2
is "$(vmgr info r2 --json | jq -r '.spec.disks[0].volume')" r2-disk0 "r2's disk is its own volume r2-disk0"
check "start r1 and r2" sh -c "'$VMGR_BIN' --state-dir '$STATE' start r1 && '$VMGR_BIN' --state-dir '$STATE' start r2"
check "r1 boots" wait_until 90 console_has r1 GUEST-READY
check "r2 boots" wait_until 90 console_has r2 GUEST-READY
is "$(read_sum r1 1 r1a)" "$A" "r1 (the full backup) holds pattern A"
is "$(read_sum r1 512 r1b)" "$ZERO" "r1 does not hold pattern B (written after it)"
is "$(read_sum r2 1 r2a)" "$A" "r2 (the incremental) holds pattern A"
is "$(read_sum r2 512 r2b)" "$B" "r2 holds pattern B"
check "stop r1 and r2" sh -c "'$VMGR_BIN' --state-dir '$STATE' stop r1 && '$VMGR_BIN' --state-dir '$STATE' stop r2"
check "delete r1" vmgr delete r1

out=$(api POST /v1/backups/2/restore)
like "$out" '^409 .*web is running.*stop it first' "restoring over the running web: 409"
out=$(api POST /v1/backups/2/restore '{"as":"r2"}')
check "restoring over the stopped r2 replaces its disks" sh -c "echo '$out' | grep -q '^200 '"
out=$(api DELETE /v1/backups/1)
like "$out" '^409 .*has_dependents' "deleting a backup an incremental builds on: 409"

# Prune: a third backup, keep 2; backup 2 loses its base and is merged.
check "the guest writes pattern C at 256 MiB" write web C 256
check "backup create web --incremental (3)" vmgr backup create web --incremental
out=$(vmgr backup prune web --keep 2 --json)
is "$(echo "$out" | jq -c '[.kept, .deleted, .merged]')" "[[2,3],[1],[2]]" "prune keeps 2 and 3, deletes 1, merges 2"
is "$(backup_field 2 kind):$(backup_field 2 parent)" "full:null" "backup 2 is whole now"
check "backup 1's files are gone" test ! -e "$STATE/backups/web/1"
check "backup verify 2" vmgr backup verify 2
check "backup verify 3 (an incremental on the merged 2)" vmgr backup verify 3
check "backup restore 3 --as r3" vmgr backup restore 3 --as r3
qemu-img convert -O raw "$STATE/volumes/r3-disk0.qcow2" "$STATE/r3.raw"
rsum() { dd if="$STATE/r3.raw" bs=65536 skip=$(($1 * 16)) count=64 2>/dev/null | sha256sum | cut -c1-64; }
is "$(rsum 1) $(rsum 256) $(rsum 512)" "$A $C $B" "r3 holds A, C and B: the pruned chain restores"
check "backup restore 2 --as p2 (the merged one)" vmgr backup restore 2 --as p2
qemu-img convert -O raw "$STATE/volumes/p2-disk0.qcow2" "$STATE/r3.raw"
is "$(rsum 1) $(rsum 256) $(rsum 512)" "$A $ZERO $B" "p2 holds A and B, not C: the merged backup restores as of its moment"
rm -f "$STATE/r3.raw"
check "delete r3 and p2" sh -c "'$VMGR_BIN' --state-dir '$STATE' delete r3 && '$VMGR_BIN' --state-dir '$STATE' delete p2"

# A damaged backup.
cp "$STATE/backups/web/3/disk0.qcow2" "$STATE/good.qcow2"
printf 'X' | dd of="$STATE/backups/web/3/disk0.qcow2" bs=1 seek=$((2 * MiB)) conv=notrunc 2>/dev/null
out=$(vmgr backup verify 3); rc=$?
is "$rc" 1 "verify of a damaged backup exits 1"
like "$out" "BAD +$STATE/backups/web/3/disk0.qcow2: checksum mismatch" "verify names the damaged file"
is "$(backup_field 3 verified)" false "the catalog records the failed verify"
out=$(api POST /v1/backups/3/restore '{"as":"r4"}')
like "$out" "^422 .*backup_damaged.*3/disk0.qcow2.*nothing was restored" "restore refuses the damaged backup"
check "no VM r4" sh -c "! '$VMGR_BIN' --state-dir '$STATE' info r4 2>/dev/null"
check "no volume or partial file of r4" sh -c "! ls '$STATE/volumes' | grep -q r4"
cp "$STATE/good.qcow2" "$STATE/backups/web/3/disk0.qcow2"
check "the repaired backup verifies again" vmgr backup verify 3

# A full store.
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$STATE/small"
	mount -t tmpfs -o size=2M vmgr-test-store "$STATE/small"
	before=$(vmgr backup list --json | jq -c 'map(.id)')
	out=$(vmgr backup create web --store "$STATE/small" 2>&1); rc=$?
	is "$rc" 1 "a backup into a full store fails"
	like "$out" 'No space left' "with a clear error"
	is "$(find "$STATE/small" -type f | wc -l)" 0 "no partial file is left in the store"
	is "$(vmgr backup list --json | jq -c 'map(.id)')" "$before" "the catalog is unchanged"
	is "$(state_of web)" running "web keeps running"
	out=$(api POST '/v1/backups?wait=1' "{\"vm\":\"web\",\"store\":\"$STATE/small\"}")
	like "$out" '^507 .*no_space.*No space left' "through the API (waiting): 507 no_space"
	umount "$STATE/small"
	check "after that, a backup of web works again" vmgr backup create web
else
	ok 0 "# SKIP full store: needs root to mount a small filesystem"
fi

# Bad input.
out=$(api POST /v1/backups '{"vm":"nosuch"}')
like "$out" '^404 .*no_such_vm' "a backup of an unknown VM: 404"
out=$(api POST /v1/backups '{"vm":"web","store":"relative/dir"}')
like "$out" '^422 .*absolute' "a relative store: 422"
out=$(api POST /v1/backups '{"vm":"web","store":"/tmp/../etc"}')
like "$out" '^422 ' "a store with .. in it: 422"
out=$(api POST /v1/backups '{"vm":"web","speed":1}')
like "$out" '^422 .*unknown_field' "an unknown field: 422"
out=$(api GET /v1/backups/999)
like "$out" '^404 .*no_such_backup' "an unknown backup: 404"
out=$(api POST /v1/backups/abc/verify)
like "$out" '^404 ' "a backup id that is not a number: 404"
vmgr backup prune web >/dev/null 2>&1
is $? 2 "prune without --keep: usage error (2)"
check "stop web" vmgr stop web

# A stopped VM's backup: vmgrd's own storage daemon, as the VM's user.
check "backup create web --bwlimit 256M (stopped)" sh -c "'$VMGR_BIN' --state-dir '$STATE' backup create web --bwlimit 256M > '$STATE/bs.out' 2>&1 &"
qsd_uid() { ps -o uid= -p "$(pgrep -f "qemu-storage-daemon.*$STATE/" | head -1)" 2>/dev/null | tr -d ' '; }
check "its storage daemon runs" wait_until 10 sh -c "pgrep -f '[q]emu-storage-daemon.*$STATE/' >/dev/null"
if [ "$(id -u)" = 0 ]; then
	is "$(qsd_uid)" $((0x40000000 + $(vmgr info web --json | jq .id))) \
	    "as root, the storage daemon runs as the VM's own user, not root"
else
	ok 0 "# SKIP the storage daemon's user: vmgrd is not root"
fi
check "the stopped VM's backup completes" wait_until 60 grep -q '^backup [0-9]* of web: full' "$STATE/bs.out"
sid=$(vmgr backup list --json | jq 'max_by(.id).id')
check "backup verify $sid" vmgr backup verify "$sid"
is "$(stat -c %u:%a "$STATE/backups/web/$sid" "$STATE/backups/web/$sid/disk0.qcow2" | sort -u | tr '\n' ' ')" "0:600 0:700 " \
    "its files are root's again, not the VM user's"
check "no storage daemon is left" sh -c "! pgrep -f '[q]emu-storage-daemon.*$STATE/'"

done_testing
