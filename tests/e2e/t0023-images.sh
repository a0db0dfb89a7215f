#!/bin/sh
# The image catalog and what firmware boots, without a real distribution
# (t0024 boots Debian): images imported and their partition tables read,
# linked clones that copy nothing, images that cannot boot refused at
# create, the cloud-init options' bad input, an ISO install medium (made
# from the tiny guest with grub-mkrescue) booted by SeaBIOS and ejected,
# UEFI's variable store made, kept and deleted with its VM, and autostart.
. "$(dirname "$0")/lib.sh"
start_daemon

W=$STATE/work
mkdir -p "$W"

# ---- crafted images: what their partition tables say
qemu-img create -q -f raw "$W/blank.raw" 16M
qemu-img create -q -f raw "$W/mbr.raw" 16M
printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$W/mbr.raw" >/dev/null
printf '\353\143\220' | dd of="$W/mbr.raw" conv=notrunc status=none	# boot code
qemu-img create -q -f raw "$W/esp.raw" 64M
printf 'label: gpt\nstart=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n' |
    sfdisk -q "$W/esp.raw" >/dev/null
qemu-img convert -O qcow2 "$W/esp.raw" "$W/esp.qcow2"

check "image import blank (a raw disk without a partition table)" vmgr image import blank "$W/blank.raw"
check "image import mbr (MBR boot code)" vmgr image import mbr "$W/mbr.raw"
check "image import esp (qcow2, GPT with only an EFI system partition)" vmgr image import esp "$W/esp.qcow2"
is "$(vmgr image show blank --json | jq -r .firmware)" none "blank: firmware none"
like "$(vmgr image show blank --json | jq -r .partitions)" "no partition table" "blank: no partition table, it says"
is "$(vmgr image show mbr --json | jq -r .firmware)" bios "mbr: firmware bios"
is "$(vmgr image show esp --json | jq -r '.firmware, .format, .size_bytes')" "uefi
qcow2
67108864" "esp: firmware uefi, qcow2, 64 MiB"
like "$(vmgr image list)" "tiny +kernel" "image list shows the built-in kernel image tiny"
is "$(vmgr image list --json | jq -r '[.[].name] | sort | join(" ")')" "blank esp mbr tiny" \
    "image list --json: every image, tiny too"
out=$(api POST /v1/images "{\"name\":\"mbr\",\"import\":\"$W/mbr.raw\"}")
like "$out" '^409 .*exists' "an image name taken: 409"
out=$(api POST /v1/images "{\"name\":\"tiny\",\"import\":\"$W/mbr.raw\"}")
like "$out" '^409 .*exists' "the name of a kernel image: 409"
out=$(api POST /v1/images '{"name":"x","import":"relative/path"}')
like "$out" '^422 .*absolute' "a relative path: 422"
out=$(api POST /v1/images '{"name":"../x","import":"/etc/passwd"}')
like "$out" '^422 .*invalid_name' "a name with a path in it: 422"
out=$(api POST /v1/images '{"name":"x"}')
like "$out" '^422 .*import .*build' "neither import nor build: 422"
out=$(api POST /v1/images '{"name":"x","build":"windows-11"}')
like "$out" '^422 .*unknown_recipe' "an unknown recipe: 422"
out=$(api POST /v1/images '{"name":"x","import":"/etc/passwd","colour":1}')
like "$out" '^422 .*unknown_field' "an unknown field: 422"
qemu-img create -q -f qcow2 -b "$W/esp.qcow2" -F qcow2 "$W/backed.qcow2"
out=$(api POST /v1/images "{\"name\":\"backed\",\"import\":\"$W/backed.qcow2\"}")
like "$out" '^422 .*has_backing_file' "an image with a backing file: 422"
is "$(vmgr image list --json | jq length)" 4 "refused imports left no image"
check "no volume half-made in the pool" sh -c "! ls '$STATE/volumes' | grep -v -E '^(blank|mbr|esp).qcow2$'"

