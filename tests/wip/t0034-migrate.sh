#!/bin/sh
# Live migration between two vmgrd on this machine: A (this test's state
# dir) and B (a TCP listener with TLS from a CA made here).  A guest with
# a counter in RAM and records appended to its 1 GiB disk moves to B: the
# counter goes on without a reboot, every record is there, and A keeps
# nothing of it.  Bad input is refused, a cancel leaves it on A, a guest
# that outruns its timeout stays on A, and a crash of either vmgrd at each
# phase leaves the VM on exactly one host.
. "$(dirname "$0")/../e2e/lib.sh"
B=$STATE/b
mkdir -p "$B"
PORT=$((20000 + ($$ + 7) % 20000))

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=vmgr-test-ca \
    -keyout "$STATE/ca.key" -out "$STATE/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=hostb -keyout "$B/key.pem" \
    -out "$B/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$STATE/san.ext"
openssl x509 -req -in "$B/req.pem" -CA "$STATE/ca.pem" -CAkey "$STATE/ca.key" \
    -CAcreateserial -days 2 -extfile "$STATE/san.ext" -out "$B/cert.pem" 2>/dev/null
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$B/token"
chmod 600 "$B/token"

b_pid=
start_b() {
	env ${1:+VMGR_CRASH_AT=$1} "$VMGRD_BIN" --state-dir "$B" --foreground -v \
	    --listen tcp:127.0.0.1:$PORT --token-file "$B/token" \
	    --tls-cert "$B/cert.pem" --tls-key "$B/key.pem" >>"$B/vmgrd.out" 2>&1 &
	b_pid=$!
	wait_until 30 vb host || { echo "Bail out! B did not start"; exit 1; }
}
stop_b() { [ -n "$b_pid" ] && kill -"${1:-TERM}" "$b_pid" 2>/dev/null; wait "$b_pid" 2>/dev/null; b_pid=; }
b_qemus() { pgrep -f "qemu-system.*$B/" || true; }
a_qemus() { pgrep -f "qemu-system.*$STATE/vm/" || true; }
trap 'stop_b; for p in $(b_qemus); do kill -9 $p; done; cleanup' EXIT
vb() { "$VMGR_BIN" --state-dir "$B" "$@"; }
start_b
start_daemon -v
check "A knows B as remote hostb" vmgr remote add hostb https://127.0.0.1:$PORT \
    --token-file "$B/token" --cacert "$STATE/ca.pem"

type_in() {	# type_in VM TEXT [b]: on A, or on B
	if [ -n "$3" ]; then printf '%s\n' "$2" | vb console "$1" >/dev/null
	else printf '%s\n' "$2" | vmgr console "$1" >/dev/null; fi
}
on_b_has() { vb console "$1" --log | grep -q -- "$2"; }

# ---- bad input
check "create web (tiny, 128 MiB, a 1 GiB disk)" vmgr create web --image tiny --memory 128 --disk new:1G
like "$(vmgr migrate web --to nosuch 2>&1)" 'no remote named "nosuch"' "an unknown remote: refused"
like "$(api POST /v1/vms/web/migrate '{"to":"hostb"}')" '^409 .*only a running or paused VM' "a stopped VM: 409 (offline is not there yet)"
like "$(api POST /v1/vms/web/migrate '{"to":"hostb","color":1}')" '^4[0-9][0-9] .*color' "an unknown field: refused"
like "$(api POST /v1/vms/web/migrate '{"to":"hostb","max_downtime_ms":-5}')" '^422 ' "a negative downtime: 422"
like "$(vmgr migrate web 2>&1)" 'needs|--to' "no --to: usage"
like "$(api POST /v1/migrations '{"id":"x"}')" '^422 ' "a malformed incoming migration: 422"
like "$(api POST /v1/migrations "{\"id\":\"0123456789abcdef0123456789abcdef\",\"spec\":{\"name\":\"z\",\"image\":\"tiny\"},\"host\":\"127.0.0.1\",\"psk\":\"$(printf '%064d' 0)\",\"from\":\"$(vmgr host --json | jq -r .host_id)\"}")" \
    '^422 .*migrate_to_self' "a migration to itself: 422"
check "B has a VM named web already" vb create web --image tiny --memory 64
check "start web on A" vmgr start web
check "web boots" wait_until 60 console_has web GUEST-READY
like "$(vmgr migrate web --to hostb 2>&1)" 'already exists' "a name used on B: refused, and said so"
is "$(state_of web)" running "web still runs on A"
is "$(vmgr info web --json | jq -r '.operation // "none"')" none "and is not busy"
check "delete B's web" vb delete web

# ---- the guest: a counter in RAM, records appended to its disk
type_in web 'i=0; while :; do i=$((i+1)); echo $i >/tmp/c; printf "REC-%08d\n" $i | dd of=/dev/vda bs=16 seek=$i conv=notrunc 2>/dev/null; sync; sleep 0.1; done &'
type_in web 'echo U""P-$(cut -d. -f1 /proc/uptime)'
check "the guest writes" wait_until 10 console_has web UP-
sleep 2
up_a=$(vmgr console web --log | sed -n 's/.*UP-\([0-9]*\).*/\1/p' | tail -1)

