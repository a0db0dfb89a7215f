#!/bin/sh
# Install the Debian packages vmgr needs to build, test and run, when they
# are missing.  `scripts/deps.sh --list` prints the list (for .ci/run).
set -eu

PKGS="gcc make pkg-config libevent-dev libjansson-dev libsqlite3-dev
libcmocka-dev qemu-system-x86 qemu-utils
busybox-static xz-utils perl curl jq sqlite3 prometheus openssl
iproute2 dnsmasq-base clang libclang-rt-dev valgrind libssl-dev strace
libyaml-dev mmdebstrap fdisk dosfstools mtools e2fsprogs grub-common
grub-pc-bin grub-efi-amd64-bin ovmf xorriso openssh-client passt nftables iperf3 iputils-ping"

if [ "${1:-}" = "--list" ]; then
	echo $PKGS
	exit 0
fi

missing=
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
# The guest build downloads Debian's kernel package: apt needs its lists.
lists=$(ls /var/lib/apt/lists/ 2>/dev/null | grep -c '_Packages' || true)

[ -z "$missing" ] && [ "$lists" -gt 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
	command -v sudo >/dev/null || {
		echo "vmgr: missing packages:$missing" >&2
		echo "vmgr: as root, run: apt-get update && apt-get install -y$missing" >&2
		exit 1
	}
else
	sudo=
fi
echo "vmgr: installing:${missing:- (package lists only)}"
$sudo apt-get update -qq
[ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
