#!/bin/sh
# guest/debian-12.sh OUT.qcow2 [SIZE] - build a Debian 12 cloud image from
# the Debian archive alone, the way vmgr boots it: a GPT disk with a BIOS
# boot partition (GRUB's core for SeaBIOS), an EFI system partition (shim
# and Debian's signed GRUB for OVMF, Secure Boot too) and an ext4 root with
# systemd, dbus, cloud-init (NoCloud), qemu-guest-agent, openssh-server,
# ifupdown with DHCP and Debian's cloud kernel.
#
# No loop device and no mount: the root file system is made from a
# directory (mkfs.ext4 -d), the ESP with mtools, and GRUB's boot sector and
# core are written into the image file at their offsets, as grub-install
# would write them to a disk.  Root is needed only by mmdebstrap's root mode;
# as a user it runs in unshare mode (subuids needed).
#
# Progress goes to stdout as "step N/7: ...".  OUT appears only when whole.
set -eu

out=${1:?usage: debian-12.sh OUT.qcow2 [SIZE]}
size=${2:-2G}
suite=bookworm
here=$(cd "$(dirname "$0")" && pwd)
packages="systemd-sysv,dbus,udev,cloud-init,cloud-guest-utils,gdisk,
qemu-guest-agent,openssh-server,ifupdown,isc-dhcp-client,netbase,iproute2,
iputils-ping,sudo,linux-image-cloud-amd64,initramfs-tools,efibootmgr,
ca-certificates,less,procps,iperf3"
packages=$(echo "$packages" | tr -d ' \n')

step() { echo "step $1/7: $2"; }
die() { echo "debian-12.sh: $*" >&2; exit 1; }
le64() { perl -e 'print pack("Q<", $ARGV[0])' "$1"; }

for t in mmdebstrap sfdisk mkfs.ext4 mkfs.vfat mcopy grub-mkimage qemu-img \
    apt-get dpkg-deb; do
	command -v "$t" >/dev/null || die "$t is missing (scripts/deps.sh installs it)"
done
[ -d /usr/lib/grub/i386-pc ] || die "/usr/lib/grub/i386-pc is missing (grub-pc-bin)"

work=$(mktemp -d "${out}.build.XXXXXX")
trap '[ -n "${VMGR_KEEP_BUILD:-}" ] || rm -rf "$work"' EXIT INT TERM
root=$work/root
uuid=$(cat /proc/sys/kernel/random/uuid)

# ---------------------------------------------------------------------------
step 1 "the root file system from the Debian archive (mmdebstrap, $suite)"
mkdir "$root"
mode=root
[ "$(id -u)" -eq 0 ] || mode=unshare
# The host's own sources (it reaches the same archive); the suite's default
# otherwise.
mirror=
if [ -r /etc/apt/sources.list.d/debian.sources ] &&
    grep -q '^URIs:' /etc/apt/sources.list.d/debian.sources; then
	mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources |
	    head -1)
fi
mmdebstrap --mode=$mode --variant=apt --include="$packages" \
    --components=main \
    --customize-hook="$here/debian-12-customize.sh \"\$1\" $uuid" \
    "$suite" "$root" ${mirror:+"deb $mirror $suite main"} \
    ${mirror:+"deb $mirror $suite-updates main"} >"$work/mmdebstrap.log" 2>&1 || {
	grep -v "^I:" "$work/mmdebstrap.log" | tail -40 >&2
	die "mmdebstrap failed"
}

# ---------------------------------------------------------------------------
step 2 "the boot loaders (shim, signed GRUB, GRUB's BIOS core)"
mkdir "$work/deb"
( cd "$work/deb" && apt-get download -q -o APT::Sandbox::User=root shim-signed grub-efi-amd64-signed \
    >/dev/null ) || die "apt-get download shim-signed grub-efi-amd64-signed failed"
