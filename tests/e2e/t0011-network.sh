#!/bin/sh
# Isolated networks switched by vmgrd: two guests on lan0 ping each other;
# a guest on lan1 cannot reach them even with an address of lan0's subnet;
# the switch counts each NIC's traffic; MACs and addresses persist across
# stop/start and a vmgrd restart; bad input is refused.
. "$(dirname "$0")/lib.sh"
start_daemon

check "create lan0" vmgr network create lan0 --subnet 10.10.0.0/24
like "$(vmgr network create lan1)" 'created network lan1 \(isolated, 10.11.0.0/24\)' \
    "create lan1: the next free 10.N.0.0/24"
check "create a on lan0" vmgr create a --image tiny --nic lan0
check "create b on lan0" vmgr create b --image tiny --nic lan0
check "create c on lan1" vmgr create c --image tiny --nic lan1
is "$(vmgr info a --json | jq -r '.spec.nics[0].ip') $(vmgr info b --json | jq -r '.spec.nics[0].ip')" \
    "10.10.0.2 10.10.0.3" "addresses come from the subnet in order"
mac_a=$(vmgr info a --json | jq -r '.spec.nics[0].mac')
is "$(vmgr network show lan0 --json | jq -r '[.members[].vm] | join(" ")')" "a b" "lan0 lists its members"

# Bad input.
like "$(api POST /v1/networks '{"name": "x", "subnet": "10.10.0.0/16"}')" '^409 .*overlaps 10.10.0.0/24 of network lan0' \
    "an overlapping subnet: 409"
for sn in 10.10.0.1/24 300.1.1.0/24 10.0.0.0/33 10.0.0.0 banana; do
	is "$(api POST /v1/networks "{\"name\": \"x\", \"subnet\": \"$sn\"}" | cut -d' ' -f1)" 422 "bad subnet $sn: 422"
done
like "$(api POST /v1/networks '{"name": "x", "type": "mesh"}')" '^422 .*type must be isolated or bridge' "an unknown type: 422"
like "$(api POST /v1/networks '{"name": "lan0"}')" '^409 ' "a second lan0: 409"
like "$(api POST /v1/networks '{"name": "nat"}')" '^422 .*invalid_name' "the name nat is taken by user-mode NAT"
like "$(vmgr create d --image tiny --nic lan9 2>&1)" 'no network "lan9" .*unknown_network' "an unknown network on a NIC: refused"
check "... and d is not created" sh -c "! '$VMGR_BIN' --state-dir '$STATE' info d"
like "$(vmgr network delete lan0 2>&1)" 'network lan0 is used by VM a' "deleting a network in use is refused"

check "start a" vmgr start a
check "start b" vmgr start b
check "start c" vmgr start c
check "all three boot" wait_until 90 sh -c "for v in a b c; do '$VMGR_BIN' --state-dir '$STATE' console \$v --log | grep -q GUEST-READY || exit 1; done"
printf 'ping -c 3 -W 2 10.10.0.3 >/dev/null && echo a-reaches-b-$((1+1))\n' | vmgr console a >/dev/null
check "a pings b over lan0" wait_until 20 console_has a a-reaches-b-2
# c joins lan0's subnet by hand: L2 isolation, not routing, must stop it.
printf 'ip addr add 10.10.0.99/24 dev eth0; ping -c 3 -W 1 10.10.0.2 >/dev/null && echo c-reaches-$((5*5)) || echo c-isolated-$((3+4))\n' |
    vmgr console c >/dev/null
check "c on lan1 cannot reach a on lan0" wait_until 20 console_has c c-isolated-7
ok $(vmgr console c --log | grep -q c-reaches-25; echo $((! $?))) "... and never did"
st=$(vmgr stats b --json)
ok $(( $(echo "$st" | jq '.nics[0].rx_packets') < 3 )) "b's NIC counted the frames it received ($(echo "$st" | jq -c .nics[0]))"
m=$(curl -s --unix-socket "$STATE/vmgrd.sock" http://x/metrics)
like "$m" 'vmgr_vm_nic_transmit_packets_total\{vm="a",nic="0",network="lan0"\} [1-9]' "/metrics has the NIC counters"

check "stop a" vmgr stop a
check "start a again" vmgr start a
is "$(vmgr info a --json | jq -r '.spec.nics[0].mac + " " + .spec.nics[0].ip')" "$mac_a 10.10.0.2" \
    "a keeps its MAC and address across stop/start"
check "a boots" wait_until 60 console_has a GUEST-READY
kill_daemon KILL
start_daemon
is "$(vmgr info a --json | jq -r '.spec.nics[0].mac')" "$mac_a" "and across a vmgrd restart"
printf 'ping -c 3 -W 2 10.10.0.2 >/dev/null && echo b-reaches-a-$((2+2))\n' | vmgr console b >/dev/null
check "the network works after vmgrd restarted" wait_until 20 console_has b b-reaches-a-4
for v in a b c; do vmgr stop $v >/dev/null; done
check "delete c" vmgr delete c
check "lan1 can go once unused" vmgr network delete lan1
is "$(vmgr network list --json | jq -r '[.[].name] | join(" ")')" lan0 "lan0 remains"
done_testing
