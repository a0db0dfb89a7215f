#!/bin/sh
# Isolated networks under load: a sends 200 MB to b over network hot as
# fast as the switch moves it, while c pings d over network calm; no ping
# is lost and none of hot's frames reach calm.  Then the counters add up:
# every frame a sent reached b or is counted as dropped (or spoofed), and
# the other way round; the switch's bytes are the guests' own (each
# guest's /sys counters); vmgrd's API answered all along.  SWITCH says
# what carries the networks: vmgrd's own switch (user, the default here)
# or the kernel's bridges in vmgrd's namespace (kernel; t0030 runs that).
. "$(dirname "$0")/lib.sh"
SWITCH=${SWITCH:-user}
if [ "$SWITCH" = kernel ] && [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP the kernel's bridges need root"
	_done=1; _n=0; trap - EXIT; rm -rf "$STATE"; exit 0
fi
start_daemon --switch "$SWITCH"
case $SWITCH in user) carrier=switch ;; *) carrier=kernel ;; esac
is "$(vmgr host --json | jq -r .switch.backend)" "$SWITCH" "vmgr host says what carries isolated networks"

check "network create hot" vmgr network create hot --subnet 10.91.0.0/24
check "network create calm" vmgr network create calm --subnet 10.92.0.0/24
for v in a b; do check "create $v on hot" vmgr create $v --image tiny --memory 128M --nic hot; done
for v in c d; do check "create $v on calm" vmgr create $v --image tiny --memory 128M --nic calm; done
for v in a b c d; do check "start $v" vmgr start $v; done
check "all four boot" wait_until 120 sh -c "for v in a b c d; do '$VMGR_BIN' --state-dir '$STATE' console \$v --log | grep -q GUEST-READY || exit 1; done"
ip() { vmgr info "$1" --json | jq -r '.spec.nics[0].ip'; }
ip_b=$(ip b) ip_d=$(ip d)
like "$(vmgr info a)" "nic 0: +hot .* \($carrier\)" "vmgr info says what carries a's NIC ($carrier)"

# ---- the counters, before and after
nic() { vmgr stats "$1" --json | jq -r ".nics[0].$2"; }
snap() {	# snap: every counter of hot's two NICs, on one line
	for v in a b; do
		for k in tx_packets rx_packets tx_bytes rx_bytes dropped_frames spoofed_frames; do
			printf '%s ' "$(nic $v $k)"
		done
	done
}
guest_bytes() {	# guest_bytes VM tx|rx: what the guest's eth0 counted
	asked=$(date +%s%N)	# a mark of this question's own
	printf 'echo %s-%s%s-$(cat /sys/class/net/eth0/statistics/%s_bytes)-end\n' "$1" "$2" $asked "$2" |
	    vmgr console "$1" >/dev/null
	wait_until 10 sh -c "'$VMGR_BIN' --state-dir '$STATE' console $1 --log | grep -q -- '$1-$2$asked-[0-9]*-end'"
	vmgr console "$1" --log | grep -o -- "$1-$2$asked-[0-9]*-end" | tail -1 | cut -d- -f3
}
# What each guest counted before the load: frames that reached b before
# its eth0 was up were delivered by the switch but not counted by b.
ga_tx0=$(guest_bytes a tx) gb_rx0=$(guest_bytes b rx)
set -- $(snap)
a_txb0=$3 b_rxb0=${10}

# ---- the load, and the other network's traffic meanwhile
MB=200
printf 'nc -l -p 5001 >/dev/null; echo b-got-it-$((40+2))\n' | vmgr console b >/dev/null
sleep 1
printf 'dd if=/dev/zero bs=64k count=%d 2>/dev/null | nc %s 5001; echo a-sent-$((6*7))\n' $((MB * 16)) "$ip_b" |
    vmgr console a >/dev/null
printf 'ping -c 40 -i 0.25 -W 2 %s | grep -q " 0%% packet loss" && echo c-d-clean-$((5*5)) || echo c-d-lost-$((3*3))\n' "$ip_d" |
    vmgr console c >/dev/null
# vmgr list, all along: it must always answer.
: >"$STATE/list.ms"
(end=$(( $(date +%s) + 10 ))
 while [ "$(date +%s)" -lt $end ]; do
	t=$(date +%s%N); vmgr list >/dev/null || echo FAIL; echo $(( ($(date +%s%N) - t) / 1000000 ))
 done >"$STATE/list.ms") &