for d in "$work"/deb/*.deb; do dpkg-deb -x "$d" "$work/deb/x"; done
shim=$work/deb/x/usr/lib/shim/shimx64.efi.signed
mm=$work/deb/x/usr/lib/shim/mmx64.efi.signed
grubefi=$work/deb/x/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
[ -f "$shim" ] && [ -f "$grubefi" ] || die "shim or signed GRUB not found in the packages"

# BIOS: a core image holding every module it needs, finding the root file
# system by UUID and reading /boot/grub/grub.cfg there.
cat >"$work/early.cfg" <<EOF
search.fs_uuid $uuid root
set prefix=(\$root)/boot/grub
EOF
grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/early.cfg" \
    -p /boot/grub biosdisk part_gpt ext2 search search_fs_uuid normal linux \
    configfile echo test gzio serial terminal
# UEFI: the signed GRUB reads grub.cfg beside it on the ESP (/EFI/debian).
cat >"$work/esp.cfg" <<EOF
search.fs_uuid $uuid root
set prefix=(\$root)/boot/grub
configfile \$prefix/grub.cfg
EOF

# ---------------------------------------------------------------------------
step 3 "the partition table ($size, GPT: BIOS boot, ESP, root)"
disk=$work/disk.raw
truncate -s "$size" "$disk"
bytes=$(stat -c %s "$disk")
sectors=$((bytes / 512))
bios_start=2048 bios_len=2048		# 1 MiB
esp_start=4096 esp_len=131072		# 64 MiB
root_start=$((esp_start + esp_len))
root_len=$((sectors - root_start - 34))	# the backup GPT at the end
root_len=$((root_len / 8 * 8))
sfdisk --quiet "$disk" <<EOF >/dev/null
label: gpt
first-lba: 2048
start=$bios_start, size=$bios_len, type=21686148-6449-6E6F-744E-656564454649, name=bios
start=$esp_start, size=$esp_len, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=$root_start, size=$root_len, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
EOF

# ---------------------------------------------------------------------------
step 4 "the root file system (ext4 from the directory, no mount)"
mkfs.ext4 -q -F -L root -U "$uuid" -d "$root" \
    -E offset=$((root_start * 512)) "$disk" $((root_len / 8))k >/dev/null 2>&1 ||
	mkfs.ext4 -F -L root -U "$uuid" -d "$root" \
	    -E offset=$((root_start * 512)) "$disk" $((root_len / 8))k

# ---------------------------------------------------------------------------
step 5 "the EFI system partition (FAT, mtools)"
mkfs.vfat -F 16 -n ESP --offset $esp_start "$disk" $((esp_len / 2)) >/dev/null
esp="$disk@@$((esp_start * 512))"
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/debian
mcopy -i "$esp" "$shim" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$grubefi" ::/EFI/BOOT/grubx64.efi
[ -f "$mm" ] && mcopy -i "$esp" "$mm" ::/EFI/BOOT/mmx64.efi
mcopy -i "$esp" "$shim" ::/EFI/debian/shimx64.efi
mcopy -i "$esp" "$grubefi" ::/EFI/debian/grubx64.efi
mcopy -i "$esp" "$work/esp.cfg" ::/EFI/debian/grub.cfg
mcopy -i "$esp" "$work/esp.cfg" ::/EFI/BOOT/grub.cfg

# ---------------------------------------------------------------------------
step 6 "GRUB for BIOS (boot sector and core, written as grub-install would)"
core_len=$(stat -c %s "$work/core.img")
[ "$core_len" -le $((bios_len * 512)) ] || die "GRUB's core ($core_len bytes) is larger than the BIOS boot partition"
dd if="$work/core.img" of="$disk" bs=512 seek=$bios_start conv=notrunc status=none
# The core's first sector loads the rest from the blocklist at its end:
# the start of the rest is the sector after it (grub-mkimage set the length).
le64 $((bios_start + 1)) | dd of="$disk" bs=1 seek=$((bios_start * 512 + 500)) conv=notrunc status=none
# The boot sector's code (not the partition table after byte 440), with the
# core's first sector at offset 0x5c.
dd if=/usr/lib/grub/i386-pc/boot.img of="$disk" bs=440 count=1 conv=notrunc status=none
le64 $bios_start | dd of="$disk" bs=1 seek=$((0x5c)) conv=notrunc status=none

# ---------------------------------------------------------------------------
step 7 "the qcow2 image"
qemu-img convert -f raw -O qcow2 "$disk" "$work/out.qcow2"
mv "$work/out.qcow2" "$out"
echo "done: $out ($(du -h "$out" | cut -f1) on disk, $size virtual, root UUID $uuid)"
