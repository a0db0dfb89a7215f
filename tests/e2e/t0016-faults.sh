#!/bin/sh
# Faults around vmgrd: a QEMU that stops answering (SIGSTOP) fails only
# its own VM's requests, with a clear error, while the API and the other
# VMs go on; a state dir on a full filesystem fails every operation that
# must write (create, start, save, snapshot, backup, ...) with 507 while
# vmgrd keeps serving, records what QEMU does meanwhile (pause, stop) from
# a reserve, and works again once there is room; hundreds of
# idle connections, a client that sends one byte a second, and oversized
# headers do not stop others from being served; past --max-connections
# more clients are refused at once with 503 and vmgrd's descriptors stay
# bounded; a damaged database is refused at start and left untouched.
. "$(dirname "$0")/lib.sh"
start_daemon

# ---- a QEMU that stops answering
check "create a and b" sh -c "'$VMGR_BIN' --state-dir '$STATE' create a --image tiny && '$VMGR_BIN' --state-dir '$STATE' create b --image tiny"
check "start a and b" sh -c "'$VMGR_BIN' --state-dir '$STATE' start a && '$VMGR_BIN' --state-dir '$STATE' start b"
check "both boot" wait_until 90 sh -c "'$VMGR_BIN' --state-dir '$STATE' console a --log | grep -q GUEST-READY && '$VMGR_BIN' --state-dir '$STATE' console b --log | grep -q GUEST-READY"
pa=$(vmgr info a --json | jq .pid)
kill -STOP "$pa"
vmgr pause a >"$STATE/pause-a.out" 2>&1 &
ppid=$!
sleep 1
check "meanwhile, list answers" vmgr list
check "meanwhile, b pauses" vmgr pause b
check "and resumes" vmgr resume b
check "and a's request is still waiting for its QEMU" kill -0 "$ppid"
wait "$ppid"
is "$?" 1 "pause of the stopped QEMU fails"
like "$(cat "$STATE/pause-a.out")" 'did not answer within 10 s.*504' "with a clear error (504: QEMU did not answer)"
is "$(state_of b)" running "b was never affected"
check "stop a still works (forced)" vmgr stop a
is "$(state_of a)" created "a is stopped"
kill -CONT "$pa" 2>/dev/null

# ---- least privilege: each QEMU is a user of its own
if [ "$(id -u)" = 0 ]; then
	pb=$(vmgr info b --json | jq .pid)
	ub=$(stat -c %u /proc/"$pb")
	idb=$(vmgr info b --json | jq .id)
	is "$ub" $((0x40000000 + idb)) "b's QEMU runs as uid 0x40000000 + its id, not root"
	is "$(awk '/^CapEff/ {print $2}' /proc/"$pb"/status)" 0000000000000000 "with no capabilities"
	is "$(stat -c '%u %g %a' "$STATE/vm/$idb")" "0 $ub 710" "its run dir is root's, and only it may pass through (0710)"
	is "$(stat -c '%u %a' "$STATE/vm/$idb/qemu")" "$ub 700" "the one directory it writes, for its NICs' sockets, is its own"
	is "$(stat -c '%a' "$STATE")" 711 "the state dir can be passed through, not read"
	check "b's QEMU user cannot read the database" sh -c "! setpriv --reuid=$ub --regid=$ub --clear-groups cat '$STATE/vmgr.db' >/dev/null 2>&1"
	check "nor another VM's run dir" sh -c "! setpriv --reuid=$ub --regid=$ub --clear-groups ls '$STATE/vm/$(vmgr info a --json | jq .id)' >/dev/null 2>&1"
	check "nor the API socket" sh -c "! setpriv --reuid=$ub --regid=$ub --clear-groups '$VMGR_BIN' --state-dir '$STATE' list >/dev/null 2>&1"
else
	ok 0 "# SKIP least privilege: vmgrd is not root"
fi
check "stop b" vmgr stop b

