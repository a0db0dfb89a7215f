#!/bin/sh
# Live migration between two vmgrd on this machine (tests/e2e/mig.sh): A
# and B, each on a TCP port with TLS from a CA made here.  A guest with a
# counter in RAM and records appended to its 1 GiB disk moves to B: the
# counter goes on without a reboot, every record is there, and A keeps
# nothing of it; then it comes back.  Bad input of each kind is refused
# with the reason, a cancel leaves the VM where it was, and a paused VM
# arrives paused.
. "$(dirname "$0")/mig.sh"

# ---- bad input, before anything runs
check "create web (tiny, 128 MiB, a 1 GiB disk)" vmgr create web --image tiny --memory 128 --disk new:1G
like "$(vmgr migrate web --to nosuch 2>&1)" 'no remote named "nosuch"' "an unknown remote: refused"
like "$(api POST /v1/vms/web/migrate '{"to":"hostb","color":1}')" '^4[0-9][0-9] .*color' "an unknown field: refused"
like "$(api POST /v1/vms/web/migrate '{"to":"hostb","max_downtime_ms":-5}')" '^422 ' "a negative downtime: 422"
like "$(api POST /v1/vms/web/migrate '{"to":"hostb","bandwidth":"lots"}')" '^422 ' "a bandwidth that is no number: 422"
like "$(api POST /v1/vms/web/migrate '{"to":"hostb","postcopy":true,"offline":true}')" '^422 ' "post-copy and offline at once: 422"
like "$(vmgr migrate web --to hostb --postcopy 2>&1)" 'post-copy is refused.*422 unsupported' "post-copy: refused with 422, and why"
like "$(api POST /v1/vms/nosuch/migrate '{"to":"hostb"}')" '^404 ' "an unknown VM: 404"
like "$(rc_of vmgr migrate web)" 'to REMOTE.*rc=2' "no --to: a usage error (exit 2)"
like "$(rc_of vmgr migrate web --to hostb --max-downtime soon)" 'max-downtime.*rc=2' "a bad --max-downtime: a usage error"
like "$(api POST /v1/migrations '{"id":"x"}')" '^422 ' "a malformed incoming migration: 422"
like "$(api POST /v1/migrations "{\"id\":\"0123456789abcdef0123456789abcdef\",\"spec\":{\"name\":\"z\",\"image\":\"tiny\"},\"host\":\"127.0.0.1\",\"psk\":\"$(printf '%064d' 0)\",\"from\":\"$(vmgr host --json | jq -r .host_id)\"}")" \
    '^422 .*migrate_to_self' "a migration to itself: 422"
like "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$STATE/ca.pem" -X POST \
    -H 'Authorization: Bearer wrong-token-wrong-token' --data '{}' \
    "https://127.0.0.1:$PORT_B/v1/migrations")" '^401$' "B refuses an incoming migration without its token: 401"
like "$(api POST /v1/migrations/0123456789abcdef0123456789abcdef/commit '{}')" '^404 ' "a commit of no migration: 404"

check "B has a VM named web already" vb create web --image tiny --memory 64
check "start web on A" vmgr start web
check "web boots" wait_until 60 console_has web GUEST-READY
like "$(rc_of vmgr migrate web --to hostb)" 'already exists.*rc=1' "a name used on B: refused (exit 1), and said so"
is "$(state_of web)" running "web still runs on A"
is "$(vmgr info web --json | jq -r '.operation // "none"')" none "and is not busy"
check "delete B's web" vb delete web

