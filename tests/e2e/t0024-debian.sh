#!/bin/sh
# A real operating system: `vmgr image build debian-12` (built once per
# build tree, then cached), booted by SeaBIOS and by OVMF to a login prompt
# and to SSH with the key and user given at create; its hostname, its
# grown root file system, the address vmgr gave its second NIC; then every
# feature on it: pause and resume, a snapshot with memory reverted, live
# full and incremental backups, save and restore, a restore as a new VM
# that boots and has the data, and a shutdown by the guest's own power-off.
# UEFI: a boot entry made in the guest survives a restart, goes with a
# backup, and the variable store goes with the VM; Secure Boot boots.
#
# The slow file of the suite (about a minute per boot under TCG): the
# sanitizer pass leaves it out, t0023 runs the same code paths there.
. "$(dirname "$0")/lib.sh"
if grep -q fsanitize "$BUILD/.flags" 2>/dev/null; then
	echo "1..0 # SKIP the Debian guests are not booted under the sanitizers (t0023 covers the code)"
	_done=1; _n=0
	trap - EXIT
	rm -rf "$STATE"
	exit 0
fi
export VMGR_IMAGE_CACHE="$BUILD/image-cache"
start_daemon

W=$STATE/work
mkdir -p "$W"
ssh-keygen -q -t ed25519 -N '' -C t0024 -f "$W/key"
P1=$((20000 + $$ % 5000)) P2=$((25000 + $$ % 5000))
gssh() {	# gssh VM COMMAND...: as its user, with the key given at create
	_vm=$1; shift
	timeout 60 "$VMGR_BIN" --state-dir "$STATE" ssh "$_vm" -- \
	    -o BatchMode=yes -i "$W/key" "$@" </dev/null
}
ssh_up() { gssh "$1" true >/dev/null 2>&1; }

# ---- the image
t0=$(date +%s)
check "vmgr image build debian-12 (or its cached build)" \
    sh -c "'$VMGR_BIN' --state-dir '$STATE' image build debian-12 >'$W/build.log' 2>&1"
diag "image build: $(( $(date +%s) - t0 )) s ($(grep -c '^\[' "$W/build.log") steps printed; $(vmgr image show debian-12 --json | jq -r .source))"
img=$(vmgr image show debian-12 --json)
is "$(echo "$img" | jq -r '.state, .firmware, .format')" "ready
any
qcow2" "debian-12: ready, boots with BIOS and UEFI, qcow2"
like "$(echo "$img" | jq -r .partitions)" "GPT: BIOS boot partition, EFI system partition, 3 partitions" \
    "its partition table: a BIOS boot partition and an ESP"

check "network create lan (isolated)" vmgr network create lan --subnet 10.77.0.0/24
t0=$(date +%s%N)
check "create web --image debian-12 --disk-size 4G (a clone and a seed)" \
    vmgr create web --image debian-12 --disk-size 4G --vcpus 2 --memory 1G \
    --ssh-key "$W/key.pub" --user admin --nic nat --forward "tcp:$P1:22" --nic lan
diag "create --image: $(( ($(date +%s%N) - t0) / 1000000 )) ms, web-root allocated $(vmgr volume show web-root --json | jq .allocated_bytes) bytes"
lanip=$(vmgr info web --json | jq -r '.spec.nics[1].ip')

# ---- BIOS: boot, log in, look around
t0=$(date +%s)
check "start web (SeaBIOS)" vmgr start web
check "web answers on SSH" wait_until 300 ssh_up web
diag "web: SSH $(( $(date +%s) - t0 )) s after start"
check "web's serial console shows a login prompt" wait_until 120 console_has web "web login:"
# What a user checks before relying on first-boot set-up: cloud-init is
# done, without errors, and sshd was not restarted under the logins.
is "$(gssh web cloud-init status --wait | tail -1)" "status: done" "cloud-init finished without errors"
is "$(gssh web 'grep -c "Restarted the SSH daemon" /var/log/cloud-init.log')" 0 \
    "cloud-init did not restart sshd after it first answered"
like "$(gssh web cat /etc/os-release)" 'PRETTY_NAME="Debian GNU/Linux 12 \(bookworm\)"' \
    "vmgr ssh web -- cat /etc/os-release: Debian 12"
is "$(gssh web 'id -un; hostname')" "admin
web" "logged in as the user given (admin), the hostname is the VM's name"
check "sudo works without a password" gssh web sudo -n true
is "$(gssh web 'sudo -n true 2>&1; echo "rc=$?"')" "rc=0" "sudo finds the VM's own name (no 'unable to resolve host')"
like "$(gssh web sudo passwd -S admin)" '^admin L ' "no password was given: it is locked"
size=$(gssh web df -B1 --output=size / | tail -1 | tr -d ' ')
ok "$([ "$size" -gt 3600000000 ] && [ "$size" -lt 4294967296 ] && echo 0 || echo 1)" \
    "the root file system grew to the 4 GiB disk ($size bytes)"
like "$(gssh web ip -4 -o addr)" "inet $lanip/24" "the NIC on lan has the address vmgr assigned ($lanip)"
like "$(gssh web cat /proc/cmdline)" "console=ttyS0" "GRUB booted Debian's kernel with the serial console"

