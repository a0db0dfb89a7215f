#!/bin/sh
# Offline migration (tests/e2e/mig.sh's two hosts): a stopped VM moves
# with its disks byte for byte (a snapshot goes along), a volume it
# attaches moves and stays attached, a linked clone arrives flattened,
# and a saved VM resumes on the destination where it was.  A crash of
# either vmgrd mid-way leaves it on exactly one host, and bad input is
# refused with the reason.
. "$(dirname "$0")/mig.sh"

settled() {	# settled VM: no migration of VM under way on either host
	for h in a b; do
		on $h migrations --json | jq -e --arg v "$1" \
		    'map(select(.vm == $v and (.state == "running" or .state == "aborting"))) | length == 0' \
		    >/dev/null || return 1
	done
}
vols() { ls "$(dir_of "$1")/volumes" | sort | tr '\n' ' '; }

# ---- a stopped VM, a snapshot, an attached volume
check "a volume data1" vmgr volume create data1 --size 32M
check "create cold (a new disk, data1 attached)" vmgr create cold --image tiny --memory 64 --disk new:128M --disk data1
check "a snapshot of cold" vmgr snapshot create cold s1
spec_a=$(vmgr info cold --json | jq -c .spec)
out=$(vmgr migrate cold --to hostb --json); rc=$?
is "$rc:$(echo "$out" | jq -r '.state + " " + .mode')" "0:completed offline" "migrate cold (stopped): offline, completed"
ok "$(echo "$out" | jq -e '.disk_bytes > 0 and .disk_bytes == .disk_size and .total_ms > 0' >/dev/null; echo $?)" \
    "its figures: $(echo "$out" | jq -c '{disk_size, disk_bytes, disk_ms, total_ms}')"
is "$(vb info cold --json | jq -r .state)" created "cold is on B, stopped"
is "$(vb info cold --json | jq -c .spec)" "$spec_a" "with the same spec"
is "$(vb snapshot list cold --json | jq -r '.[].name')" s1 "and its snapshot"
is "$(vb volume list --json | jq -r 'map(.name + ":" + (.owner // "-")) | sort | join(" ")')" \
    "cold-disk0:cold data1:-" "B's volumes: cold's disk, and data1, attached but not cold's"
is "$(vmgr info cold >/dev/null 2>&1 && echo yes || echo no)" no "A has no cold"
is "$(vols a)" "" "A has none of its volumes left"
is "$(vmgr migrations --json | jq -r '.[-1] | .mode + " " + .state')" "offline completed" "A's record: offline, completed"
is "$(vb migrations --json | jq -r '.[-1] | .mode + " " + .state')" "offline completed" "B's record too"

# ---- a linked clone arrives whole
printf 'BASE-DATA-%08d\n' 1 2 3 4 5 6 7 8 >"$STATE/base.raw"
truncate -s 16M "$STATE/base.raw"
check "a base volume" vmgr volume import base "$STATE/base.raw"
check "a linked clone of it" vmgr volume create cl0 --from base
check "create clone (the clone attached)" vmgr create clone --image tiny --memory 64 --disk cl0
like "$(rc_of vmgr migrate clone --to hostb)" 'completed.*rc=0' "migrate clone"
is "$(vb volume show cl0 --json | jq -r '.backing // "none"')" none "on B its disk has no backing file"
ok "$(qemu-img compare -f qcow2 -F raw "$B/volumes/cl0.qcow2" "$STATE/base.raw" >/dev/null 2>&1; echo $?)" \
    "and holds the base's data"
is "$(vols a)" "base.qcow2 " "A keeps the base, not the clone"

