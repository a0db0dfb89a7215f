#!/bin/sh
# A QEMU that a guest has escaped into, played honestly: the test acts as
# that QEMU's user (setpriv to its uid) and does what it could.  It cannot
# write its run dir, so it cannot plant links where root opens files; links
# left there anyway (by hand, or by vmgr 0.1, whose run dirs were QEMU's)
# are never followed by save, restore, `console --log` or a stopped VM's
# backup.  Its NIC's socket is vmgrd's, in the run dir, so no link can
# aim the switch at another socket.  A volume it rewrites to name a host file as its
# data file, and an image imported with one, are refused before root's
# qemu-img opens them; so is a backup file that names one.  Needs root.
. "$(dirname "$0")/lib.sh"
if [ "$(id -u)" != 0 ]; then
	echo "1..0 # SKIP needs root (QEMU runs as a user of its own only then)"
	_done=1; _n=0; trap - EXIT; rm -rf "$STATE"; exit 0
fi
start_daemon --switch user
T=$STATE/attacker
mkdir -p "$T"
victim=$T/victim
printf 'secret-%s\n' $$ >"$victim"
chmod 600 "$victim"
vsum() { sha256sum "$victim" | cut -c1-64; stat -c %Y "$victim"; }
vsum0=$(vsum)
# A FIFO: opening it for reading would let the writer below finish.
mkfifo "$T/fifo"
(printf leak >"$T/fifo" && touch "$T/fifo-was-read") &
fifo_pid=$!

check "create lan0" vmgr network create lan0
check "create a with a disk, on lan0" vmgr create a --image tiny --disk new:64M --nic lan0
check "create b on lan0" vmgr create b --image tiny --nic lan0
check "start a" vmgr start a
check "start b" vmgr start b
check "both boot" wait_until 90 sh -c "for v in a b; do '$VMGR_BIN' --state-dir '$STATE' console \$v --log | grep -q GUEST-READY || exit 1; done"
id=$(vmgr info a --json | jq .id)
pid=$(vmgr info a --json | jq .pid)
qu=$(awk '/^Uid:/ {print $3}' /proc/$pid/status)
qg=$(awk '/^Groups:/ {$1 = ""; print}' /proc/$pid/status | xargs | tr ' ' ,)
run=$STATE/vm/$id
# Exactly a's QEMU: its uid, gid and supplementary groups.
as_qemu() { setpriv --reuid=$qu --regid=$qu --groups="$qg" "$@"; }
check "a's QEMU has its supplementary group ($qg)" test -n "$qg"

# ---- the run dir is root's; the QEMU user has one directory of its own
is "$(stat -c '%u %g %a' "$run")" "0 $qu 710" "a's run dir is root's; only a's QEMU may pass through"
is "$(stat -c '%u %a' "$run/qemu")" "$qu 700" "its QEMU has one directory of its own"
is "$(stat -c '%u' "$run/console.log" "$run/qemu.log" "$run/qemu.pid" "$run/qmp.sock" "$run/console.sock" "$run/nic0.sock" | sort -u)" 0 \
    "logs, pid file and sockets (its NIC's too) are root's"
for f in state.new state.sav console.log qsd.log qemu.pid; do
	check "as a's QEMU: no link can be planted as $f" sh -c "! setpriv --reuid=$qu --regid=$qu --groups='$qg' ln -sf '$victim' '$run/$f' 2>/dev/null"
done
check "as a's QEMU: nothing can be removed from the run dir" sh -c "! setpriv --reuid=$qu --regid=$qu --groups='$qg' rm '$run/console.log' 2>/dev/null"
check "... though it can reach its own directory" as_qemu ls "$run/qemu"
check "... the console log is still there" test -f "$run/console.log"

# ---- links left in the run dir (as vmgr 0.1 allowed) are not followed
ln -sf "$victim" "$run/console.log.planted"
mv "$run/console.log" "$run/console.log.real"
ln -s "$victim" "$run/console.log"
out=$(vmgr console a --log 2>&1); rc=$?
ok $(printf '%s' "$out" | grep -q secret; echo $((! $?))) "console --log does not serve the file a link points to"
like "$out" "not a file of vmgrd's own; refused" "... and says why (exit $rc)"
rm -f "$run/console.log"
ln "$victim" "$run/console.log"		# a hard link: a second name
ok $(vmgr console a --log 2>&1 | grep -q secret; echo $((! $?))) "nor a file a hard link names"
rm -f "$run/console.log" "$run/console.log.planted"
mv "$run/console.log.real" "$run/console.log"
check "console --log works again" console_has a GUEST-READY

ln -sf "$victim" "$run/state.new"
check "save a with a link planted as state.new" vmgr save a
is "$(vsum)" "$vsum0" "the link's target is untouched"
check "state.sav is a file of its own" sh -c "[ -f '$run/state.sav' ] && [ ! -L '$run/state.sav' ] && [ \"\$(stat -c '%u %h' '$run/state.sav')\" = '0 1' ]"
mv "$run/state.sav" "$run/state.keep"
ln -s "$T/fifo" "$run/state.sav"
out=$(vmgr start a 2>&1)
like "$out" "state.sav: not a file of vmgrd's own; refused" "a restore refuses a link as its saved state"
check "... which it never opened" sh -c "sleep 0.5; [ ! -e '$T/fifo-was-read' ]"
is "$(state_of a)" created "a did not start"
rm -f "$run/state.sav"
mv "$run/state.keep" "$run/state.sav"
# The record says created now; saved state is there: start restores it.
check "with its own saved state, a starts again" vmgr start a
check "a runs" has_state a running