# ---- create from an image: what boots it
out=$(api POST /v1/vms '{"name":"b","image":"blank"}')
like "$out" '^422 .*not_bootable.*no partition table' "an image that cannot boot is refused at create"
out=$(api POST /v1/vms '{"name":"b","image":"esp","firmware":"bios"}')
like "$out" '^422 .*wrong_firmware.*UEFI' "a UEFI-only image with firmware bios: 422"
out=$(api POST /v1/vms '{"name":"b","image":"nosuch"}')
like "$out" '^422 .*no_such_image' "an unknown image: 422"
out=$(api POST /v1/vms '{"name":"b","image":"tiny","disks":[{"volume":"b-root","image":"tiny"}]}')
like "$out" '^422 .*kernel image' "cloning the kernel image tiny: 422"
out=$(api POST /v1/vms '{"name":"b","image":"esp","disks":[{"volume":"esp"}]}')
like "$out" '^409 .*volume_is_image' "attaching an image itself: 409"
is "$(vmgr list --json | jq length)" 0 "refused creates left no VM"

check "create u1 --image esp (UEFI chosen: the image can only boot so)" \
    vmgr create u1 --image esp --memory 64M
spec=$(vmgr info u1 --json | jq -c .spec)
is "$(printf "%s" "$spec" | jq -r '.firmware, .disks[0].volume, .disks[0].image, .disks[0].size')" "uefi
u1-root
esp
67108864" "u1: firmware uefi, its first disk u1-root a clone of esp, as large"
is "$(vmgr volume show u1-root --json | jq -r .backing)" esp "u1-root's backing file is the image"
alloc=$(vmgr volume show u1-root --json | jq .allocated_bytes)
ok "$([ "$alloc" -lt 1048576 ] && echo 0 || echo 1)" "the clone copied nothing ($alloc bytes allocated)"
is "$(printf "%s" "$spec" | jq -c .cloud_init)" '{}' "a VM of a disk image gets a cloud-init seed"
is "$(stat -c '%s %a %U' "$STATE/vm/$(vmgr info u1 --json | jq .id)/efivars.fd")" "540672 600 root" \
    "its own UEFI variable store, root's, from OVMF's template"
is "$(vmgr image show esp --json | jq -r '.used_by | join(",")')" u1 "image show: used by u1"
out=$(api DELETE /v1/images/esp)
like "$out" '^409 .*image_in_use.*u1' "deleting an image VMs use: 409, naming them"
out=$(api DELETE /v1/volumes/esp)
like "$out" '^409 ' "deleting the image's volume: 409"
out=$(api DELETE /v1/images/tiny)
like "$out" '^409 .*builtin_image' "deleting the built-in kernel image: 409"
check "create m1 --image mbr --disk-size 32M --firmware bios" \
    vmgr create m1 --image mbr --disk-size 32M --memory 64M
is "$(vmgr info m1 --json | jq -r '.spec.firmware, .spec.disks[0].size')" "bios
33554432" "m1: BIOS, a 32 MiB clone"
out=$(api POST /v1/vms '{"name":"m2","image":"mbr","disks":[{"volume":"m2-root","image":"mbr","size":"1M"}]}')
like "$out" '^422 .*too_small' "a clone smaller than its image: 422"
vdir=$(vmgr info u1 --json | jq -r .runtime.dir)
check "delete u1" vmgr delete u1
check "its variable store went with it" test ! -e "$vdir"
check "image delete esp, now unused" vmgr image delete esp
check "the image's volume is gone" test ! -e "$STATE/volumes/esp.qcow2"