lister=$!
check "a sent ${MB} MB to b" wait_until 180 console_has a a-sent-42
check "b received all of it" wait_until 30 console_has b b-got-it-42
check "c's pings to d, meanwhile: all answered" wait_until 60 console_has c 'c-d-clean-25\|c-d-lost-9'
ok "$(console_has c c-d-clean-25; echo $?)" "... none lost while hot was saturated"
wait $lister
is "$(grep -c FAIL "$STATE/list.ms")" 0 "vmgr list answered every time during the load"
diag "vmgr list during the load: $(sort -n "$STATE/list.ms" | awk '{a[NR] = $1} END {print NR " calls, p50 " a[int(NR / 2) + 1] " ms, max " a[NR] " ms"}')"

# The guests are quiet once the copy is done: take the counters when two
# snapshots agree, with the guests' own between them.
for try in 1 2 3 4 5; do
	sleep 1
	s1=$(snap)
	ga_tx=$(guest_bytes a tx) gb_rx=$(guest_bytes b rx)
	s2=$(snap)
	[ "$s1" = "$s2" ] && break
done
is "$s1" "$s2" "hot is quiet: the counters hold still"
set -- $s1
a_txp=$1 a_rxp=$2 a_txb=$3 a_rxb=$4 a_drop=$5 a_spoof=$6
b_txp=$7 b_rxp=$8 b_txb=$9; shift 9
b_rxb=$1 b_drop=$2 b_spoof=$3
diag "a: tx $a_txp frames $a_txb bytes; b: rx $b_rxp frames $b_rxb bytes, dropped $b_drop; the guests counted a tx $ga_tx, b rx $gb_rx bytes"
ok "$([ "$a_txb" -ge $((MB * 1048576)) ]; echo $?)" "a's NIC sent at least the ${MB} MB ($a_txb bytes)"
is "$a_txp" "$((b_rxp + b_drop + a_spoof))" "every frame a sent reached b or is counted (dropped $b_drop, spoofed $a_spoof)"
is "$b_txp" "$((a_rxp + a_drop + b_spoof))" "every frame b sent reached a or is counted (dropped $a_drop, spoofed $b_spoof)"
ok "$([ "$b_rxb" -le "$a_txb" ] && [ $((a_txb - b_rxb)) -le $((b_drop * 65536)) ]; echo $?)" \
    "b received a's bytes, within the frames dropped"
# The guests' counters and the switch's are read a moment apart: a few
# control frames (ARP, IPv6 neighbours) may fall between the readings.
near() { d=$(( $1 - $2 )); [ ${d#-} -le 4096 ]; }
da=$((ga_tx - ga_tx0)) sa=$((a_txb - a_txb0)) db=$((gb_rx - gb_rx0)) sb=$((b_rxb - b_rxb0))
diag "meanwhile: a's guest sent $da bytes, the switch took $sa; b's guest received $db, the switch gave $sb"
ok "$(near $da $sa; echo $?)" "the switch counted the bytes a's guest sent meanwhile (within a few control frames)"
ok "$(near $db $sb; echo $?)" "the switch delivered the bytes b's guest received meanwhile (within a few control frames)"
c_rx=$(nic c rx_bytes) d_rx=$(nic d rx_bytes)
ok "$([ $((c_rx + d_rx)) -lt 1048576 ]; echo $?)" "none of hot's frames reached calm ($c_rx + $d_rx bytes there)"
like "$(curl -s --unix-socket "$STATE/vmgrd.sock" http://vmgrd/metrics)" \
    "vmgr_vm_nic_dropped_frames_total\{vm=\"b\",nic=\"0\",network=\"hot\"\} $b_drop" \
    "/metrics has b's dropped frames"
if [ "$SWITCH" = user ]; then
	frames=$(curl -s --unix-socket "$STATE/vmgrd.sock" http://vmgrd/metrics | awk '/^vmgr_switch_frames_total/ {print $2}')
	wakeups=$(curl -s --unix-socket "$STATE/vmgrd.sock" http://vmgrd/metrics | awk '/^vmgr_switch_wakeups_total/ {print $2}')
	diag "the switch: $frames frames in $wakeups wakeups"
fi

for v in a b c d; do vmgr stop $v >/dev/null; done
if [ "$SWITCH" = user ]; then
	check "stopped VMs leave no NIC socket" sh -c "! ls '$STATE'/vm/*/nic*.sock 2>/dev/null"
	is "$(curl -s --unix-socket "$STATE/vmgrd.sock" http://vmgrd/metrics | awk '/^vmgr_switch_ports/ {print $2}')" 0 \
	    "the switch has no port left"
else
	is "$(nsenter --net="$STATE/net/ns" ip -o link | grep -c ' vmgrt')" 0 "stopped VMs leave no tap in vmgrd's namespace"
	is "$(nsenter --net="$STATE/net/ns" nft list table bridge vmgr | grep -c 'chain nic_')" 0 "... nor a NIC's filter chain"
fi
done_testing
