#!/bin/sh
# NAT.  `--nic nat` through passt (Debian's passt, when installed) and
# through QEMU's slirp: the guest gets the same address either way, port
# forwards reach it and it reaches the host; passt runs as the VM's QEMU
# user, in its cgroup, outlives a vmgrd restart and ends with its QEMU.
# `vmgrd --nat passt` without passt refuses to start, saying why.  Then a
# bridge network with --nat, in network namespaces of the test's own (a
# fake uplink; the host's interfaces are never touched): the guest
# reaches the "outside" masqueraded, nothing outside reaches the guest
# unasked, and deleting the network removes vmgr's nftables table and
# nothing of any other table.
. "$(dirname "$0")/lib.sh"
port=$((21000 + $$ % 20000))
hport=$((port + 1))
page() { curl -s --max-time 2 "http://127.0.0.1:$1/"; }

# A web server on the host's loopback, for guests to reach.
mkdir -p "$STATE/hostwww" && echo hello-from-host >"$STATE/hostwww/index.html"
perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
	    Listen => 5, ReuseAddr => 1) or die;
	$SIG{ALRM} = sub { exit 0 }; alarm 600;
	while (my $c = $s->accept) { <$c>; print $c "HTTP/1.0 200 OK\r\n\r\nhello-from-host\n"; close $c }' \
    "$hport" &
hostweb=$!
trap 'kill $hostweb 2>/dev/null; cleanup' EXIT

# guest_web VM: busybox httpd on port 80 serving "hello-from-VM".
guest_web() {
	printf 'mkdir -p /www; echo hello-from-%s > /www/index.html; httpd -p 80 -h /www; echo httpd-up-$((2+3))\n' "$1" |
	    vmgr console "$1" >/dev/null
	wait_until 10 console_has "$1" httpd-up-5
}
# reaches_host VM TAG: the guest fetches the host's page through 10.0.2.2.
reaches_host() {
	printf 'for i in $(seq 1 20); do wget -q -O - http://10.0.2.2:%s/ 2>/dev/null | grep -q hello-from-host && echo %s-host-$((4*4)) && break; sleep 1; done\n' \
	    "$hport" "$2" | vmgr console "$1" >/dev/null
	wait_until 40 console_has "$1" "$2-host-16"
}
# has_addr VM: eth0 has the address slirp would give.
has_addr() {
	printf 'for i in $(seq 1 30); do ip -4 addr show eth0 | grep -q "inet 10.0.2.15/24" && echo addr-ok-$((3*3)) && break; sleep 1; done\n' |
	    vmgr console "$1" >/dev/null
	wait_until 40 console_has "$1" addr-ok-9
}