# ---- cloud-init's bad input, refused at create with what is wrong
ssh-keygen -q -t ed25519 -N '' -C test -f "$W/key"
vmgr create k1 --image mbr --ssh-key "$W/key" >/dev/null 2>"$W/err"
is $? 2 "--ssh-key with a private key: a usage error"
like "$(cat "$W/err")" "private key" "it says it is the private key"
echo "hello world" >"$W/notakey"
vmgr create k1 --image mbr --ssh-key "$W/notakey" >/dev/null 2>&1
is $? 2 "--ssh-key of a file that is no public key: a usage error"
key=$(cat "$W/key.pub")
out=$(api POST /v1/vms '{"name":"k1","image":"mbr","cloud_init":{"ssh_authorized_keys":["ssh-ed25519 AAAAnotbase64!"]}}')
like "$out" '^422 .*ssh_authorized_keys\[0\]' "a broken key through the API: 422"
bad=$(echo "$key" | sed 's/AAAAC3NzaC1lZDI1NTE5/AAAAB3NzaC1yc2EAAAA/')
out=$(api POST /v1/vms "{\"name\":\"k1\",\"image\":\"mbr\",\"cloud_init\":{\"ssh_authorized_keys\":[\"$bad\"]}}")
like "$out" '^422 ' "a key whose blob names another type: 422"
out=$(api POST /v1/vms '{"name":"k1","image":"mbr","cloud_init":{"user":"Root!"}}')
like "$out" '^422 .*invalid_name.*cloud_init.user' "a user that is no login name: 422"
out=$(api POST /v1/vms '{"name":"k1","image":"mbr","cloud_init":{"password_hash":"hunter2"}}')
like "$out" '^422 .*crypt' "a plain password as password_hash: 422"
out=$(api POST /v1/vms '{"name":"k1","image":"mbr","cloud_init":{"user_data":"echo hi"}}')
like "$out" '^422 .*cloud-config' "user-data that is not #cloud-config or MIME: 422"
out=$(api POST /v1/vms '{"name":"k1","image":"mbr","cloud_init":{"user_data":"#cloud-config\nusers: [a, b\n"}}')
like "$out" '^422 .*bad_cloud_init.*not valid YAML.*line' "user-data that is not YAML: 422 with where"
out=$(api POST /v1/vms '{"name":"k1","image":"mbr","cloud_init":{"user_data":"#cloud-config\n- a\n- b\n"}}')
like "$out" '^422 .*mapping' "user-data YAML that is no mapping: 422"
out=$(api POST /v1/vms '{"name":"k1","image":"mbr","cloud_init":{"shell":"zsh"}}')
like "$out" '^422 .*unknown_field.*cloud_init.shell' "an unknown cloud_init field: 422"
head -c 1100000 /dev/zero | tr '\0' 'a' | sed '1s/^/#cloud-config\nx: /' >"$W/big.yaml"
vmgr create k1 --image mbr --user-data "$W/big.yaml" >/dev/null 2>"$W/err"
ok "$([ $? -ne 0 ] && echo 0 || echo 1)" "user-data over 1 MiB is refused ($(head -c 80 "$W/err"))"
is "$(vmgr list --json | jq -r '[.[].name] | join(",")')" m1 "no VM was made of the bad input"
printf '#cloud-config\npackages: [htop]\n' >"$W/user.yaml"
echo 'secret-password' >"$W/pw"
check "create k1 with a key, a user, a password file and user-data" \
    vmgr create k1 --image mbr --ssh-key "$W/key.pub" --user admin \
    --password-file "$W/pw" --user-data "$W/user.yaml" --forward tcp:2299:22
ci=$(vmgr info k1 --json | jq -c .spec.cloud_init)
is "$(printf "%s" "$ci" | jq -r '.user, .ssh_authorized_keys[0]')" "admin
$key" "the user and the key are in the spec"
like "$(printf "%s" "$ci" | jq -r .password_hash)" '^\$6\$' "the password is kept only as a SHA-512 crypt hash"
check "the password itself is nowhere in the state dir" sh -c "! grep -r -q --exclude-dir=work secret-password '$STATE'"
is "$(vmgr info k1 --json | jq -r .ssh.command)" "ssh -p 2299 admin@127.0.0.1" "info: how to ssh in"
like "$(vmgr info k1)" "ssh: +ssh -p 2299 admin@127.0.0.1" "vmgr info shows the ssh command"
check "set k1 --ssh-key adds a key for the next boot" vmgr set k1 --ssh-key "$W/key.pub"
is "$(vmgr info k1 --json | jq '.spec.cloud_init.ssh_authorized_keys | length')" 2 "k1 has two keys now"
vmgr ssh m1 >/dev/null 2>"$W/err"
like "$(cat "$W/err")" "no way in.*--forward tcp:2222:22" "vmgr ssh without a forward says how to add one"

