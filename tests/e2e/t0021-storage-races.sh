#!/bin/sh
# Storage work against the moments that break it.  A live backup whose
# QEMU dies, or whose monitor link is dropped and made again, while its
# target files are being made (qemu-img is slowed down for that): it ends
# in one clear answer and vmgrd never touches the link it had (an ASan
# build stays clean).  A memory snapshot while QEMU cannot answer QMP
# (stopped, as snapshot-save holds its main loop) is still a success,
# with a monitor timeout of 1 s; a snapshot job a crashed vmgrd left
# concluded is dismissed, so the same name can be used again.  Two
# creates of one new volume name: one wins, the other is refused, and the
# winner's volume is whole.  A backup chain too long for any output
# buffer (16 disks, 8 backups, a long store path) verifies and restores.
. "$(dirname "$0")/lib.sh"
cat >"$STATE/qemu-img" <<EOF
#!/bin/sh
# qemu-img, slow to create files while $STATE/slow exists.
[ "\$1" = create ] && [ -e "$STATE/slow" ] && sleep 3
exec qemu-img "\$@"
EOF
chmod 755 "$STATE/qemu-img"
export VMGR_QEMU_IMG=$STATE/qemu-img
start_daemon --qmp-timeout 1
pid_of() { vmgr info "$1" --json | jq .pid; }

check "create a with a disk" vmgr create a --image tiny --disk new:64M
check "start a" vmgr start a
check "a boots" wait_until 60 console_has a GUEST-READY

# ---- a live backup whose QEMU dies while its targets are made
touch "$STATE/slow"
vmgr backup create a >"$STATE/b1.out" 2>&1 &
bpid=$!
sleep 1
kill -9 "$(pid_of a)"
wait $bpid
is "$?" 1 "the backup fails"
like "$(cat "$STATE/b1.out")" 'QEMU is gone|QEMU went away' "... saying QEMU is gone"
rm -f "$STATE/slow"
check "vmgrd is alive" vmgr list
is "$(state_of a)" crashed "a crashed"
is "$(vmgr backup list a --json | jq length)" 0 "no backup is listed"
is "$(find "$STATE/backups" -name '*.partial' | wc -l)" 0 "no partial backup is left"

# ---- a live backup whose monitor link goes and comes back meanwhile
check "start a again" vmgr start a
check "a boots" wait_until 60 console_has a GUEST-READY
touch "$STATE/slow"
vmgr backup create a >"$STATE/b2.out" 2>&1 &
bpid=$!
sleep 0.5
kill -STOP "$(pid_of a)"
sleep 2.5		# the sampler's query times out: the link is dropped
kill -CONT "$(pid_of a)"
wait $bpid
rc=$?
rm -f "$STATE/slow"
like "$(cat "$STATE/b2.out") rc=$rc" 'backup [0-9]+ of a.* rc=0|(QEMU is gone|QEMU went away|monitor).* rc=1' \
    "the backup ends in one clear answer ($(head -c 120 "$STATE/b2.out"))"
check "the monitor link is back" wait_until 10 sh -c "'$VMGR_BIN' --state-dir '$STATE' info a --json | jq -e .runtime.qmp_connected"
check "a backup now succeeds" vmgr backup create a
check "vmgrd is alive" vmgr list

# ---- memory snapshots while QEMU cannot answer: the stall point stops
# QEMU for 3 s right after snapshot-save (-load, -delete) is sent, as a
# job that holds its main loop would.  The monitor timeout is 1 s.
kill_daemon
export VMGR_STALL_AT=snapshot:after-send VMGR_STALL_S=3
start_daemon --qmp-timeout 1
logged=$(wc -l <"$STATE/vmgrd.out")
unset VMGR_STALL_AT VMGR_STALL_S
t0=$(date +%s)
out=$(vmgr snapshot create a s1 --memory 2>&1); rc=$?
is "$rc" 0 "the snapshot succeeds though QMP was silent three times its timeout"
like "$out" 'took snapshot s1 of a with its memory' "... and says so"
ok $(( $(date +%s) - t0 < 3 )) "it did wait for QEMU ($(( $(date +%s) - t0 )) s)"
is "$(vmgr snapshot list a --json | jq -r '.[] | select(.name == "s1") | .memory')" true "s1 is there, with memory"
check "revert to s1, stalled the same way" vmgr snapshot revert a s1
check "delete s1, stalled too" vmgr snapshot delete a s1
check "the monitor link was never dropped" sh -c "! tail -n +$((logged + 1)) '$STATE/vmgrd.out' | grep -q 'a: QMP connection closed'"
check "QEMU was stopped three times, three seconds each" sh -c "[ \$(grep -c 'stall point snapshot:after-send reached' '$STATE/vmgrd.out') = 3 ]"
check "a runs on" has_state a running