# ---- many connections, a slow client, big headers
perl -MIO::Socket::UNIX -e '
	$| = 1;
	my @c;
	for (1..300) { push @c, IO::Socket::UNIX->new(Peer => $ARGV[0]) or last }
	my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die;
	$s->autoflush(1);
	print "$#c\n";
	for my $ch (split //, "GET /v1/vms HTTP/1.1\r\nHost: x\r\n") { print $s $ch; sleep 1 }
' "$STATE/vmgrd.sock" >"$STATE/idle.out" 2>&1 &
idle=$!
sleep 2
is "$(head -1 "$STATE/idle.out")" 299 "300 idle connections and a slow client are open"
check "vmgr list is served meanwhile" vmgr list
check "so is a create" vmgr create c --image tiny
big=$(head -c 20000 /dev/zero | tr '\0' a)
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$STATE/vmgrd.sock" -H "X-Big: $big" http://vmgrd/v1/vms)
like "$code" '^(4[0-9][0-9]|000)$' "a 20 KB header is refused ($code)"
check "and vmgrd serves on" vmgr info c
kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null

# ---- a cap on connections: more are refused at once, saying why
kill_daemon
start_daemon --max-connections 20
fds() { ls "/proc/$_daemon_pid/fd" | wc -l; }
before=$(fds)
perl -MIO::Socket::UNIX -e '
	$| = 1;
	my @c;
	for (1..100) { push @c, IO::Socket::UNIX->new(Peer => $ARGV[0]) or last }
	print scalar(@c), "\n";
	sleep 60;
' "$STATE/vmgrd.sock" >"$STATE/hold.out" 2>&1 &
hold=$!
wait_until 10 test -s "$STATE/hold.out"
sleep 1
is "$(head -1 "$STATE/hold.out")" 100 "100 connections made to a vmgrd with --max-connections 20"
# The refused ones linger a second while their requests are drained.
wait_until 5 sh -c "[ \$(ls /proc/$_daemon_pid/fd | wc -l) -le $((before + 21)) ]"
held=$(( $(fds) - before ))
ok "$([ "$held" -le 21 ]; echo $?)" "vmgrd holds at most 20 of them open ($held more descriptors)"
like "$(api GET /v1/vms)" '^503 .*too_many_connections.*20 connections open' \
    "one more client hears at once: 503 too_many_connections"
like "$(vmgr list 2>&1)" 'connections open' "vmgr says why"
kill "$hold" 2>/dev/null; wait "$hold" 2>/dev/null
check "when they close, clients are served again" wait_until 10 vmgr list
is "$(vmgr host --json | jq -c .api)" '{"connections":1,"max_connections":20}' \
    "vmgr host shows the open connections and the cap"
kill_daemon
start_daemon

# ---- a full state dir
if [ "$(id -u)" = 0 ]; then
	kill_daemon
	mkdir -p "$STATE/small"
	mount -t tmpfs -o size=24M vmgr-test-full "$STATE/small"
	OUTER=$STATE
	STATE=$STATE/small
	API_BODY=$OUTER/.body	# curl cannot write it on the full filesystem
	start_daemon
	check "create x (no disks) while there is room" vmgr create x --image tiny
	check "and z with a disk" vmgr create z --image tiny --disk new:1G
	check "and w, started" sh -c "'$VMGR_BIN' --state-dir '$STATE' create w --image tiny && '$VMGR_BIN' --state-dir '$STATE' start w"
	check "and u, started" sh -c "'$VMGR_BIN' --state-dir '$STATE' create u --image tiny && '$VMGR_BIN' --state-dir '$STATE' start u"
	dd if=/dev/zero of="$STATE/fill" bs=1M 2>/dev/null
	out=$(api POST /v1/vms/x/start)
	like "$out" '^507 .*no_space' "start x: 507"
	is "$(state_of x)" created "x stays created"
	check "and no QEMU of x runs" sh -c "! pgrep -f '[q]emu-system.*$STATE/vm/$(vmgr info x --json | jq .id)/'"
	out=$(api POST /v1/vms/w/save)
	like "$out" '^507 .*no_space' "save of the running w: 507"
	is "$(state_of w)" running "w runs on"
	check "and no state file of w is left" sh -c "! ls '$STATE/vm/$(vmgr info w --json | jq .id)' | grep -q sav"
	out=$(api POST /v1/vms '{"name":"y","image":"tiny","disks":[{"volume":"y-d","size_gib":1}]}')
	like "$out" '^507 .*no_space' "create with a disk: 507"
	out=$(api POST /v1/volumes '{"name":"v","size_mib":64}')
	like "$out" '^507 .*no_space' "volume create: 507"
	out=$(api POST /v1/networks '{"name":"n1"}')
	like "$out" '^507 ' "network create (a database write): 507"
	out=$(api PATCH /v1/vms/x '{"priority":7}')
	like "$out" '^507 ' "a change to a VM (a database write): 507"
	out=$(api POST /v1/vms/z/snapshots '{"name":"s1"}')
	like "$out" '^507 .*No space' "a snapshot of z: 507"
	out=$(api POST '/v1/backups?wait=1' '{"vm":"z"}')
	like "$out" '^507 .*no_space' "a backup of z into the state dir: 507"
	check "vmgrd keeps serving: list" vmgr list
	is "$(vmgr list --json | jq -r 'map(.name) | join(" ")')" "x z w u" "nothing half-made: only x, z, w and u exist"
	is "$(ls "$STATE/volumes")" z-disk0.qcow2 "no partial volume is left"
	is "$(vmgr snapshot list z --json | jq length) $(vmgr backup list --json | jq length)" "0 0" \
	    "no snapshot and no backup were recorded"
	check "z's disk is still sound" qemu-img check -q "$STATE/volumes/z-disk0.qcow2"
	# What QEMU does is recorded even now, from a reserve vmgrd keeps.
	check "pause w on the full state dir" vmgr pause w
	is "$(state_of w)" paused "w is recorded paused"
	check "resume w" vmgr resume w
	check "stop w" vmgr stop w
	is "$(state_of w)" created "w is recorded stopped"
	check "and no QEMU of w runs" sh -c "! pgrep -f '[q]emu-system.*$STATE/vm/$(vmgr info w --json | jq .id)/'"
	out=$(api POST /v1/vms '{"name":"y2","image":"tiny"}')
	like "$out" '^507 .*no_space.*reserve' "with the reserve in use, work that needs space is refused: 507"
	# Full again, the reserve spent: vmgrd follows QEMU, writes the row later.
	dd if=/dev/zero of="$STATE/fill2" bs=1M 2>/dev/null
	check "pause u with no reserve left" vmgr pause u
	is "$(state_of u)" paused "u is paused, as its QEMU is"
	rm -f "$STATE/fill" "$STATE/fill2"
	check "with room, its row is written within seconds" wait_until 10 grep -q 'u: paused is recorded now' "$STATE/vmgrd.out"
	kill_daemon
	start_daemon
	is "$(state_of w) $(state_of x) $(state_of z) $(state_of u)" "created created created paused" \
	    "after a restart every state is as recorded, and true"
	is "$(vmgr info u --json | jq -r .state_reason)" "paused by user" \
	    "u's pause came from the database, not from asking QEMU again"
	check "stop u" vmgr stop u
	check "with room again, a volume can be made" vmgr volume create v --size 64M
	check "and a VM with a disk" vmgr create y --image tiny --disk new:1G
	check "and a snapshot of z" vmgr snapshot create z s1
	check "and x starts" vmgr start x
	check "stop x, delete w" sh -c "'$VMGR_BIN' --state-dir '$STATE' stop x && '$VMGR_BIN' --state-dir '$STATE' delete w"
	kill_daemon
	STATE=$OUTER
	API_BODY=
	umount "$STATE/small"
	start_daemon
else
	ok 0 "# SKIP full state dir: needs root to mount a small filesystem"
fi

# ---- a damaged database
kill_daemon
cp "$STATE/vmgr.db" "$STATE/vmgr.db.good"
rm -f "$STATE/vmgr.db-wal" "$STATE/vmgr.db-shm"
# Overwrite a page in the middle of the file with garbage.
size=$(stat -c %s "$STATE/vmgr.db")
head -c 4096 /dev/urandom | dd of="$STATE/vmgr.db" bs=4096 seek=$((size / 4096 / 2)) conv=notrunc 2>/dev/null
before=$(sha256sum < "$STATE/vmgr.db")
out=$(timeout 10 "$VMGRD_BIN" --state-dir "$STATE" --foreground 2>&1); rc=$?
ok $([ "$rc" != 0 ]; echo $?) "vmgrd refuses to start on a damaged database"
like "$(echo "$out" | tr '\n' ' ')" 'is damaged.*will not touch it.*restore a copy' "and says so, and what to do"
is "$(sha256sum < "$STATE/vmgr.db")" "$before" "the damaged file is left as it was"
mv "$STATE/vmgr.db.good" "$STATE/vmgr.db"
start_daemon
check "with the good copy back, vmgrd starts" vmgr list

# ---- who may use the API
is "$(stat -c %a "$STATE/vmgrd.sock")" 600 "the socket is 0600"
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
check "another user cannot use the API" sh -c "! setpriv --reuid=65534 --regid=65534 --clear-groups '$VMGR_BIN' --state-dir '$STATE' list 2>/dev/null"
kill_daemon
start_daemon --socket-group nogroup
# As root the state dir is 0711 (QEMUs pass through it), else 0710.
dmode=$([ "$(id -u)" = 0 ] && echo 711 || echo 710)
is "$(stat -c '%a %G' "$STATE/vmgrd.sock") $(stat -c '%a %G' "$STATE")" "660 nogroup $dmode nogroup" \
    "--socket-group nogroup: the socket 0660 of that group, the state dir $dmode"
check "a member of the group can use the API" nobody "$VMGR_BIN" --state-dir "$STATE" list
check "but still cannot read the database" sh -c "! setpriv --reuid=65534 --regid=65534 --clear-groups cat '$STATE/vmgr.db' >/dev/null 2>&1"
kill_daemon
chmod 700 "$STATE"
start_daemon

done_testing