if command -v passt >/dev/null; then
	start_daemon
	is "$(vmgr host --json | jq -r .nat.backend)" passt "vmgrd takes passt for NAT when it is there"
	check "create web --nic nat --forward tcp:$port:80" vmgr create web --image tiny --nic nat --forward tcp:$port:80
	check "start web" vmgr start web
	check "web boots" wait_until 60 console_has web GUEST-READY
	like "$(vmgr info web)" "nic 0: +nat [0-9a-f:]+ \(passt\)" "vmgr info says passt carries its NIC"
	is "$(vmgr info web --json | jq -r '.runtime.nics[0].backend')" passt "... and so does the JSON"
	id=$(vmgr info web --json | jq .id) qpid=$(vmgr info web --json | jq .pid)
	ppid_=$(cat "$STATE/vm/$id/passt0.pid")
	check "passt runs" kill -0 "$ppid_"
	is "$(stat -c %u /proc/$ppid_)" "$(stat -c %u /proc/$qpid)" "... as the VM's QEMU user"
	is "$(cat /proc/$ppid_/cgroup)" "$(cat /proc/$qpid/cgroup)" "... in the VM's cgroup"
	check "the guest has 10.0.2.15/24, as with slirp" has_addr web
	check "the guest serves a page" guest_web web
	check "the forward reaches it through passt" wait_until 30 sh -c "curl -s --max-time 2 http://127.0.0.1:$port/ | grep -q hello-from-web"
	check "the guest reaches the host at 10.0.2.2" reaches_host web p1
	kill_daemon KILL
	start_daemon
	check "after vmgrd was killed, passt still runs" kill -0 "$ppid_"
	is "$(vmgr info web --json | jq -r '.runtime.nics[0].backend')" passt "... and vmgrd knows it is passt"
	is "$(page $port)" hello-from-web "... and the forward still works"
	check "stop web" vmgr stop web
	check "passt ends with its QEMU" wait_until 10 sh -c "! kill -0 $ppid_ 2>/dev/null"
	check "... and leaves no pid file" test ! -e "$STATE/vm/$id/passt0.pid"
	check "the forward's port is free again" sh -c "! curl -s --max-time 1 http://127.0.0.1:$port/"
	kill_daemon
	start_daemon --nat slirp
	is "$(vmgr host --json | jq -r '.nat | .backend + " " + .reason')" "slirp --nat slirp" "vmgrd --nat slirp: QEMU's slirp, saying why"
	check "start web on slirp" vmgr start web
	check "web boots again (a fresh console log)" wait_until 60 console_has web GUEST-READY
	like "$(vmgr info web)" "nic 0: +nat [0-9a-f:]+ \(slirp\)" "vmgr info says slirp carries it now"
	check "no passt for it" test ! -e "$STATE/vm/$id/passt0.pid"
	check "the guest has the same address" has_addr web
	check "the guest serves a page" guest_web web
	check "the same forward reaches it through slirp" wait_until 30 sh -c "curl -s --max-time 2 http://127.0.0.1:$port/ | grep -q hello-from-web"
	check "the guest reaches the host at 10.0.2.2" reaches_host web p2
	check "stop web" vmgr stop web
	kill_daemon
	# --nat passt where there is none: vmgrd says so and does not start.
	out=$(timeout 20 env PATH=/nonexistent VMGR_QEMU=$(command -v qemu-system-x86_64) \
	    VMGR_QEMU_IMG=$(command -v qemu-img) "$VMGRD_BIN" --state-dir "$STATE" --foreground \
	    --nat passt 2>&1); rc=$?
	ok "$([ $rc -ne 0 ]; echo $?)" "vmgrd --nat passt without passt: it does not start (exit $rc)"
	like "$out" "--nat passt: passt is not installed" "... saying why"
	like "$("$VMGRD_BIN" --nat fast 2>&1)" "--nat: auto, passt or slirp" "a bad --nat: refused"
else
	ok 0 "# SKIP passt is not installed (Debian's passt)"
fi

if [ "$(id -u)" != 0 ] || ! command -v nft >/dev/null || ! command -v dnsmasq >/dev/null ||
    ! command -v ping >/dev/null; then
	ok 0 "# SKIP a bridge's NAT needs root, nft, dnsmasq and ping"
	done_testing
	exit 0
fi
# ---- a bridge network's NAT, between two namespaces: ns (vmgrd's host)
# and out (its uplink's other side, 198.51.100.1, with no route back to
# the guests: only masquerading brings their answers back).
ns=vmgrn$$ out=vmgro$$
ip netns add $ns
ip netns add $out
trap 'kill $hostweb 2>/dev/null; cleanup; ip netns del '$ns' 2>/dev/null; ip netns del '$out' 2>/dev/null' EXIT
inns() { ip netns exec $ns "$@"; }
inout() { ip netns exec $out "$@"; }
inns ip link set lo up
inout ip link set lo up
ip link add up0 netns $ns type veth peer name up1 netns $out
inns ip addr add 198.51.100.2/24 dev up0
inout ip addr add 198.51.100.1/24 dev up1
inns ip link set up0 up
inout ip link set up1 up
inns ip route add default via 198.51.100.1
# A table of someone else's, which vmgr must never touch.
inns nft add table inet other
inns nft add chain inet other input '{ type filter hook input priority 0; policy accept; }'
inns nft add rule inet other input counter
other() { inns nft list table inet other | grep -v 'counter packets'; }
other0=$(other)
VMGRD_WRAP="ip netns exec $ns" start_daemon