# ---- vmgrd dies while QEMU takes a snapshot: its job is dismissed
kill_daemon
export VMGR_CRASH_AT=snapshot:job-started
start_daemon --qmp-timeout 1
vmgr snapshot create a s2 --memory >/dev/null 2>&1
unset VMGR_CRASH_AT
check "vmgrd died once QEMU had the snapshot-save job" wait_until 10 sh -c "! kill -0 $_daemon_pid 2>/dev/null"
_daemon_pid=
start_daemon --qmp-timeout 1
check "QEMU finished it: s2 is there" wait_until 30 sh -c "'$VMGR_BIN' --state-dir '$STATE' snapshot list a --json | jq -e '.[] | select(.name == \"s2\")'"
check "the concluded job was dismissed at re-adoption" wait_until 10 grep -q 'dismissing the job vmgr-snap-s2' "$STATE/vmgrd.out"
check "so reverting to s2 (a job of the same name) works" vmgr snapshot revert a s2
check "and so does deleting it" vmgr snapshot delete a s2
check "stop a" vmgr stop a

# ---- two creates of one new volume name
touch "$STATE/slow"
bad=0
for i in 1 2 3; do
	api POST /v1/volumes "{\"name\": \"race$i\", \"size\": \"16M\"}" >"$STATE/r$i.1" &
	p1=$!
	sleep 0.2
	API_BODY=$STATE/.body2 api POST /v1/volumes "{\"name\": \"race$i\", \"size\": \"32M\"}" >"$STATE/r$i.2"
	wait $p1
	codes="$(cut -c1-3 "$STATE/r$i.1") $(cut -c1-3 "$STATE/r$i.2")"
	[ "$codes" = "201 409" ] || { bad=$((bad + 1)); diag "round $i: $codes"; }
	[ "$(vmgr volume show race$i --json | jq .size_bytes)" = 16777216 ] || bad=$((bad + 1))
done
is "$bad" 0 "each time the first create wins (201), the second is refused (409), and the volume is the first's"
api POST /v1/vms '{"name": "w1", "image": "tiny", "disks": [{"volume": "shared", "size": "16M"}]}' >"$STATE/w1" &
p1=$!
sleep 0.2
API_BODY=$STATE/.body2 api POST /v1/vms '{"name": "w2", "image": "tiny", "disks": [{"volume": "shared", "size": "16M"}]}' >"$STATE/w2"
wait $p1
is "$(cut -c1-3 "$STATE/w1") $(cut -c1-3 "$STATE/w2")" "201 409" "two VMs making one new volume: one is made, one refused"
is "$(vmgr volume show shared --json | jq -r '.owner + " " + (.size_bytes | tostring)')" "w1 16777216" \
    "the volume is the winner's, and whole"
check "its file is there" test -s "$STATE/volumes/shared.qcow2"
rm -f "$STATE/slow"
invariants "after the races"

# ---- a backup chain longer than any output buffer
store=$STATE/$(printf 's%.0s' $(seq 1 230))/$(printf 't%.0s' $(seq 1 230))
mkdir -p "$store"
disks=""
for i in $(seq 0 15); do disks="$disks --disk new:1M"; done
check "create c with 16 disks" vmgr create c --image tiny $disks
check "a full backup of c into a long store path" vmgr backup create c --store "$store"
for i in 2 3 4 5 6 7 8; do
	vmgr backup create c --incremental --store "$store" >/dev/null || diag "backup $i failed"
done
last=$(vmgr backup list c --json | jq '.[-1].id')
is "$(vmgr backup list c --json | jq length)" 8 "eight backups of 16 disks (128 files, past 64 KiB of hash lines)"
check "the last verifies, with its whole chain" vmgr backup verify "$last"
check "and restores" vmgr backup restore "$last" --as c2
is "$(vmgr info c2 --json | jq '.spec.disks | length')" 16 "c2 has its 16 disks"
done_testing
