#!/bin/sh
# Volumes and snapshots: the pool (create, linked clones and their
# read-only base, import, grow, delete), volumes attached to a VM by name,
# a volume grown under a running guest, snapshots with memory reverted
# under a running guest, disk-only snapshots reverted offline, and the bad
# input of each.
. "$(dirname "$0")/lib.sh"
start_daemon

size_of() { vmgr volume show "$1" --json | jq .size_bytes; }

# ---- the pool
check "volume create data1 --size 64M" vmgr volume create data1 --size 64M
is "$(size_of data1)" 67108864 "data1 is 64 MiB"
is "$(vmgr volume show data1 --json | jq -r '.backing, .used_by')" "null
null" "no backing file, attached to nothing"
out=$(api POST /v1/volumes '{"name":"data1","size_mib":64}')
like "$out" '^409 .*volume_exists' "the same name again: 409"
out=$(api POST /v1/volumes '{"name":"../x","size_mib":64}')
like "$out" '^422 .*invalid_name' "a name with a path in it: 422"
out=$(api POST /v1/volumes '{"name":"big","size_mib":999999999999}')
like "$out" '^422 .*size_mib' "a huge size: 422"
out=$(api POST /v1/volumes '{"name":"x","size_mib":64,"colour":"red"}')
like "$out" '^422 .*unknown_field' "an unknown field: 422"
vmgr volume create nosize >/dev/null 2>&1
is $? 2 "volume create without --size or --from: usage error (2)"
out=$(api GET /v1/volumes/nosuch)
like "$out" '^404 .*no_such_volume' "an unknown volume: 404"
check "nothing half-made is left in the pool" sh -c "! ls '$STATE/volumes' | grep -v -E '^data1.qcow2$'"

check "volume create clone --from data1 (linked clone)" vmgr volume create clone --from data1
is "$(vmgr volume show clone --json | jq -r .backing)" data1 "clone's backing file is data1"
is "$(vmgr volume show data1 --json | jq -r '.clones, .read_only')" "1
true" "data1 now has a clone and is read-only"
is "$(qemu-img info --output=json "$STATE/volumes/clone.qcow2" | jq -r '."backing-filename"')" \
    data1.qcow2 "the backing file is relative: the pool can move"
out=$(api DELETE /v1/volumes/data1)
like "$out" '^409 .*volume_is_base' "deleting a base with clones: 409"
out=$(api POST /v1/volumes/data1/resize '{"size_mib":128}')
like "$out" '^409 .*volume_is_base' "resizing a base: 409"
out=$(api POST /v1/vms '{"name":"b","image":"tiny","disks":[{"volume":"data1"}]}')
like "$out" '^409 .*volume_is_base' "attaching a base to a VM: 409"

out=$(api POST /v1/volumes/clone/resize '{"size_mib":32}')
like "$out" '^422 .*shrink_refused' "resizing below the current size: 422"
check "volume resize clone +64M" vmgr volume resize clone +64M
is "$(size_of clone)" 134217728 "clone grew to 128 MiB"

# Import: a raw file, then a qcow2 with a backing file (refused).
dd if=/dev/urandom of="$STATE/raw.img" bs=1M count=3 2>/dev/null
check "volume import imp FILE (raw)" vmgr volume import imp "$STATE/raw.img"
check "the imported volume holds the file's data" \
    qemu-img compare -f raw -F qcow2 "$STATE/raw.img" "$STATE/volumes/imp.qcow2"
qemu-img create -q -f qcow2 -b /etc/passwd -F raw "$STATE/evil.qcow2" 1M
out=$(api POST /v1/volumes "{\"name\":\"evil\",\"import\":\"$STATE/evil.qcow2\"}")
like "$out" '^422 .*has_backing_file' "importing an image with a backing file (a host file): 422"
out=$(api POST /v1/volumes '{"name":"rel","import":"raw.img"}')
like "$out" '^422 .*absolute' "import needs an absolute path: 422"

# ---- attached volumes
out=$(api POST /v1/vms '{"name":"b","image":"tiny","disks":[{"volume":"nosuch"}]}')
like "$out" '^422 .*no_such_volume' "attaching a volume that does not exist: 422"
check "create web --disk clone --disk new:1G" vmgr create web --image tiny --disk clone --disk new:1G
is "$(vmgr volume show clone --json | jq -r .used_by)" web "clone is used by web"
is "$(vmgr volume show web-disk1 --json | jq -r .owner)" web "web-disk1 was made with web and belongs to it"
out=$(api POST /v1/vms '{"name":"b","image":"tiny","disks":[{"volume":"clone"}]}')
like "$out" '^409 .*volume_in_use' "attaching a volume another VM uses: 409"
out=$(api DELETE /v1/volumes/clone)
like "$out" '^409 .*volume_in_use' "deleting a volume in use: 409"

