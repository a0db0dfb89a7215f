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
pkgs="libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu qemu-system-x86"
log() { echo "libvirt.sh: $*" >&2; }
installed() { dpkg-query -W -f '${db:Status-Abbrev}${Package}\n' | sed -n 's/^ii *//p' | sort; }
systemd() { [ -d /run/systemd/system ]; }
running() { if systemd; then systemctl is-active --quiet "$1"; else pidof "$1" >/dev/null; fi; }

started="" defined="" new=""
tmp=$(mktemp -d /tmp/vmgr-libvirt.XXXXXX)
cleanup() {
	rc=$?
	set +e
	trap - EXIT INT TERM HUP
	if [ -n "$defined" ]; then
		$virsh domstate "$name" 2>/dev/null | grep -qx 'shut off' ||
		    $virsh destroy "$name" >/dev/null
		$virsh undefine "$name" >/dev/null
	fi
	rm -rf "$tmp"
	for d in $started; do	# libvirtd first, then virtlogd
		log "stopping $d"
		if systemd; then systemctl stop "$d"; else
			pid=$(cat "/run/$d.pid") && kill "$pid" &&
			    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
		fi
	done
	log "packages installed (kept, not removed):${new:- none}"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
[ -x "$bench" ] || { log "$bench missing (make bench)"; exit 1; }

# 1. libvirt and QEMU from Debian (qemu-system-x86 is only a Recommends).
installed >"$tmp/before"
if [ -n "$(echo "$pkgs" | tr ' ' '\n' | sort | comm -23 - "$tmp/before")" ]; then
	log "installing $pkgs"
	export DEBIAN_FRONTEND=noninteractive
	inst="apt-get install -y -qq --no-install-recommends $pkgs"
	$inst >/dev/null || { apt-get update -qq && $inst >/dev/null; }
	new=$(installed | comm -13 "$tmp/before" - | tr '\n' ' ')
	new=" ${new% }"
fi

# 2. The daemons, unless running (no systemd: straight from here, with -d).
for d in virtlogd libvirtd; do
	running "$d" && continue
	log "starting $d"
	if systemd; then systemctl start "$d"; else "$d" -d; fi
	started="$d $started"
done
i=0
until $virsh version >/dev/null 2>&1; do
	[ $((i += 1)) -lt 300 ] || { log "libvirtd does not answer"; exit 1; }
	sleep 0.1
done

# 3. The domain. QEMU runs as libvirt-qemu, and libvirt chowns kernel and
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

# 4. The timings, labelled like vmgr's own.
log "timing $n iterations of domain $name"
"$bench" seq -n "$n" -o "$out" \
    "start=$virsh start $name" "pause=$virsh suspend $name" \
    "resume=$virsh resume $name" "list=$virsh list --all" \
    "info=$virsh domstats $name" "stop=$virsh destroy $name"
log "wrote $out"
