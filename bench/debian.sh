#!/bin/sh
# bench/debian.sh OUT.json [ROUNDS]: a real OS's boot under vmgr against
# the floor, ROUNDS times (default 2; medians), alternating which goes first.
# The Debian 12 image of `vmgr image build debian-12` (cached in
# build/image-cache), booted with SeaBIOS and with OVMF: the time from
# `vmgr start` to the login prompt on the serial console and to SSH
# answering with the key given at create.  The floor is plain QEMU on the
# same command line: the one vmgrd ran, read from /proc, with each file
# vmgrd handed over as a descriptor (the cloud-init seed, the UEFI
# variables, the console log) given as a copy of that file instead, and
# a fresh clone of the image, so the guest boots the same first boot.
# Also: the time and the size of `vmgr create --image` (a clone and a
# seed; nothing of the image is copied).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
B=$top/build
OUT=$1
ROUNDS=${2:-2}
STATE=$(mktemp -d /tmp/vmgr-bench-deb.XXXXXX)
V="$B/vmgr --state-dir $STATE"
VMGR_IMAGE_CACHE=$B/image-cache "$B/vmgrd" --state-dir "$STATE" --foreground \
    >"$STATE/vmgrd.out" 2>&1 &
D=$!
FLOOR=
trap 'kill $D 2>/dev/null; wait $D 2>/dev/null; [ -z "$FLOOR" ] || kill -9 $FLOOR 2>/dev/null; rm -rf "$STATE"' EXIT
i=0; until $V host >/dev/null 2>&1 || [ $i -gt 600 ]; do sleep 0.05; i=$((i + 1)); done

ms() { date +%s%N | cut -c1-13; }
ssh-keygen -q -t ed25519 -N '' -f "$STATE/key"
$V image build debian-12 >/dev/null
PORT=$((30000 + $$ % 2000))
sshok() {	# sshok PORT USER
	timeout 4 ssh -p "$1" -o BatchMode=yes -o StrictHostKeyChecking=no \
	    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=2 \
	    -i "$STATE/key" "$2@127.0.0.1" true </dev/null >/dev/null 2>&1
}
# boot LOG PORT T0: "login_ms ssh_ms" after T0, polling both.
boot() {
	_l=0 _s=0
	while [ "$(( $(ms) - $3 ))" -lt 400000 ]; do
		[ "$_l" != 0 ] || ! grep -a -q ' login:' "$1" 2>/dev/null || _l=$(( $(ms) - $3 ))
		[ "$_s" != 0 ] || ! sshok "$2" vmgr || _s=$(( $(ms) - $3 ))
		[ "$_l" = 0 ] || [ "$_s" = 0 ] || break
		sleep 0.2
	done
	echo "$_l $_s"
}

# ---- create --image: time and size, 5 times
c_ms=
for k in 1 2 3 4 5; do
	t0=$(ms)
	$V create "c$k" --image debian-12 --disk-size 10G --ssh-key "$STATE/key.pub" >/dev/null
	c_ms="$c_ms $(( $(ms) - t0 ))"
	c_bytes=$($V volume show "c$k-root" --json | jq .allocated_bytes)
	$V delete "c$k" >/dev/null
done
c_med=$(printf '%s\n' $c_ms | sort -n | sed -n 3p)