# ---- an ISO: the tiny guest on a GRUB rescue CD, booted by SeaBIOS
mkdir -p "$W/iso/boot/grub"
cp "$BUILD/images/tiny/vmlinuz" "$BUILD/images/tiny/initrd.img" "$W/iso/"
cat >"$W/iso/boot/grub/grub.cfg" <<EOF
set timeout=0
menuentry tiny { linux /vmlinuz $(cat "$BUILD/images/tiny/cmdline"); initrd /initrd.img; }
EOF
check "grub-mkrescue makes a bootable ISO of the tiny guest" \
    sh -c "grub-mkrescue -o '$W/tiny.iso' '$W/iso' >'$W/mkrescue.log' 2>&1"
check "create inst --cdrom tiny.iso --disk new:64M --boot cdrom,disk" \
    vmgr create inst --cdrom "$W/tiny.iso" --disk new:64M --boot cdrom,disk --memory 128M
is "$(vmgr info inst --json | jq -r '.spec.cdrom, (.spec.boot.order | join(","))')" "$W/tiny.iso
cdrom,disk" "the spec has the ISO and the boot order"
like "$(vmgr info inst)" "boot order: +cdrom, disk" "info shows the boot order"
check "start inst" vmgr start inst
check "the guest on the ISO boots (GUEST-READY on its console)" \
    wait_until 90 console_has inst GUEST-READY
check "set inst --eject, while it runs" vmgr set inst --eject
is "$(vmgr info inst --json | jq -r '.spec.cdrom // "none"')" none "the spec has no cdrom now"
out=$(api PATCH /v1/vms/inst "{\"cdrom\":\"$W/tiny.iso\"}")
like "$out" '^409 .*vm_running' "inserting an ISO into a running VM: 409"
check "stop inst" vmgr stop inst
out=$(api PATCH /v1/vms/inst '{"cdrom":"/nonexistent.iso"}')
like "$out" '^422 .*missing_file' "inserting an ISO that is not there: 422"
check "set inst --cdrom tiny.iso, stopped" vmgr set inst --cdrom "$W/tiny.iso"
is "$(vmgr info inst --json | jq -r .spec.cdrom)" "$W/tiny.iso" "the ISO is back in the spec"

# ---- an install from the ISO onto a disk, and the first boot from it
# The "installed system": an MBR disk with GRUB's BIOS core in the gap
# after the MBR and a FAT partition holding the tiny guest, GRUB written
# as guest/debian-12.sh writes it; the ISO carries it gzipped in an extra
# initramfs archive, and the installer is dd on the guest's console.
le64() { perl -e 'print pack("Q<", $ARGV[0])' "$1"; }
D=$W/disk.img
truncate -s 24M "$D"
printf 'label: dos\nstart=2048, type=c, bootable\n' | sfdisk -q "$D" >/dev/null
mkfs.vfat --offset 2048 -n TINY "$D" $(( (24 * 2048 - 2048) / 2 )) >/dev/null 2>&1
mkdir -p "$W/sys/boot/grub"
cp "$BUILD/images/tiny/vmlinuz" "$BUILD/images/tiny/initrd.img" "$W/sys/boot/"
printf 'set timeout=0\nmenuentry installed { linux /boot/vmlinuz %s vmgr.installed=1; initrd /boot/initrd.img; }\n' \
    "$(cat "$BUILD/images/tiny/cmdline")" >"$W/sys/boot/grub/grub.cfg"
MTOOLS_SKIP_CHECK=1 mcopy -s -i "$D@@1M" "$W/sys/boot" ::/
grub-mkimage -O i386-pc -o "$W/core.img" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos fat normal linux configfile echo test
dd if="$W/core.img" of="$D" bs=512 seek=1 conv=notrunc status=none
le64 2 | dd of="$D" bs=1 seek=$((512 + 500)) conv=notrunc status=none
dd if=/usr/lib/grub/i386-pc/boot.img of="$D" bs=440 count=1 conv=notrunc status=none
le64 1 | dd of="$D" bs=1 seek=$((0x5c)) conv=notrunc status=none
gzip -1 -c "$D" >"$W/disk.img.gz"
# An extra initramfs archive (newc) holding /disk.img.gz, after tiny's own.
perl -e '
	sub h { my ($n, $m, $sz) = @_;
	    my $s = sprintf("070701" . ("%08X" x 13), 1, $m, 0, 0, 1, 0, $sz,
		0, 0, 0, 0, length($n) + 1, 0) . $n . "\0";
	    $s .= "\0" x ((4 - length($s) % 4) % 4); print $s; }
	open(F, "<", $ARGV[0]) or die; binmode F; local $/; my $d = <F>;
	h("disk.img.gz", 0100644, length($d)); print $d;
	print "\0" x ((4 - length($d) % 4) % 4);
	h("TRAILER!!!", 0, 0);' "$W/disk.img.gz" >"$W/payload.cpio"