# ---- no room on B, B's token changed
stop_b
env "$VMGRD_BIN" --state-dir "$B" --foreground --capacity-memory 96M $(tls_args b) >>"$B/vmgrd.out" 2>&1 &
b_pid=$!
wait_until 30 vb host
like "$(vmgr migrate web --to hostb 2>&1)" '409.*(no_room|exceeds_capacity)' "B without room: its scheduler's 409 and reason"
stop_b
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/token-b"
start_b
like "$(vmgr migrate web --to hostb 2>&1)" 'token|401|refused' "B's token changed: refused, and said so"
is "$(state_of web)" running "web still runs on A"
check "A takes B's new token" vmgr remote remove hostb
check "(again)" vmgr remote add hostb "https://127.0.0.1:$PORT_B" --token-file "$STATE/token-b" --cacert "$STATE/ca.pem"
is "$(b_qemus | wc -l)" 0 "B runs no QEMU after the refusals"
is "$(ls "$B/volumes" 2>/dev/null | wc -l)" 0 "and has no volume"

# ---- the guest: a counter in RAM, records appended to its disk
# The counter says how many records are written: each is written first.
type_in a web 'i=0; while :; do i=$((i+1)); printf "REC-%08d\n" $i | dd of=/dev/vda bs=16 seek=$i conv=notrunc 2>/dev/null; sync; echo $i >/tmp/c; sleep 0.1; done &'
type_in a web 'echo U""P-$(cut -d. -f1 /proc/uptime)'
check "the guest writes" wait_until 10 console_has web 'UP-[0-9]'
sleep 2
up_a=$(last_num a web UP-)

# ---- cancel
out=$(vmgr migrate web --to hostb --bandwidth 1M --no-wait --json)
like "$(echo "$out" | jq -r .id)" '^[0-9a-f]{32}$' "migrate --no-wait answers with the migration's id"
sleep 1
check "migrate --cancel" vmgr migrate web --cancel
not_busy() { [ "$(vmgr info web --json | jq -r '.operation // "none"')" = none ]; }
wait_until 20 not_busy
is "$(state_of web)" running "after the cancel web runs on A"
is "$(vb info web >/dev/null 2>&1 && echo yes || echo no)" no "B has no web"
wait_until 20 sh -c "[ -z \"\$(pgrep -f 'qemu-system.*$B/vm/')\" ]"
is "$(b_qemus | wc -l)" 0 "and no QEMU for it"
is "$(ls "$B/volumes" 2>/dev/null | wc -l)" 0 "and no volume"
like "$(rc_of vmgr migrate web --cancel)" 'not migrating.*rc=1' "a cancel with none running: refused"

# ---- the move
out=$(vmgr migrate web --to hostb --json); rc=$?
is "$rc" 0 "migrate web --to hostb"
is "$(echo "$out" | jq -r .state)" completed "the migration completed"
diag "$(echo "$out" | jq -c '{setup_ms, disk_bytes, disk_ms, memory_bytes, memory_passes, downtime_ms, switchover_ms, total_ms, dirty_rate_mibs}')"
ok "$(echo "$out" | jq -e '.disk_size == 1073741824 and .disk_bytes >= 1073741824 and .memory_bytes > 0 and .downtime_ms > 0 and .switchover_ms >= .downtime_ms and .total_ms > 0 and .setup_ms > 0' >/dev/null; echo $?)" \
    "its figures: 1 GiB of disk, memory bytes, downtime, time until it ran there, total"
is "$(vmgr info web >/dev/null 2>&1 && echo yes || echo no)" no "A has no web"
is "$(a_qemus | wc -l)" 0 "A has no QEMU"
is "$(ls "$STATE/volumes" | wc -l)" 0 "A has no volume left"
is "$(ls "$STATE/vm" 2>/dev/null | wc -l)" 0 "A has no run dir left"
is "$(vb info web --json | jq -r .state)" running "web runs on B"
is "$(vb info web --json | jq -r '.spec.memory_mib, .spec.disks[0].volume' | tr '\n' ' ')" "128 web-disk0 " "with its spec"
type_in b web 'echo U""PB-$(cut -d. -f1 /proc/uptime) C""-$(cat /tmp/c)'
check "the guest answers on B" wait_until 10 console_on b web 'UPB-[0-9]'
up_b=$(last_num b web UPB-)
ok "$([ "$up_b" -ge "$up_a" ]; echo $?)" "its uptime went on ($up_a s on A, $up_b s on B): no reboot"
c1=$(last_num b web ' C-')
sleep 1
type_in b web 'echo C""2-$(cat /tmp/c)'
wait_until 10 console_on b web 'C2-[0-9]'
c2=$(last_num b web C2-)
ok "$([ "$c1" -gt 20 ] && [ "$c2" -gt "$c1" ]; echo $?)" "the counter in RAM goes on ($c1, then $c2)"
is "$(vmgr migrations --json | jq -r '.[-1] | .vm + " " + .role + " " + .state + " " + .to')" "web out completed hostb" \
    "vmgr migrations on A: completed, to hostb"
