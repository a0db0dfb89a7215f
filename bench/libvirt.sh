#!/bin/sh
# bench/libvirt.sh ITERATIONS OUT.json: the libvirt column of vmgr's benchmark. Times virsh start,
# suspend, resume, list, domstats, destroy of a TCG twin of vmgr's tiny guest with build/vmgrbench.
# Installs libvirt if missing (kept, named on stderr), starts the daemons not running, undoes the rest.
set -eu

[ $# -eq 2 ] || { echo "usage: $0 ITERATIONS OUT.json" >&2; exit 2; }
n=$1 out=$2
top=$(cd "$(dirname "$0")/.." && pwd)
bench=$top/build/vmgrbench
img=$top/build/images/tiny
name=vmgr-bench-$$
virsh="virsh -q -c qemu:///system"
log() { echo "libvirt.sh: $*" >&2; }
installed() { dpkg-query -W -f '${db:Status-Abbrev}${Package}=${Version}\n' | sed -n 's/^ii *//p' | sort; }
systemd() { [ -d /run/systemd/system ]; }
running() { if systemd; then systemctl is-active --quiet "$1"; else pidof "$1" >/dev/null; fi; }
# qemu-system-x86 is only a Recommends; tini reaps QEMU at once when no systemd does.
pkgs="libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu qemu-system-x86"
systemd || pkgs="$pkgs tini"

started="" defined="" new="" kvm=""
tmp=$(mktemp -d /tmp/vmgr-libvirt.XXXXXX)
cleanup() {
	rc=$?
	set +e
	trap - EXIT INT TERM HUP
	if [ -n "$defined" ]; then
		$virsh destroy "$name" >/dev/null 2>&1	# if running
		$virsh undefine "$name" >/dev/null
		rm -f "/var/log/libvirt/qemu/$name.log"
	fi
	rm -rf "$tmp"
	for d in $started; do	# libvirtd first, then virtlogd
		log "stopping $d"
		if systemd; then systemctl stop "$d"; else
			pid=$(cat "/run/$d.pid") && kill "$pid" &&
			    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
		fi
	done
	[ -z "$kvm" ] || { chmod "${kvm%:*}" /dev/kvm; chgrp "${kvm#*:}" /dev/kvm; }
	log "packages installed or upgraded (kept):${new:- none}"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
[ -x "$bench" ] || { log "$bench missing (make bench)"; exit 1; }

# 1. libvirt and QEMU from Debian.
installed >"$tmp/before"
missing=$(for p in $pkgs; do grep -q "^$p=" "$tmp/before" || echo "$p"; done)
if [ -n "$missing" ]; then
	log "installing" $missing
	export DEBIAN_FRONTEND=noninteractive
	inst="apt-get install -y -qq --no-install-recommends $pkgs"
	$inst >/dev/null || { apt-get update -qq && $inst >/dev/null; }
	new=$(installed | comm -13 "$tmp/before" - | sed 's/=.*//' | tr '\n' ' ')
	new=" ${new% }"
fi

# 2. A /dev/kvm that QEMU's user may not open (no udev) makes libvirt re-probe
# QEMU on every start: open it to group kvm, as udev does, until the end.
if [ -c /dev/kvm ] && ! runuser -u libvirt-qemu -- test -w /dev/kvm; then
	log "/dev/kvm: group kvm, mode 660 until the end (as udev sets it)"
	kvm=$(stat -c %a:%g /dev/kvm)
	chgrp kvm /dev/kvm && chmod 660 /dev/kvm
fi

# 3. The daemons, unless running (no systemd: started from here, libvirtd
# under tini, so that its QEMUs, daemonized, are reaped when they exit).
for d in virtlogd libvirtd; do
	running "$d" && continue
	log "starting $d"
	if systemd; then systemctl start "$d"
	elif [ "$d" = virtlogd ]; then virtlogd -d
	else setsid tini -s -- libvirtd </dev/null >/dev/null 2>>/var/log/libvirt/libvirtd.log &
	fi
	started="$d $started"
done
i=0
until $virsh version >/dev/null 2>&1; do
	[ $((i += 1)) -lt 300 ] || { log "libvirtd does not answer"; exit 1; }
	sleep 0.1
done

# 4. The domain. QEMU runs as libvirt-qemu, and libvirt chowns kernel and
# initrd while it runs: give it copies in a directory anyone can enter.
chmod 755 "$tmp"
cp "$img/vmlinuz" "$img/initrd.img" "$tmp/"
chmod 644 "$tmp/vmlinuz" "$tmp/initrd.img"
cmdline=$(tr -d '\n' <"$img/cmdline" |
    sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g; s/[\\|&]/\\&/g')
sed -e "s|@NAME@|$name|; s|@KERNEL@|$tmp/vmlinuz|; s|@INITRD@|$tmp/initrd.img|" \
    -e "s|@CMDLINE@|$cmdline|" "$top/bench/libvirt-domain.xml.in" >"$tmp/domain.xml"
$virsh define "$tmp/domain.xml" >/dev/null
defined=1

# 5. The timings, labelled like vmgr's own.
log "timing $n iterations of domain $name"
"$bench" seq -n "$n" -o "$tmp/life.json" \
    "start=$virsh start $name" "list=$virsh list --all" \
    "info=$virsh domstats $name" "stop=$virsh destroy $name"
# Pause and resume a guest that has booted, as in bench/run.sh.
$virsh start "$name" >/dev/null
sleep "${VMGR_BENCH_BOOT_S:-6}"
"$bench" seq -n "$n" -o "$tmp/pr.json" \
    "pause=$virsh suspend $name" "resume=$virsh resume $name"
$virsh destroy "$name" >/dev/null
jq -s '{ops: (.[0].ops + .[1].ops)}' "$tmp/life.json" "$tmp/pr.json" >"$out"
log "wrote $out"