check "start web" vmgr start web
check "web boots" wait_until 60 console_has web GUEST-READY
if [ "$(id -u)" = 0 ]; then
	uw=$(stat -c %u /proc/"$(vmgr info web --json | jq .pid)")
	is "$(stat -c '%u %a' "$STATE/volumes/clone.qcow2") $(stat -c '%u %a' "$STATE/volumes/web-disk1.qcow2")" \
	    "$uw 600 $uw 600" "web's volumes belong to its QEMU's user, 0600"
	is "$(stat -c '%u %g %a' "$STATE/volumes/data1.qcow2")" "0 $((0x40000000)) 640" \
	    "the base of the linked clone is root's, readable by QEMUs' group, written by none"
	check "web's QEMU user (with the QEMUs' group) cannot read the unattached volume imp" sh -c \
	    "! setpriv --reuid=$uw --regid=$uw --groups=$((0x40000000)) cat '$STATE/volumes/imp.qcow2' >/dev/null 2>&1"
	check "but can read the base of its clone" sh -c \
	    "setpriv --reuid=$uw --regid=$uw --groups=$((0x40000000)) cat '$STATE/volumes/data1.qcow2' >/dev/null"
fi
type_in() { printf '%s\n' "$1" | vmgr console web >/dev/null; }
type_in 'echo SIZE-$(cat /sys/block/vda/size)'
check "the guest sees the clone's 128 MiB (262144 sectors)" wait_until 10 console_has web SIZE-262144
check "volume resize clone +64M while web runs" vmgr volume resize clone +64M
type_in 'echo SIZE2-$(cat /sys/block/vda/size)'
check "the running guest sees 192 MiB at once (393216 sectors)" wait_until 10 console_has web SIZE2-393216

# ---- snapshots, live
type_in 'echo before > /tmp/f'
check "snapshot create web s1 --memory" vmgr snapshot create web s1 --memory
is "$(state_of web)" running "web kept running through the snapshot"
type_in 'echo after > /tmp/f; echo changed > /tmp/g; echo WROTE-$((40+2))'
check "the guest changed its RAM disk" wait_until 10 console_has web WROTE-42
out=$(vmgr snapshot revert web s1); rc=$?
is "$rc" 0 "snapshot revert web s1"
like "$out" 'it is running' "the CLI says web is running"
is "$(state_of web)" running "web is running after the revert"
type_in 'echo F-$(cat /tmp/f) G-$(cat /tmp/g 2>/dev/null || echo gone)'
check "the change is gone: /tmp/f says before, /tmp/g is gone" wait_until 10 console_has web 'F-before G-gone'
check "snapshot create web d1 (disks only, live)" vmgr snapshot create web d1
is "$(vmgr snapshot list web --json | jq -r 'map("\(.name):\(.memory)") | join(" ")')" \
    "s1:true d1:false" "list: s1 with memory, d1 without"
out=$(api POST /v1/vms/web/snapshots/d1/revert)
like "$out" '^409 .*disks only' "reverting a disk-only snapshot under a running guest: 409"
out=$(api POST /v1/vms/web/snapshots '{"name":"s1"}')
like "$out" '^409 .*snapshot_exists' "a snapshot name taken twice: 409"
out=$(api POST /v1/vms/web/snapshots '{"name":"a/b"}')
like "$out" '^422 .*invalid_name' "a snapshot name with a path in it: 422"
out=$(api DELETE /v1/vms/web/snapshots/..%2Fx)
like "$out" '^40[04] ' "a path in the URL's snapshot name: refused"
out=$(api POST /v1/vms/web/snapshots/nosuch/revert)
like "$out" '^404 .*no_such_snapshot' "reverting an unknown snapshot: 404"
out=$(api POST /v1/vms/web/snapshots '{"name":"x","memory":"yes"}')
like "$out" '^422 ' "memory must be a boolean: 422"

# ---- snapshots, offline
check "stop web" vmgr stop web
out=$(api POST /v1/vms/web/snapshots '{"name":"m2","memory":true}')
like "$out" '^422 .*not_running' "a memory snapshot of a stopped VM: 422"
check "snapshot revert web d1 (stopped)" vmgr snapshot revert web d1
check "snapshot delete web s1" vmgr snapshot delete web s1
is "$(vmgr snapshot list web --json | jq -r 'map(.name) | join(" ")')" d1 "only d1 is left"
check "qemu-img agrees: no s1 on either disk" sh -c \
    "! qemu-img snapshot -l '$STATE/volumes/clone.qcow2' '$STATE/volumes/web-disk1.qcow2' | grep -q s1"
check "web starts again after the revert" vmgr start web
check "and boots" wait_until 60 console_has web GUEST-READY
check "stop web" vmgr stop web

# ---- a VM's delete takes its own volumes, not attached ones
check "delete web" vmgr delete web
check "web-disk1 went with web" sh -c "! vmgr volume show web-disk1 2>/dev/null"
is "$(vmgr volume show clone --json | jq -r .used_by)" null "clone stays, attached to nothing"
check "volume delete clone" vmgr volume delete clone
check "volume delete data1 (no clones left)" vmgr volume delete data1
is "$(vmgr volume list --json | jq -r 'map(.name) | join(" ")')" imp "only imp is left"

# ---- a restart keeps the pool and sweeps partial files
touch "$STATE/volumes/junk.qcow2.partial"
kill_daemon
start_daemon
check "a partial volume left by a crash is removed at start" test ! -e "$STATE/volumes/junk.qcow2.partial"
is "$(vmgr volume list --json | jq -r 'map(.name) | join(" ")')" imp "the pool is as it was"

done_testing