# ---- a stopped VM's backup: qsd.log is made anew, never through a link
check "stop a" vmgr stop a
ln -sf "$victim" "$run/qsd.log"
check "back up the stopped VM with a link planted as qsd.log" vmgr backup create a
is "$(vsum)" "$vsum0" "the link's target is untouched"
check "qsd.log is a file of its own" sh -c "[ -f '$run/qsd.log' ] && [ ! -L '$run/qsd.log' ]"
is "$(find "$STATE/backups" -newer "$victim" -type l | wc -l)" 0 "the backup holds no link"

# ---- its NIC's socket is vmgrd's: no link can aim the switch elsewhere
check "start a" vmgr start a
check "a boots" wait_until 60 console_has a GUEST-READY
# The switch connects to the socket vmgrd bound for the NIC, in the run
# dir: QEMU can neither remove it nor put a link in its place.
check "as a's QEMU: its NIC's socket cannot be removed" sh -c "! setpriv --reuid=$qu --regid=$qu --groups='$qg' rm -f '$run/nic0.sock' 2>/dev/null"
check "as a's QEMU: nor a link put in its place" sh -c "! setpriv --reuid=$qu --regid=$qu --groups='$qg' ln -sf '$T/other.sock' '$run/nic0.sock' 2>/dev/null"
is "$(stat -c '%u %F' "$run/nic0.sock")" "0 socket" "... it is still vmgrd's socket"
# vmgrd restarts: the switch connects to it anew, and to nothing else.
kill_daemon KILL
start_daemon --switch user
printf 'ping -c 3 -W 2 %s >/dev/null && echo b-a-after-$((3+3))\n' "$(vmgr info a --json | jq -r '.spec.nics[0].ip')" | vmgr console b >/dev/null
check "b reaches a through the switch vmgrd connected again" wait_until 30 console_has b b-a-after-6

# ---- images naming host files
check "stop a" vmgr stop a
qemu-img create -q -f qcow2 -o data_file=$T/x.raw,data_file_raw=on "$T/evil.qcow2" 64M
qemu-img amend -o data_file="$victim" "$T/evil.qcow2"
like "$(vmgr volume import evil "$T/evil.qcow2" 2>&1)" "external data file: \"$victim\".*unsafe_image" \
    "importing an image whose data is a host file: refused, naming it"
check "... and no volume evil" sh -c "! '$VMGR_BIN' --state-dir '$STATE' volume show evil"
# qemu-img times its key derivation on this thread's CPU clock and gives up
# ("Unable to get accurate CPU usage") on a busy host now and then: retry.
for try in 1 2 3; do
	qemu-img create -q --object secret,id=s0,data=pw -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s0 "$T/luks.qcow2" 16M && break
done
like "$(vmgr volume import luks "$T/luks.qcow2" 2>&1)" 'encrypted.*unsafe_image' "an encrypted image: refused"
qemu-img create -q -f qcow2 "$T/good.qcow2" 16M
check "a plain qcow2 imports" vmgr volume import good "$T/good.qcow2"
is "$(ls "$STATE/volumes" | grep -c import)" 0 "its private copy is gone"
# a's QEMU rewrites its own disk with such a header.
vol=$(vmgr info a --json | jq -r '.spec.disks[0].volume')
check "as a's QEMU: its disk becomes an image with the host file as data" \
    as_qemu sh -c "cat '$T/evil.qcow2' > '$STATE/volumes/$vol.qcow2'"
like "$(vmgr snapshot create a offline 2>&1)" 'external data file.*unsafe_image' \
    "an offline snapshot of it is refused before qemu-img opens it"
like "$(vmgr volume resize "$vol" 128M 2>&1)" 'external data file.*unsafe_image' "so is an offline resize"
out=$(vmgr backup create a 2>&1)
like "$out" 'backup_failed' "a backup of it fails: its storage daemon, as a's user, cannot open the host file"
is "$(vsum)" "$vsum0" "the host file is untouched"

# ---- a backup file naming a host file (as its QEMU could have written it)
qemu-img create -q -f qcow2 "$T/clean.qcow2" 64M
cat "$T/clean.qcow2" > "$STATE/volumes/$vol.qcow2"
check "a clean disk again: back it up" vmgr backup create a
bid=$(vmgr backup list a --json | jq '.[-1].id')
bdir=$(vmgr backup show "$bid" --json | jq -r .dir)
cp "$T/evil.qcow2" "$bdir/disk0.qcow2"
sum=$(sha256sum "$bdir/disk0.qcow2" | cut -c1-64)
jq --arg s "$sum" '.disks[0].sha256 = $s' "$bdir/manifest.json" >"$T/m.json" &&
    cp "$T/m.json" "$bdir/manifest.json"
like "$(vmgr backup restore "$bid" --as r 2>&1)" 'external data file' "restoring it is refused"
check "... and makes no VM r" sh -c "! '$VMGR_BIN' --state-dir '$STATE' info r"
like "$(vmgr backup verify "$bid" 2>&1)" 'external data file' "verify names the reason"
is "$(vsum)" "$vsum0" "the host file is untouched after all of it"
check "the FIFO was never opened" sh -c "[ ! -e '$T/fifo-was-read' ]"
kill $fifo_pid 2>/dev/null
vmgr stop b >/dev/null
done_testing
