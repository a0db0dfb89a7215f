#!/bin/sh
# guest/debian-12-customize.sh ROOT UUID - mmdebstrap's customize hook for
# guest/debian-12.sh: what makes the tree a cloud image that boots from the
# disk vmgr gives it and learns its user, keys and addresses from the
# NoCloud seed vmgr attaches.
set -eu
root=$1
uuid=$2

cat >"$root/etc/fstab" <<EOF
UUID=$uuid / ext4 errors=remount-ro 0 1
LABEL=ESP /boot/efi vfat umask=0077,nofail 0 2
EOF
mkdir -p "$root/boot/efi" "$root/boot/grub"

cat >"$root/boot/grub/grub.cfg" <<EOF
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry "Debian GNU/Linux 12" {
	search --no-floppy --fs-uuid --set=root $uuid
	linux /vmlinuz root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8
	initrd /initrd.img
}
EOF

echo debian >"$root/etc/hostname"
cat >"$root/etc/hosts" <<EOF
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
EOF
# cloud-init writes the NICs' own files from the seed's network-config.
cat >"$root/etc/network/interfaces" <<EOF
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*
EOF
mkdir -p "$root/etc/network/interfaces.d"

# Only the seed vmgr attaches: no probing for clouds that are not there.
# The locale is C.UTF-8, which needs no generating: cloud-init's default
# en_US.UTF-8 is not generated here and its locale module would fail the
# boot's status.  A user-data locale of the user's own still applies.
cat >"$root/etc/cloud/cloud.cfg.d/90-vmgr.cfg" <<EOF
datasource_list: [ NoCloud, None ]
locale: C.UTF-8
EOF
echo LANG=C.UTF-8 >"$root/etc/default/locale"

# The guest agent's own process is what systemd restarts: not the
# commands it started (`vmgr exec`), which stay.  A command writing to a
# file system the agent froze cannot die until it is thawed, and with the
# default KillMode systemd would wait for it before starting the agent
# again, so an agent that died during a freeze could never come back to
# thaw, and nothing else can.
mkdir -p "$root/etc/systemd/system/qemu-guest-agent.service.d"
cat >"$root/etc/systemd/system/qemu-guest-agent.service.d/60-vmgr.conf" <<EOF
[Service]
KillMode=process
EOF

# Every VM its own identity: machine-id and SSH host keys are made at its
# first boot (systemd and cloud-init), never shared through the image.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
# The guest agent listens on the virtio-serial port vmgr gives it.
chroot "$root" systemctl enable qemu-guest-agent >/dev/null 2>&1 || true
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