# ---- refused
check "B has a VM that forwards a port" vb create fw --image tiny --memory 64 --forward tcp:$((PORT_A + 3)):80
check "A has one with the same forward" vmgr create fw --image tiny --memory 64 --forward tcp:$((PORT_A + 3)):80
check "(B's takes another name)" vb delete fw
check "B's fw2 forwards the port" vb create fw2 --image tiny --memory 64 --forward tcp:$((PORT_A + 3)):80
like "$(rc_of vmgr migrate fw --to hostb)" '409 port_in_use.*rc=1' "a port B forwards already: 409 port_in_use, up front"
is "$(vb info fw >/dev/null 2>&1 && echo yes || echo no)" no "B has no fw"
check "create bk (a 64 MiB disk)" vmgr create bk --image tiny --memory 64 --disk new:64M
vmgr backup create bk --bwlimit 1M >/dev/null 2>&1 &
bk_pid=$!
backing_up() { [ "$(vmgr info bk --json | jq -r '.storage // "none"')" != none ]; }
wait_until 10 backing_up
like "$(rc_of vmgr migrate bk --to hostb)" '409.*(backup|busy).*rc=1' "a VM with a backup running: 409"
wait "$bk_pid"

# ---- a saved VM resumes there where it was
check "create sv" vmgr create sv --image tiny --memory 128 --disk new:64M
check "start sv" vmgr start sv
check "sv boots" wait_until 60 console_has sv GUEST-READY
type_in a sv 'i=0; while :; do i=$((i+1)); echo $i >/tmp/c; sleep 0.1; done &'
type_in a sv 'echo F""OO >/tmp/keep; echo S""AVED-$(cat /tmp/c)'
wait_until 10 console_has sv 'SAVED-[0-9]'
c1=$(last_num a sv SAVED-)
like "$(rc_of vmgr migrate sv --to hostb --offline)" 'moves live.*409.*rc=1' "--offline for a running VM: 409"
check "save sv" vmgr save sv
like "$(rc_of vmgr migrate sv --to hostb)" 'completed.*rc=0' "migrate sv (saved)"
is "$(vb info sv --json | jq -r .state)" saved "sv arrives saved"
check "start sv on B" vb start sv
type_in b sv 'echo A""GAIN-$(cat /tmp/c) $(cat /tmp/keep)'
wait_until 10 console_on b sv 'AGAIN-[0-9]'
c2=$(last_num b sv AGAIN-)
ok "$([ "$c2" -ge "$c1" ]; echo $?)" "it resumed where it was (counter $c1, then $c2)"
like "$(on b console sv --log | grep 'AGAIN-[0-9]' | tail -1)" 'FOO' "its RAM disk is there"
check "stop sv on B" vb stop sv

# ---- crashes: the VM stays on exactly one host
crash() {	# crash a|b POINT WHERE(a|b) VM
	restart_host "$1" "$2"
	vmgr migrate "$4" --to hostb --no-wait >/dev/null 2>&1
	_p=$([ "$1" = a ] && echo "$_daemon_pid" || echo "$b_pid")
	wait_until 60 sh -c "! kill -0 $_p 2>/dev/null"
	ok $? "$2: $1's vmgrd died there"
	wait "$_p" 2>/dev/null
	if [ "$1" = a ]; then _daemon_pid=; start_a; else b_pid=; start_b; fi
	wait_until 60 settled "$4"
	ok $? "$2: settled after the restart"
	_o=$(other "$3")
	is "$(on "$3" info "$4" --json 2>/dev/null | jq -r .state)" created "$2: $4 is on $3, stopped"
	is "$(on "$_o" info "$4" >/dev/null 2>&1 && echo yes || echo no)" no "$2: $_o has no $4"
	is "$(ls "$(dir_of "$_o")/volumes" | grep -c "^$4-")" 0 "$2: $_o has no volume of $4"
	is "$(find "$(dir_of "$_o")" -name '*.incoming' | wc -l)" 0 "$2: $_o has no file half-come"
	is "$(pgrep -f "qemu-storage-daemon.*$(dir_of "$_o")/" | wc -l)" 0 "$2: $_o serves nothing"
}
check "create c1" vmgr create c1 --image tiny --memory 64 --disk new:128M
crash a migrate:out:disks a c1
crash b migrate:in:prepared a c1
crash a migrate:out:after-handover b c1

done_testing
