#!/bin/sh
# Isolated networks on the kernel's bridges (vmgrd as root, --switch
# kernel): each network is a bridge and each NIC a tap, all in a network
# namespace of vmgrd's own, so the host's interfaces never see them and
# the namespace has no address to answer guests from.  Guests keep
# talking while vmgrd is down, and after it comes back; a vmgrd started
# with the other switch says which VMs it cannot put on their network.
# Deleting a network removes its bridge, and the last one the namespace.
# Bad --switch values are refused.
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP the kernel's bridges need root"
	_done=1; _n=0; trap - EXIT; rm -rf "$STATE"; exit 0
fi

out=$("$VMGRD_BIN" --state-dir "$STATE" --foreground --switch fast 2>&1); rc=$?
like "$out" '--switch: auto, kernel or user' "a bad --switch value is refused, saying why"
is "$rc" 2 "... as a usage error"

start_daemon --switch kernel
ns=$STATE/net/ns
inns() { nsenter --net="$ns" "$@"; }
is "$(vmgr host --json | jq -r .switch.backend)" kernel "vmgr host: the kernel's bridges carry isolated networks"
like "$(vmgr host)" "isolated: +kernel switch \(Linux bridges in vmgrd's network namespace" "... and says so in words"
check "no namespace before the first isolated network" sh -c "[ ! -e '$ns' ]"

check "create k0" vmgr network create k0 --subnet 10.93.0.0/24
like "$(stat -f -c %T "$ns" 2>&1)" 'nsfs' "the namespace is bound to the state dir"
check "create k1" vmgr network create k1 --subnet 10.94.0.0/24
for v in a b; do check "create $v on k0" vmgr create $v --image tiny --nic k0; done
check "create c on k1" vmgr create c --image tiny --nic k1
for v in a b c; do check "start $v" vmgr start $v; done
check "all three boot" wait_until 120 sh -c "for v in a b c; do '$VMGR_BIN' --state-dir '$STATE' console \$v --log | grep -q GUEST-READY || exit 1; done"
like "$(vmgr info a)" "nic 0: +k0 .* \(kernel\)" "vmgr info: the kernel's bridge carries a's NIC"
is "$(vmgr info a --json | jq -r '.runtime.nics[0].backend')" kernel "... in --json too"

# What the host sees: none of it.  What the namespace holds: a bridge per
# network with its NICs' taps, owned by each VM's QEMU, and no address.
is "$(ip -o link | grep -c -E ' vmgr[it][0-9]')" 0 "the host has no bridge or tap of the isolated networks"
k0=$(inns ip -o link show type bridge | awk -F': ' '{print $2}' | sort | head -1)
like "$k0" '^vmgri[0-9]+$' "the namespace has a bridge per network ($k0)"
is "$(inns ip -o link show master "$k0" | wc -l)" 2 "k0's bridge holds a's and b's taps"
tap=$(inns ip -o link show master "$k0" | awk -F': ' '{print $2}' | cut -d@ -f1 | head -1)
like "$(inns ip -d link show dev "$tap")" "tun type tap .*user" "a tap is a tap of a QEMU user"
for v in a b; do
	m=$(vmgr info $v --json | jq -r '.spec.nics[0].mac')
	like "$(inns bridge fdb show br "$k0" | grep "^$m ")" 'sticky master .* static' "$v's MAC is a static entry learning cannot move"
done
is "$(inns bridge -d link show | grep -c 'learning on')" 0 "nothing is learned from a filtered NIC"
is "$(inns ip -o addr | grep -v ' lo ' | wc -l)" 0 "the namespace has no address"
is "$(inns ip -6 -o addr | wc -l)" 0 "... and no IPv6"
like "$( (inns nft list chain bridge vmgr out; inns nft list chain bridge vmgr local) | tr "\n" " ")" 'hook output priority [a-z0-9]+; policy drop;.*hook input priority [a-z0-9]+; policy drop;' \
    "its own stack sends nothing to the networks and takes nothing from them"

ip_a=$(vmgr info a --json | jq -r '.spec.nics[0].ip')
printf 'ping -c 3 -W 2 %s >/dev/null && echo b-a-ok-$((2+3))\n' "$ip_a" | vmgr console b >/dev/null
check "b pings a over k0" wait_until 30 console_has b b-a-ok-5
# c takes an address of k0's subnet: the bridges are apart, so no luck.
printf 'ip addr add 10.93.0.99/24 dev eth0; ping -c 3 -W 1 %s >/dev/null && echo c-reaches-$((5*5)) || echo c-isolated-$((3+4))\n' "$ip_a" |
    vmgr console c >/dev/null
check "c on k1 cannot reach a on k0" wait_until 30 console_has c 'c-isolated-7\|c-reaches-25'
ok "$(console_has c c-isolated-7; echo $?)" "... and never did"
tx0=$(vmgr stats b --json | jq '.nics[0].tx_packets')
ok "$([ "$tx0" -ge 3 ]; echo $?)" "b's NIC counted what it sent ($tx0 frames)"

# vmgrd goes: the kernel forwards on without it.  b pings a a moment
# after vmgrd is killed (QEMU keeps the console log itself).
blog=$(vmgr info b --json | jq -r .runtime.console_log)
printf '(sleep 3; ping -c 3 -W 2 %s >/dev/null && echo b-a-down-$((3+4))) &\n' "$ip_a" | vmgr console b >/dev/null
kill_daemon KILL
check "b reached a while vmgrd was down" wait_until 20 grep -q b-a-down-7 "$blog"
start_daemon --switch kernel
printf 'ping -c 3 -W 2 %s >/dev/null && echo b-a-back-$((4+4))\n' "$ip_a" | vmgr console b >/dev/null
check "and after it came back, on the same namespace" wait_until 30 console_has b b-a-back-8
tx1=$(vmgr stats b --json | jq '.nics[0].tx_packets')
ok "$([ "$tx1" -gt "$tx0" ]; echo $?)" "the counters went on ($tx0, then $tx1 frames)"

# A vmgrd on its own switch cannot take over these NICs: it says so.
kill_daemon TERM
start_daemon --switch user
like "$(grep "was started on the kernel's bridge" "$STATE/vmgrd.out" | head -1)" "a: NIC 0 was started on the kernel's bridge" \
    "vmgrd --switch user says which running NICs it cannot switch"
kill_daemon TERM
start_daemon --switch kernel

for v in a b c; do vmgr stop $v >/dev/null; done
is "$(inns ip -o link | grep -c ' vmgrt')" 0 "stopped VMs leave no tap"
for v in a b; do check "delete $v" vmgr delete $v; done
check "delete k0" vmgr network delete k0
is "$(inns ip -o link show type bridge | wc -l)" 1 "deleting k0 removed its bridge (k1's is left)"
check "delete c" vmgr delete c
check "delete k1" vmgr network delete k1
check "with the last isolated network, the namespace goes" sh -c "[ ! -e '$ns' ] && ! grep -q ' $ns ' /proc/mounts"
done_testing