is "$(vb migrations --json | jq -r '.[-1] | .vm + " " + .role + " " + .state')" "web in completed" \
    "vmgr migrations on B: arrived"
like "$(vmgr migrations)" 'web +this host +hostb +live +completed' "the table says it"
like "$(vmgr events web 2>/dev/null | tail -3)" 'migrat' "the event log says it on A"
like "$(vb events web 2>/dev/null | tail -3)" 'migrat' "and on B"
like "$(curl -s --unix-socket "$STATE/vmgrd.sock" http://vmgrd/metrics | grep '^vmgr_migration')" \
    'role="out",state="completed"} 1' "/metrics counts it"

# ---- and back, paused: it arrives paused, and its disk came along
# The writer stops on B; the disk's checksum there, at the switch-over,
# must be the one A reads from its disk after the move.
type_in b web 'kill %1; sync; echo 3 >/proc/sys/vm/drop_caches; echo S""UMB-$(dd if=/dev/vda bs=1M count=4 2>/dev/null | md5sum | cut -c1-32)'
check "the guest's disk checksum on B" wait_until 30 console_on b web 'SUMB-[0-9a-f]'
sum_b=$(on b console web --log | sed -n 's/.*SUMB-\([0-9a-f]*\).*/\1/p' | tail -1)
check "pause web on B" vb pause web
out=$(vb migrate web --to hosta --json); rc=$?
is "$rc:$(echo "$out" | jq -r .state)" 0:completed "migrate it back to A"
is "$(state_of web)" paused "it arrives paused, as it was"
is "$(vb info web >/dev/null 2>&1 && echo yes || echo no)" no "B forgot it"
is "$(b_qemus | wc -l)" 0 "B runs no QEMU"
check "resume it on A" vmgr resume web
# Read from the disk itself, not the guest's cache of it.
type_in a web 'sync; echo 3 >/proc/sys/vm/drop_caches; echo S""UMA-$(dd if=/dev/vda bs=1M count=4 2>/dev/null | md5sum | cut -c1-32)'
check "the guest's disk checksum on A" wait_until 30 console_has web 'SUMA-[0-9a-f]'
sum_a=$(vmgr console web --log | sed -n 's/.*SUMA-\([0-9a-f]*\).*/\1/p' | tail -1)
is "$sum_a" "$sum_b" "the disk's checksum on A is the one B had at the switch-over"
type_in a web 'n=$(cat /tmp/c); bad=0; for k in $(seq 1 $n); do r=$(dd if=/dev/vda bs=16 skip=$k count=1 2>/dev/null); [ "$r" = "$(printf "REC-%08d" $k)" ] || bad=$((bad+1)); done; echo R""ECS-$n-BAD-$bad'
check "the guest read its records back" wait_until 120 console_has web 'RECS-[0-9]*-BAD-[0-9]'
like "$(vmgr console web --log | grep -o 'RECS-[0-9]*-BAD-[0-9]*' | tail -1)" 'RECS-[0-9]+-BAD-0$' \
    "every record written on A and on B is on its disk"
ok "$([ "$(last_num a web RECS-)" -gt "$c2" ]; echo $?)" "and the records go on past the counter seen on B"

done_testing