like "$(api POST /v1/networks '{"name": "iso", "nat": true}')" '^422 .*nat is for bridges' \
    "nat on an isolated network: 422"
like "$(api POST /v1/networks '{"name": "b0", "type": "bridge", "nat": "yes"}')" '^422 .*true or false' \
    "nat that is not a boolean: 422"
like "$(vmgr network create up --type bridge --subnet 10.88.0.0/24 --nat)" \
    'created network up \(bridge, 10.88.0.0/24, bridge vmgrbr[0-9]+, NAT to the uplink\)' \
    "vmgr network create up --type bridge --nat"
nid=$(vmgr network show up --json | jq .id)
is "$(vmgr network show up --json | jq .nat)" true "the network says it has NAT"
like "$(vmgr network show up)" "nat: +to the host's uplink \(nftables table ip vmgr_$nid\)" "vmgr network show names its table"
like "$(inns nft list table ip vmgr_$nid)" 'ip saddr 10.88.0.0/24 ip daddr != 10.88.0.0/24 counter packets [0-9]+ bytes [0-9]+ masquerade' \
    "vmgr's table masquerades the subnet"
is "$(inns cat /proc/sys/net/ipv4/ip_forward)" 1 "IPv4 forwarding is on"
like "$(cat "$STATE/vmgrd.out")" "network up: NAT needs IPv4 forwarding: net.ipv4.ip_forward is now 1" "... and vmgrd said it turned it on"
check "create g on up" vmgr create g --image tiny --nic up
check "start g" vmgr start g
check "g boots" wait_until 60 console_has g GUEST-READY
gip=$(vmgr info g --json | jq -r '.spec.nics[0].ip')
printf 'for i in $(seq 1 60); do ip addr show eth0 | grep -q "inet '$gip'/" && break; [ $((i %% 5)) -eq 0 ] && kill -USR1 $(pidof udhcpc) 2>/dev/null; sleep 1; done; for i in $(seq 1 20); do ping -c 1 -W 2 198.51.100.1 >/dev/null && echo out-ok-$((6+1)) && break; sleep 1; done\n' |
    vmgr console g >/dev/null
check "g reaches the uplink's far side, masqueraded (it has no route back)" wait_until 90 console_has g out-ok-7
like "$(inns nft list table ip vmgr_$nid)" 'counter packets [1-9][0-9]* bytes [0-9]+ masquerade' \
    "the masquerade rule counted g's traffic"
# The far side learns the way to the guests: still nothing new gets in.
inout ip route add 10.88.0.0/24 via 198.51.100.2
check "the outside cannot reach g unasked" sh -c "! ip netns exec $out ping -c 2 -W 1 $gip >/dev/null"
like "$(inns nft list chain ip vmgr_$nid forward)" 'oifname "vmgrbr[0-9]+" counter packets [1-9][0-9]* bytes [0-9]+ drop' \
    "... its pings were dropped by vmgr's table"
# vmgrd restarts: the table is made anew, not doubled.
kill_daemon KILL
VMGRD_WRAP="ip netns exec $ns" start_daemon
is "$(inns nft list table ip vmgr_$nid | grep -c masquerade)" 1 "after a vmgrd restart: one masquerade rule, not two"
is "$(inns nft list tables | grep -c 'vmgr_')" 1 "... and one table of vmgr's"
check "stop g" vmgr stop g
check "delete g" vmgr delete g
check "delete the network" vmgr network delete up
check "vmgr's table is gone with it" sh -c "! ip netns exec $ns nft list table ip vmgr_$nid >/dev/null 2>&1"
is "$(other)" "$other0" "the other table is as it was"
done_testing