# ---- cancel
out=$(vmgr migrate web --to hostb --bandwidth 1M --no-wait --json)
like "$(echo "$out" | jq -r .id)" '^[0-9a-f]{32}$' "migrate --no-wait answers with the migration's id"
sleep 1
check "migrate --cancel" vmgr migrate web --cancel
not_busy() { [ "$(vmgr info web --json | jq -r '.operation // "none"')" = none ]; }
wait_until 20 not_busy
is "$(state_of web)" running "after the cancel web runs on A"
is "$(vb info web >/dev/null 2>&1 && echo yes || echo no)" no "B has no web"
wait_until 20 sh -c '[ -z "$(pgrep -f "qemu-system.*'"$B"'/")" ]'
is "$(b_qemus | wc -l)" 0 "and no QEMU for it"
is "$(ls "$B/volumes" 2>/dev/null | wc -l)" 0 "and no volume"

# ---- the move
out=$(vmgr migrate web --to hostb --json); rc=$?
is "$rc" 0 "migrate web --to hostb"
is "$(echo "$out" | jq -r .state)" completed "the migration completed"
diag "$(echo "$out" | jq -c '{setup_ms, disk_bytes, disk_ms, memory_bytes, memory_passes, downtime_ms, total_ms, dirty_rate_mibs}')"
ok "$(echo "$out" | jq -e '.disk_size == 1073741824 and .disk_bytes >= 1073741824 and .memory_bytes > 0 and .downtime_ms > 0 and .switchover_ms >= .downtime_ms and .total_ms > 0' >/dev/null; echo $?)" \
    "its figures: 1 GiB of disk, memory bytes, downtime, total time"
is "$(vmgr info web >/dev/null 2>&1 && echo yes || echo no)" no "A has no web"
is "$(a_qemus | wc -l)" 0 "A has no QEMU"
is "$(ls "$STATE/volumes" | wc -l)" 0 "A has no volume left"
is "$(ls "$STATE/vm" 2>/dev/null | wc -l)" 0 "A has no run dir left"
is "$(vb info web --json | jq -r .state)" running "web runs on B"
type_in web 'echo U""PB-$(cut -d. -f1 /proc/uptime) C""-$(cat /tmp/c)' b
check "the guest answers on B" wait_until 10 on_b_has web UPB-
up_b=$(vb console web --log | sed -n 's/.*UPB-\([0-9]*\).*/\1/p' | tail -1)
ok "$([ "$up_b" -ge "$up_a" ]; echo $?)" "its uptime went on ($up_a s on A, $up_b s on B): no reboot"
c1=$(vb console web --log | sed -n 's/.*C-\([0-9]*\).*/\1/p' | tail -1)
sleep 1
type_in web 'echo C""2-$(cat /tmp/c)' b
wait_until 10 on_b_has web C2-
c2=$(vb console web --log | sed -n 's/.*C2-\([0-9]*\).*/\1/p' | tail -1)
ok "$([ "$c1" -gt 20 ] && [ "$c2" -gt "$c1" ]; echo $?)" "the counter in RAM goes on ($c1, then $c2)"
type_in web 'kill %1; n=$(cat /tmp/c); bad=0; for k in $(seq 1 $n); do r=$(dd if=/dev/vda bs=16 skip=$k count=1 2>/dev/null); [ "$r" = "$(printf "REC-%08d" $k)" ] || bad=$((bad+1)); done; echo R""ECS-$n-BAD-$bad' b
check "the guest read its records back" wait_until 120 on_b_has web 'RECS-[0-9]*-BAD-[0-9]'
like "$(vb console web --log | grep -o 'RECS-[0-9]*-BAD-[0-9]*' | tail -1)" 'RECS-[0-9]+-BAD-0$' \
    "every record written on A and on B is on B's disk"
is "$(vmgr migrations --json | jq -r '.[-1] | .vm + " " + .role + " " + .state + " " + .to')" "web out completed hostb" \
    "vmgr migrations on A: completed, to hostb"
is "$(vb migrations --json | jq -r '.[-1] | .vm + " " + .role + " " + .state')" "web in completed" \
    "vmgr migrations on B: arrived"
like "$(vmgr migrations)" 'web +this host +hostb +completed' "the table says it"
like "$(vmgr events web 2>/dev/null | tail -3)" 'migrat' "the event log says it on A"
like "$(vb events web 2>/dev/null | tail -3)" 'migrat' "and on B"
like "$(curl -s --unix-socket "$STATE/vmgrd.sock" http://vmgrd/metrics | grep '^vmgr_migrations')" 'role="out",state="completed"} 1' "/metrics counts it"

done_testing