# ---- every feature on a real guest
check "pause web" vmgr pause web
check "resume web" vmgr resume web
check "web answers after the resume" wait_until 60 ssh_up web
gssh web 'echo one | sudo tee /root/data >/dev/null; sync'
check "snapshot create web s1 --memory" vmgr snapshot create web s1 --memory
gssh web 'sudo rm /root/data; sync'
check "snapshot revert web s1" vmgr snapshot revert web s1
check "web answers after the revert" wait_until 60 ssh_up web
is "$(gssh web sudo cat /root/data)" one "the reverted guest has the file it had"
check "backup create web (live, full)" vmgr backup create web
gssh web 'echo two | sudo tee /root/data >/dev/null; sync'
check "backup create web --incremental (live)" vmgr backup create web --incremental
is "$(vmgr backup list web --json | jq -r '[.[].kind] | join(",")')" "full,incremental" \
    "a full and an incremental backup of the running guest"
check "save web" vmgr save web
check "start web (restore)" vmgr start web
check "web answers after save and restore" wait_until 60 ssh_up web
is "$(gssh web sudo cat /root/data)" two "the restored guest goes on with its data"

bk=$(vmgr backup list web --json | jq '.[-1].id')
check "backup restore $bk --as web2" vmgr backup restore "$bk" --as web2
root2=$(vmgr info web2 --json | jq -r '.spec.disks[0].volume')
# The root partition starts where guest/debian-12.sh puts it (sector
# 135168); debugfs reads it without a mount.
off=135168
qemu-img convert -O raw "json:{\"driver\":\"raw\",\"offset\":$((off * 512)),\"file\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$(vmgr volume show "$root2" --json | jq -r .path)\"}}}" "$W/root2.raw"
is "$(debugfs -R 'cat /root/data' "$W/root2.raw" 2>/dev/null)" two "web2's disk has the data of the incremental backup"
rm -f "$W/root2.raw"
check "start web2" vmgr start web2
check "web2 boots to its login prompt" wait_until 300 console_has web2 " login:"
check "stop web2" vmgr stop web2

t0=$(date +%s)
check "shutdown web (the ACPI button; systemd powers off)" vmgr shutdown web
is "$(state_of web)" created "web is created again"
like "$(vmgr events web --json | jq -r '.[-1].reason')" "guest powered off" "it was the guest's own power-off"
diag "shutdown: $(( $(date +%s) - t0 )) s"

# ---- UEFI
check "create efi --firmware uefi" vmgr create efi --image debian-12 --firmware uefi \
    --vcpus 2 --memory 768M --ssh-key "$W/key.pub" --forward "tcp:$P2:22"
vars=$(vmgr info efi --json | jq -r .runtime.dir)/efivars.fd
t0=$(date +%s)
check "start efi (OVMF)" vmgr start efi
check "efi answers on SSH" wait_until 300 ssh_up efi
diag "efi: SSH $(( $(date +%s) - t0 )) s after start"
check "it booted through UEFI" gssh efi test -d /sys/firmware/efi/efivars
is "$(gssh efi id -un)" vmgr "the default user is vmgr"
check "efibootmgr adds a boot entry in the guest" gssh efi sudo efibootmgr -q -c -d /dev/vda -p 2 \
    -L vmgr-entry -l '\EFI\BOOT\BOOTX64.EFI'
check "shutdown efi" vmgr shutdown efi
u16=$(printf vmgr-entry | iconv -t UTF-16LE | od -An -tx1 | tr -d ' \n')
has_entry() { od -An -tx1 -v "$1" | tr -d ' \n' | grep -q "$u16"; }
check "the entry is in efi's own variable store" has_entry "$vars"
check "start efi again" vmgr start efi
check "efi answers again" wait_until 300 ssh_up efi
like "$(gssh efi sudo efibootmgr)" "vmgr-entry" "the boot entry survived the restart"
check "backup create efi (live)" vmgr backup create efi
bk=$(vmgr backup list efi --json | jq '.[-1].id')
check "the backup holds the variable store" test -f "$(vmgr backup show "$bk" --json | jq -r .dir)/efivars.fd"
check "stop efi" vmgr stop efi
check "backup restore $bk --as efi2" vmgr backup restore "$bk" --as efi2
check "efi2's variable store has the entry" has_entry "$(vmgr info efi2 --json | jq -r .runtime.dir)/efivars.fd"
is "$(vmgr info efi2 --json | jq -r .spec.firmware)" uefi "efi2 boots through UEFI too"
dir=$(vmgr info efi --json | jq -r .runtime.dir)
check "delete efi" vmgr delete efi
check "its variable store went with it" test ! -e "$dir/efivars.fd"
# ---- Secure Boot: shim (signed by Microsoft), Debian's signed GRUB and kernel
check "create sb --secure-boot" vmgr create sb --image debian-12 --secure-boot \
    --vcpus 2 --memory 768M --ssh-key "$W/key.pub" --forward "tcp:$P2:22"
is "$(vmgr info sb --json | jq -r '.spec.firmware, .spec.secure_boot')" "uefi
true" "sb: UEFI with Secure Boot"
t0=$(date +%s)
check "start sb" vmgr start sb
check "sb answers on SSH" wait_until 300 ssh_up sb
diag "sb: SSH $(( $(date +%s) - t0 )) s after start"
is "$(gssh sb "od -An -t u1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | awk '{print \$NF}'")" 1 \
    "the guest booted with Secure Boot on"
check "stop sb" vmgr stop sb

out=$(api DELETE /v1/images/debian-12)
like "$out" '^409 .*image_in_use' "the image is still the base of web's disk: 409"

invariants "at the end"
done_testing
