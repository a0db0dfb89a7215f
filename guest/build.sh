#!/bin/bash
# Build vmgr's tiny Linux guest: OUTDIR/{vmlinuz,initrd.img,cmdline}.
#
#   guest/build.sh OUTDIR
#
# Uses Debian's own kernel (the package linux-image-amd64 depends on) and
# busybox-static, fetched with `apt-get download` and unpacked with dpkg-deb,
# so it needs no root and changes nothing on the host. Host tools: apt, dpkg,
# gzip, coreutils, findutils, grep, sed (all in a Debian base system); xz-utils
# or zstd only if a future kernel ships compressed modules. The initramfs cpio is
# written by the downloaded busybox itself, so the `cpio` package is not needed.
#
# Downloads and unpacked trees are cached in build/guest-work; every step is
# skipped when its output is newer than its inputs.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(dirname "$SRC")/build/guest-work
DEBS=$WORK/debs
mkdir -p "$DEBS"

CMDLINE="console=ttyS0 quiet"

# Modules the guest loads; their dependencies are added automatically.
# button+evdev: ACPI power button as an input device, read by busybox acpid.
# pvpanic_*: report guest panics to the host (QEMU's pvpanic device).
MODULES="virtio_pci virtio_net virtio_blk virtio_balloon virtio_console
	virtio_rng button evdev pvpanic_mmio pvpanic_pci"

log() { echo "guest: $*" >&2; }
die() { echo "guest: error: $*" >&2; exit 1; }

# stale TARGET INPUT...: true if TARGET is missing or older than an input.
stale() {
	local t=$1 f; shift
	[[ -e $t ]] || return 0
	for f; do [[ $f -nt $t ]] && return 0; done
	return 1
}

# Newest cached .deb of package $1, if any.
cached_deb() {
	compgen -G "$DEBS/${1}_*.deb" | sort -V | tail -n 1 || true
}

# Ensure a .deb of package $1 is in the cache; print its path.
fetch() {
	local deb sandbox=()
	deb=$(cached_deb "$1")
	if [[ -z $deb ]]; then
		log "downloading $1"
		# As root, apt would download as user _apt, who may not be able to write here.
		[[ $EUID -ne 0 ]] || sandbox=(-o APT::Sandbox::User=root)
		rm -rf "$DEBS/.dl" && mkdir "$DEBS/.dl"
		(cd "$DEBS/.dl" && apt-get download -q "${sandbox[@]}" "$1" >&2) ||
			die "apt-get download $1 failed (try: apt-get update)"
		mv "$DEBS"/.dl/*.deb "$DEBS/" && rmdir "$DEBS/.dl"
		deb=$(cached_deb "$1")
	fi
	echo "$deb"
}

# Name of the versioned kernel package (e.g. linux-image-6.1.0-56-amd64).
# apt-cache is slow (~0.5 s), so the answer is cached until apt's lists change.
resolve_kernel_pkg() {
	local f=$WORK/kernel-pkg lists=/var/lib/apt/lists name
	if stale "$f" "$lists"; then
		name=$(apt-cache depends linux-image-amd64 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[^ ]*\).*/\1/p' | head -n 1)
		if [[ -z $name ]]; then
			# Offline with no apt lists: reuse a kernel downloaded earlier.
			name=$(basename "$(cached_deb 'linux-image-*-amd64')" 2>/dev/null | cut -d_ -f1)
			[[ -n $name ]] || die "apt-cache knows no linux-image-amd64; run 'apt-get update' (as root) first"
		fi
		echo "$name" >"$f"
	fi
	cat "$f"
}

# extract DEB DIR: unpack DEB into DIR unless DIR.stamp says it already is.
# (By name, not mtime: apt may give a download the server's date.)
extract() {
	local name
	name=$(basename "$1")
	if [[ "$(cat "$2.stamp" 2>/dev/null)" != "$name" ]]; then
		log "unpacking $name"
		rm -rf "$2" "$2.stamp"
		dpkg-deb -x "$1" "$2"
		echo "$name" >"$2.stamp"
	fi
}

KPKG=$(resolve_kernel_pkg)
KDEB=$(fetch "$KPKG")
BDEB=$(fetch busybox-static)
extract "$KDEB" "$WORK/kernel"
extract "$BDEB" "$WORK/busybox"
BUSYBOX=$WORK/busybox/bin/busybox

if stale "$OUT/vmlinuz" "$WORK/kernel.stamp"; then
	cp "$WORK"/kernel/boot/vmlinuz-* "$OUT/vmlinuz.tmp"
	mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
fi

if [[ "$(cat "$OUT/cmdline" 2>/dev/null)" != "$CMDLINE" ]]; then
	echo "$CMDLINE" >"$OUT/cmdline"
fi

stale "$OUT/initrd.img" "$WORK/kernel.stamp" "$WORK/busybox.stamp" \
	"$SRC/build.sh" "$SRC/init" "$SRC/inittab" "$SRC/udhcpc.script" || exit 0

log "building initrd.img"
ROOT=$WORK/root
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc/acpi/PWRF,lib/modules,etc/udhcpc}
cp "$BUSYBOX" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"  # for the #! of /init; init installs the other applets
install -m 755 "$SRC/init" "$ROOT/init"
install -m 644 "$SRC/inittab" "$ROOT/etc/inittab"
install -m 755 "$SRC/udhcpc.script" "$ROOT/etc/udhcpc/default.script"
printf '#!/bin/sh\nexec poweroff\n' >"$ROOT/etc/acpi/PWRF/00000080"
chmod 755 "$ROOT/etc/acpi/PWRF/00000080"

# Kernel modules: find each by name (modules.dep is made by depmod at install
# time, so it is not in the package), follow the depends= field of .modinfo,
# and write them flat into /lib/modules with a list in load order.
KMOD=$(echo "$WORK"/kernel/lib/modules/*)
declare -A path=() added=()
while read -r p; do
	n=${p##*/}; n=${n%%.ko*}; path[${n//-/_}]=$KMOD/$p
done <"$KMOD/modules.order"
add_module() {
	local n=${1//-/_} f d ko
	[[ -z ${added[$n]:-} ]] || return 0
	added[$n]=1
	f=${path[$n]:-}
	if [[ -z $f ]]; then
		grep -q "/${n//_/[-_]}\.ko" "$KMOD/modules.builtin" || log "warning: no module $n"
		return 0
	fi
	ko=$ROOT/lib/modules/$n.ko
	# Store modules uncompressed (Debian 12's are; later kernels use .ko.xz),
	# so the guest's insmod needs no decompressor.
	case $f in
	*.ko.xz) xz -dc "$f" ;;
	*.ko.zst) zstd -qdc "$f" ;;
	*.ko.gz) gzip -dc "$f" ;;
	*) cat "$f" ;;
	esac >"$ko"
	d=$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | tr ',' ' ')
	for d in $d; do add_module "$d"; done
	echo "$n.ko" >>"$ROOT/lib/modules/load-order"
}
: >"$ROOT/lib/modules/load-order"
for m in $MODULES; do add_module "$m"; done

# newc cpio, owned by root, gzip'ed. (2>/dev/null: cpio reports "N blocks".)
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) |
	gzip -9n >"$OUT/initrd.img.tmp"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
log "$(du -h "$OUT/initrd.img" | cut -f1) initrd.img, kernel $(basename "$KMOD")"
