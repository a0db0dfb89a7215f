#!/bin/sh
# Bridge networks, in a network namespace of the test's own (the host's
# interfaces are never touched): a Linux bridge with the subnet's first
# address, a tap per NIC, and vmgrd's dnsmasq leasing each guest its
# address; two guests reach each other and the bridge; deleting the
# network removes bridge, taps and dnsmasq.  Needs root.
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ] || ! command -v dnsmasq >/dev/null; then
	echo "1..0 # SKIP needs root and dnsmasq"
	_done=1; _n=0; trap - EXIT; rm -rf "$STATE"; exit 0
fi
ns=vmgrt$$
ip netns add $ns
trap 'cleanup; ip netns del '$ns' 2>/dev/null' EXIT
ip netns exec $ns ip link set lo up
inns() { ip netns exec $ns "$@"; }
VMGRD_WRAP="ip netns exec $ns" start_daemon

like "$(vmgr network create br0 --type bridge --subnet 10.77.0.0/24)" 'created network br0 \(bridge, 10.77.0.0/24\)' \
    "create a bridge network"
like "$(inns ip -br addr show br0)" '10\.77\.0\.1/24' "the bridge has the subnet's first address"
dpid=$(vmgr network show br0 --json | jq .dhcp_pid)
check "its dnsmasq runs" kill -0 "$dpid"
check "create a on br0" vmgr create a --image tiny --nic br0
check "create b on br0" vmgr create b --image tiny --nic br0
check "its dnsmasq outlived the SIGHUPs of new hosts (made at once)" sh -c "sleep 1; kill -0 $dpid && ! grep -q 'dnsmasq.*killed' '$STATE/vmgrd.out'"
check "start a" vmgr start a
check "start b" vmgr start b
check "a tap per NIC joined the bridge" sh -c "ip netns exec $ns ip -br link show master br0 | grep -c '^vt' | grep -qx 2"
check "both boot" wait_until 90 sh -c "for v in a b; do '$VMGR_BIN' --state-dir '$STATE' console \$v --log | grep -q GUEST-READY || exit 1; done"
ipa=$(vmgr info a --json | jq -r '.spec.nics[0].ip'); ipb=$(vmgr info b --json | jq -r '.spec.nics[0].ip')
# udhcpc waits 20 s after three unanswered discovers: on a loaded host
# the guests nudge it (SIGUSR1) every 5 s until they have their lease.
for v in a b; do
	ip=$(vmgr info $v --json | jq -r '.spec.nics[0].ip')
	printf 'for i in $(seq 1 60); do ip addr show eth0 | grep -q "inet '$ip'/" && break; [ $((i %% 5)) -eq 0 ] && kill -USR1 $(pidof udhcpc) 2>/dev/null; sleep 1; done; ip addr show eth0 | grep -q "inet '$ip'/" && echo lease-ok-$((2+2))\n' |
	    vmgr console $v >/dev/null
done
check "a got its address ($ipa) by DHCP from vmgrd's dnsmasq" wait_until 70 console_has a lease-ok-4
check "so did b ($ipb)" wait_until 70 console_has b lease-ok-4
printf 'for i in $(seq 1 10); do ping -c 1 -W 2 '$ipb' >/dev/null && ping -c 1 -W 2 10.77.0.1 >/dev/null && echo reach-ok-$((3+3)) && break; sleep 1; done\n' |
    vmgr console a >/dev/null
check "a reaches b ($ipb) and the bridge" wait_until 60 console_has a reach-ok-6
like "$(vmgr stats a --json | jq -c '.nics[0]')" '"rx_packets":[1-9]' "the tap's counters show in stats"
like "$(vmgr network delete br0 2>&1)" 'used by VM a' "deleting it while in use is refused"
check "stop a" vmgr stop a
check "stop b" vmgr stop b
check "their taps are gone" sh -c "! ip netns exec $ns ip -br link show master br0 | grep -q ."
check "delete a" vmgr delete a
check "delete b" vmgr delete b
check "delete the network" vmgr network delete br0
check "the bridge is gone" sh -c "! ip netns exec $ns ip link show br0 2>/dev/null"
check "dnsmasq is gone" wait_until 5 sh -c "! kill -0 $dpid 2>/dev/null"
# Without root: refused, saying why.
nb=$(mktemp -d /tmp/vmgr-e2e-nobody.XXXXXX)
chown 65534 "$nb"
setpriv --reuid=65534 --regid=65534 --clear-groups "$VMGRD_BIN" --state-dir "$nb" \
    --foreground >"$nb/out" 2>&1 &
npid=$!
wait_until 10 test -S "$nb/vmgrd.sock"
out=$(curl -s -w ' %{http_code}' --unix-socket "$nb/vmgrd.sock" -X POST \
    --data '{"name": "br1", "type": "bridge"}' http://vmgrd/v1/networks | tr -d '\n')
like "$out" 'needs_root.* 403$' "a vmgrd without root refuses bridge networks (403 needs_root)"
like "$(curl -s --unix-socket "$nb/vmgrd.sock" -X POST --data '{"name": "lan5"}' http://vmgrd/v1/networks)" \
    '"type":"isolated"' "... but makes isolated ones"
kill $npid; wait $npid 2>/dev/null
rm -rf "$nb"
done_testing