mkdir -p "$W/inst/boot/grub"
cp "$BUILD/images/tiny/vmlinuz" "$W/inst/"
# The kernel takes an archive after a compressed one only at a 4-byte
# boundary: pad with zeros, which it skips.
cp "$BUILD/images/tiny/initrd.img" "$W/inst/initrd.img"
head -c $(( (4 - $(stat -c %s "$W/inst/initrd.img") % 4) % 4 )) /dev/zero >>"$W/inst/initrd.img"
cat "$W/payload.cpio" >>"$W/inst/initrd.img"
cp "$W/iso/boot/grub/grub.cfg" "$W/inst/boot/grub/"
check "an installer ISO (grub-mkrescue) with the system to install" \
    sh -c "grub-mkrescue -o '$W/install.iso' '$W/inst' >'$W/mkrescue2.log' 2>&1"
check "create dest --cdrom install.iso --disk new:64M (disk first, then cdrom)" \
    vmgr create dest --cdrom "$W/install.iso" --disk new:64M --memory 256M
check "start dest: the empty disk does not boot, the ISO does" vmgr start dest
check "the installer runs (GUEST-READY)" wait_until 90 console_has dest GUEST-READY
printf '[ -f /disk.img.gz ] && gunzip -c /disk.img.gz | dd of=/dev/vda bs=1M 2>/dev/null && sync && echo INSTALL-$((6*7))\n' |
    vmgr console dest >/dev/null
check "the system is written onto the disk" wait_until 60 console_has dest INSTALL-42
check "stop dest" vmgr stop dest
check "set dest --eject" vmgr set dest --eject
check "start dest, now from its disk" vmgr start dest
check "the installed system boots (GUEST-READY)" wait_until 90 console_has dest GUEST-READY
printf 'cat /proc/cmdline\n' | vmgr console dest >/dev/null
check "it is the installed system, booted by SeaBIOS and the disk's GRUB" \
    wait_until 20 console_has dest vmgr.installed=1
check "stop dest" vmgr stop dest

# ---- autostart: once per host boot, highest priority first
check "create a1 --autostart (priority 3)" vmgr create a1 --image tiny --memory 64M --autostart --priority 3
check "create a2 --autostart (priority 8)" vmgr create a2 --image tiny --memory 64M --autostart --priority 8
check "create a3 (no autostart)" vmgr create a3 --image tiny --memory 64M
kill_daemon
start_daemon
is "$(state_of a1) $(state_of a2)" "created created" "a vmgrd restart in the same host boot starts nothing"
kill_daemon
sqlite3 "$STATE/vmgr.db" "DELETE FROM settings WHERE key = 'autostart_boot_id'"
start_daemon	# as after the host rebooted
check "a1 and a2 start by themselves" wait_until 30 sh -c "[ \"\$('$VMGR_BIN' --state-dir '$STATE' info a1 --json | jq -r .state)\" = running ] && [ \"\$('$VMGR_BIN' --state-dir '$STATE' info a2 --json | jq -r .state)\" = running ]"
is "$(state_of a3)" created "a3 (no autostart) stays created"
is "$(vmgr events --json | jq -r '[.[] | select(.reason == "autostart") | .vm] | join(",")')" "a2,a1" \
    "autostart in priority order, a2 (8) first"
check "set a1 --no-autostart" vmgr set a1 --no-autostart
is "$(vmgr info a1 --json | jq .spec.autostart)" false "a1's autostart is off"
for v in a1 a2 inst; do vmgr stop "$v" >/dev/null 2>&1; done

done_testing
