#!/bin/sh
# The isolated switch against a hostile guest.  Port security: a NIC may
# only send from its own MAC, so a guest that takes a neighbour's MAC gets
# none of its traffic (its frames are dropped and counted).  A NIC with
# the filter off (mac-filter=off) may use any address; the switch learns
# them, and forgets every one of them when its VM goes, so frames to them
# never reach a VM that is gone (an ASan build of vmgrd must stay clean).
# SWITCH says which switch: vmgrd's own (user, the default here) or the
# kernel's bridges in vmgrd's namespace (kernel; t0029 runs that).
. "$(dirname "$0")/lib.sh"
SWITCH=${SWITCH:-user}
if [ "$SWITCH" = kernel ] && [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP the kernel's bridges need root"
	_done=1; _n=0; trap - EXIT; rm -rf "$STATE"; exit 0
fi
start_daemon --switch "$SWITCH"

check "create lan0" vmgr network create lan0 --subnet 10.20.0.0/24
for v in a b c; do check "create $v" vmgr create $v --image tiny --nic lan0; done
check "create d with its MAC filter off" vmgr create d --image tiny --nic lan0,mac-filter=off
is "$(vmgr info d --json | jq -c '.spec.nics[0].mac_filter')" false "d's spec says so"
is "$(vmgr info a --json | jq -c '.spec.nics[0].mac_filter')" null "a's filter is on (the default)"
out=$(vmgr create e --image tiny --nic lan0,mac-filter=maybe 2>&1); rc=$?
like "$out" 'NETWORK,mac-filter=on[|]off, not "lan0,mac-filter=maybe"' "a bad --nic option is refused, saying why"
is "$rc" 2 "... as a usage error"
for v in a b c d; do check "start $v" vmgr start $v; done
check "all four boot" wait_until 120 sh -c "for v in a b c d; do '$VMGR_BIN' --state-dir '$STATE' console \$v --log | grep -q GUEST-READY || exit 1; done"
mac() { vmgr info "$1" --json | jq -r '.spec.nics[0].mac'; }
ipof() { vmgr info "$1" --json | jq -r '.spec.nics[0].ip'; }
stat_of() { vmgr stats "$1" --json | jq ".nics[0].$2"; }
mac_b=$(mac b); mac_a=$(mac a); ip_b=$(ipof b); ip_a=$(ipof a)

# a takes b's MAC and keeps sending from it while c talks to b.
printf 'ip link set eth0 down; ip link set eth0 address %s; ip link set eth0 up; (while true; do arping -c 1 -w 1 -I eth0 10.20.0.250 >/dev/null 2>&1; done) &\n' "$mac_b" |
    vmgr console a >/dev/null
check "a's spoofed frames are dropped and counted" wait_until 30 sh -c \
    "[ \"\$('$VMGR_BIN' --state-dir '$STATE' stats a --json | jq '.nics[0].spoofed_frames')\" -gt 3 ]"
rx_a0=$(stat_of a rx_packets)
printf 'ping -c 20 -i 0.2 -W 2 %s | grep -q " 0%% packet loss" && echo c-b-all-$((4*5)) || echo c-b-lost-$((3*3))\n' "$ip_b" |
    vmgr console c >/dev/null
check "c reaches b without losing a ping while a claims b's MAC" wait_until 60 console_has c 'c-b-all-20\|c-b-lost-9'
ok $(vmgr console c --log | grep -q c-b-all-20; echo $?) "... none lost"
rx_a1=$(stat_of a rx_packets)
ok $(( rx_a1 - rx_a0 >= 20 )) "a received none of c's unicast frames to b ($((rx_a1 - rx_a0)) frames, broadcasts only)"
is "$(stat_of b spoofed_frames)" 0 "b sent nothing the filter dropped"
m=$(curl -s --unix-socket "$STATE/vmgrd.sock" http://x/metrics)
like "$m" 'vmgr_vm_nic_spoofed_frames_total\{vm="a",nic="0",network="lan0"\} [1-9]' "/metrics counts them too"

# a gives b's address back.
printf 'kill %%1; ip link set eth0 down; ip link set eth0 address %s; ip link set eth0 up; echo a-is-a-again\n' "$mac_a" |
    vmgr console a >/dev/null
check "a takes its own MAC again" wait_until 20 console_has a a-is-a-again

# d, unfiltered, sends from five addresses of its own, then one of a's.
i=0
for x in 10 11 12 13 14; do
	printf 'ip link set eth0 down; ip link set eth0 address 52:54:00:ee:ee:%s; ip link set eth0 up; arping -c 2 -w 2 -I eth0 %s >/dev/null 2>&1; echo d-sent-from-%s\n' "$x" "$ip_a" "$x" |
	    vmgr console d >/dev/null
	i=$((i + 1))
	wait_until 20 console_has d "d-sent-from-$x"
done
check "d sent from five MACs" console_has d d-sent-from-14
ok $(stat_of d spoofed_frames) "d's frames were not dropped ($(stat_of d spoofed_frames) spoofed)"
# c sends to d's current address: the switch learned it.
ip_d=$(ipof d)
printf 'ip neigh replace %s lladdr 52:54:00:ee:ee:14 dev eth0 nud permanent; ping -c 3 -W 2 %s >/dev/null && echo c-d-ok-$((6+6))\n' "$ip_d" "$ip_d" |
    vmgr console c >/dev/null
check "frames to an address d took reach d" wait_until 30 console_has c c-d-ok-12
printf 'ip link set eth0 down; ip link set eth0 address %s; ip link set eth0 up; arping -c 2 -w 2 -I eth0 10.20.0.250 >/dev/null 2>&1; echo d-took-a\n' "$mac_a" |
    vmgr console d >/dev/null
wait_until 20 console_has d d-took-a
printf 'ping -c 5 -W 2 %s | grep -q " 0%% packet loss" && echo b-a-ok-$((7+7))\n' "$ip_a" | vmgr console b >/dev/null
check "a filtered NIC's own MAC stays its own: b still reaches a" wait_until 40 console_has b b-a-ok-14

# d goes; frames to the addresses it used must find nobody.
check "stop d" vmgr stop d
check "delete d" vmgr delete d
printf 'for x in 10 11 12 13 14; do ip neigh replace 10.20.0.2$x lladdr 52:54:00:ee:ee:$x dev eth0 nud permanent; ping -c 2 -W 1 10.20.0.2$x >/dev/null; done; echo c-sent-to-ghosts\n' |
    vmgr console c >/dev/null
check "c sent frames to every address d used" wait_until 40 console_has c c-sent-to-ghosts
check "vmgrd is alive and well" vmgr list
printf 'ping -c 3 -W 2 %s >/dev/null && echo c-b-again-$((8+8))\n' "$ip_b" | vmgr console c >/dev/null
check "and switches on" wait_until 30 console_has c c-b-again-16
for v in a b c; do vmgr stop $v >/dev/null; done
done_testing
