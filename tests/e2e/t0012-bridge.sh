#!/bin/sh
# Bridge networks, in a network namespace of the test's own (the host's
# interfaces are never touched): a Linux bridge of vmgr's own making
# (never an interface the host has, whatever the network is called) with
# the subnet's first address, a tap per NIC, and vmgrd's dnsmasq leasing
# each guest its address; two guests reach each other and the bridge;
# deleting the network removes bridge, taps and dnsmasq, and nothing of
# the host's.  A bridge of the host's is used only when adopted, and then
# as it is.  A start that fails once its taps are made leaves no tap and
# no descriptor behind.  Needs root.
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
# The "host" has a LAN bridge br0 with an address and a port (a veth;
# the dummy driver is not everywhere).
inns ip link add br0 type bridge
inns ip addr add 192.168.50.1/24 dev br0
inns ip link add dummy0 type veth peer name dummy1
inns ip link set dummy0 master br0
inns ip link set br0 up
inns ip link set dummy0 up
host_br0() { inns ip -4 -br addr show br0 | awk '{print $1, $3, $4, $5}'; }
before=$(host_br0)
VMGRD_WRAP="ip netns exec $ns" start_daemon

like "$(vmgr network create br0 --type bridge --subnet 10.77.0.0/24)" \
    'created network br0 \(bridge, 10.77.0.0/24, bridge vmgrbr1\)' \
    "create a bridge network named br0: vmgr makes a bridge of its own"
brif=$(vmgr network show br0 --json | jq -r .bridge)
is "$brif" vmgrbr1 "... named vmgrbr1, after the network's id"
like "$(inns ip -br addr show "$brif")" '10\.77\.0\.1/24' "the bridge has the subnet's first address"
is "$(host_br0)" "$before" "the host's br0 is untouched: its own address only"
check "... and still has its port" sh -c "ip netns exec $ns ip -br link show master br0 | grep -q '^dummy0'"
is "$(inns cat /sys/class/net/$brif/ifalias)" "vmgr $STATE network 1" "vmgr's bridge carries vmgr's alias"
like "$(api POST /v1/networks '{"name": "lan", "type": "bridge", "bridge": "br0"}')" \
    '^409 .*interface_exists.*adopt-bridge br0' \
    "naming a new bridge after a host interface: 409, pointing to --adopt-bridge"
like "$(vmgr network create lan2 --bridge-name dummy0 2>&1)" 'already has an interface dummy0' "... with the CLI too"
like "$(vmgr network create lan3 --adopt-bridge dummy0 2>&1)" 'dummy0 is not a bridge' "a port is no bridge to adopt"
like "$(api POST /v1/networks '{"name": "lan4", "adopt": "br0", "type": "bridge", "subnet": "10.78.0.0/24"}')" \
    '^422 .*give no subnet' "an adopted bridge takes no subnet"
like "$(api POST /v1/networks '{"name": "lan5", "type": "bridge", "bridge": "../x"}')" '^422 ' \
    "a bad interface name: 422"
dpid=$(vmgr network show br0 --json | jq .dhcp_pid)
check "its dnsmasq runs" kill -0 "$dpid"
check "create a on br0" vmgr create a --image tiny --nic br0
check "create b on br0" vmgr create b --image tiny --nic br0
check "its dnsmasq outlived the SIGHUPs of new hosts (made at once)" sh -c "sleep 1; kill -0 $dpid && ! grep -q 'dnsmasq.*killed' '$STATE/vmgrd.out'"
check "start a" vmgr start a
check "start b" vmgr start b
check "a tap per NIC joined the bridge" sh -c "ip netns exec $ns ip -br link show master $brif | grep -c '^vmgrt' | grep -qx 2"
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
check "their taps are gone" sh -c "! ip netns exec $ns ip -br link show master $brif | grep -q ."
check "delete a" vmgr delete a
check "delete b" vmgr delete b
check "delete the network" vmgr network delete br0
check "vmgr's bridge is gone" sh -c "! ip netns exec $ns ip link show $brif 2>/dev/null"
check "dnsmasq is gone" wait_until 5 sh -c "! kill -0 $dpid 2>/dev/null"
is "$(host_br0)" "$before" "the host's br0 is as it was"

# The host's LAN bridge, adopted: the taps join it, and that is all.
like "$(vmgr network create lan --adopt-bridge br0)" 'created network lan \(bridge, adopted, bridge br0\)' \
    "adopt the host's br0"
like "$(vmgr network create lan6 --adopt-bridge br0 2>&1)" 'br0 is the bridge of network lan' "... once only"
is "$(vmgr network show lan --json | jq -c '[.adopted, .subnet, .gateway, .dhcp_pid]')" '[true,null,null,null]' \
    "no subnet, gateway or DHCP server of vmgr's on it"
check "create c on it" vmgr create c --image tiny --nic lan
is "$(vmgr info c --json | jq -r '.spec.nics[0].ip // "none"')" none "a NIC on it gets no address from vmgr"
like "$(api POST /v1/vms '{"name": "c2", "image": "tiny", "nics": [{"network": "lan", "ip": "192.168.50.9"}]}')" \
    '^422 .*adopted bridge' "nor may it be given one"
check "start c" vmgr start c
check "c's tap joined the host's bridge" sh -c "ip netns exec $ns ip -br link show master br0 | grep -q '^vmgrt'"
check "c boots" wait_until 60 console_has c GUEST-READY
printf 'ip addr add 192.168.50.7/24 dev eth0; for i in $(seq 1 10); do ping -c 1 -W 2 192.168.50.1 >/dev/null && echo lan-ok-$((5+5)) && break; sleep 1; done\n' |
    vmgr console c >/dev/null
check "c reaches the host's address on that LAN" wait_until 40 console_has c lan-ok-10
is "$(host_br0)" "$before" "br0 kept its address, and only it"
check "stop c" vmgr stop c
check "delete c" vmgr delete c
check "delete the network lan" vmgr network delete lan
check "the adopted bridge stays" inns ip link show br0
check "... with its port" sh -c "ip netns exec $ns ip -br link show master br0 | grep -q '^dummy0'"

# A start that fails once its taps are made leaves nothing behind.
kill_daemon
export VMGR_FAIL_AT=start:after-taps
VMGRD_WRAP="ip netns exec $ns" start_daemon
unset VMGR_FAIL_AT
check "a bridge network again" vmgr network create br1 --type bridge --subnet 10.79.0.0/24
check "create d on it" vmgr create d --image tiny --nic br1
vpid=$(pgrep -f "^$VMGRD_BIN --state-dir $STATE " | head -1)
vmgr start d >/dev/null 2>&1
fds0=$(ls /proc/$vpid/fd | wc -l)
for i in 1 2 3 4 5; do out=$(vmgr start d 2>&1); done
like "$out" 'injected failure' "each start fails, saying why"
is "$(state_of d)" created "d is back in created"
is "$(inns ip -br link | grep -c '^vmgrt')" 0 "no tap is left behind"
is "$(ls /proc/$vpid/fd | wc -l)" "$fds0" "vmgrd holds no more descriptors after five failed starts ($fds0)"
kill_daemon
VMGRD_WRAP="ip netns exec $ns" start_daemon
check "without the failure, d starts" vmgr start d
check "its tap is there" sh -c "ip netns exec $ns ip -br link | grep -q '^vmgrt'"
check "stop d" vmgr stop d
is "$(inns ip -br link | grep -c '^vmgrt')" 0 "and goes with its QEMU"

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