# vmgr_boot FW: a new VM of the image, booted; sets v_login, v_ssh.  The
# first one of each firmware leaves its command line and seed in floor-FW/.
vmgr_boot() {
	$V create "b-$1" --image debian-12 --firmware "$1" --vcpus 2 --memory 1G \
	    --ssh-key "$STATE/key.pub" --forward "tcp:$PORT:22" >/dev/null
	log=$($V info "b-$1" --json | jq -r .runtime.console_log)
	t0=$(ms)
	$V start "b-$1" >/dev/null
	set -- "$1" $(boot "$log" "$PORT" "$t0")
	v_login=$2 v_ssh=$3
	F=$STATE/floor-$1
	if [ ! -f "$F/argv" ]; then
		# The same command line, files instead of descriptors.
		pid=$($V info "b-$1" --json | jq .pid)
		mkdir -p "$F"
		tr '\0' '\n' <"/proc/$pid/cmdline" >"$F/argv"
		# The seed, from QEMU's own descriptor of vmgrd's memfd.
		for fd in /proc/$pid/fd/*; do
			case $(readlink "$fd") in
			*memfd:cidata*) cp "$fd" "$F/set3" ;;
			esac
		done
		[ -s "$F/set3" ] || { echo "debian.sh: no seed found in QEMU $pid" >&2; exit 1; }
		awk -v F="$F" '
		    /^-add-fd$/ { skip = 1; next }
		    skip { skip = 0; next }
		    /^-chardev$/ { ch = 1; print; next }
		    ch && /^socket,id=mon/ { print "socket,id=mon,path=" F "/qmp.sock,server=on,wait=off"; ch = 0; next }
		    ch && /^socket,id=ser0/ { print "file,id=ser0,path=" F "/console.log"; ch = 0; next }
		    ch && /^socket,id=qgachr/ { print "socket,id=qgachr,path=" F "/qga.sock,server=on,wait=off"; ch = 0; next }
		    { ch = 0 }
		    /^-S$/ { next }
		    /file\.filename=.*-root\.qcow2/ { sub(/file\.filename=.*/, "file.filename=" F "/root.qcow2") }
		    /\/dev\/fdset\/2/ { sub(/\/dev\/fdset\/2/, F "/set2") }
		    /\/dev\/fdset\/3/ { sub(/\/dev\/fdset\/3/, F "/set3") }
		    { print }' "$F/argv" >"$F/argv.floor"
	fi
	$V stop "b-$1" >/dev/null
	$V delete "b-$1" >/dev/null
}

# floor_boot FW: plain QEMU on that command line, a fresh clone as large
# as the VM's (the same growpart) and a fresh variable store (OVMF's
# template, as vmgrd copies it); sets f_login, f_ssh.
floor_boot() {
	F=$STATE/floor-$1
	[ "$1" != uefi ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$F/set2"
	rm -f "$F/root.qcow2"
	qemu-img create -q -f qcow2 -b "$STATE/volumes/debian-12.qcow2" -F qcow2 "$F/root.qcow2"
	: >"$F/console.log"
	t0=$(ms)
	( set -f; IFS='
'; exec $(cat "$F/argv.floor") ) >"$F/qemu.log" 2>&1 &
	FLOOR=$!
	set -- "$1" $(boot "$F/console.log" "$PORT" "$t0")
	f_login=$2 f_ssh=$3
	kill -9 $FLOOR 2>/dev/null; wait $FLOOR 2>/dev/null || true
	FLOOR=
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# Rounds alternate which boots first, so neither always meets a cold cache.
res=
for fw in bios uefi; do
	vl= vs= fl= fs=
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then
			vmgr_boot "$fw"; floor_boot "$fw"
		else
			floor_boot "$fw"; vmgr_boot "$fw"
		fi
		vl="$vl $v_login" vs="$vs $v_ssh" fl="$fl $f_login" fs="$fs $f_ssh"
	done
	res="$res{\"firmware\":\"$fw\",\"rounds\":$ROUNDS,\"vmgr_login_ms\":$(median $vl),\"vmgr_ssh_ms\":$(median $vs),\"floor_login_ms\":$(median $fl),\"floor_ssh_ms\":$(median $fs),\"vmgr_ssh_samples\":[$(echo $vs | tr ' ' ,)],\"floor_ssh_samples\":[$(echo $fs | tr ' ' ,)]},"
done

jq -n --argjson boots "[${res%,}]" --argjson cms "$c_med" --argjson cb "$c_bytes" \
    '{boots: $boots, create_image_ms: $cms, create_image_bytes: $cb}' >"$OUT"
