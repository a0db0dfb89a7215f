#!/bin/sh
# The QEMU guest agent in a real guest (the Debian 12 image, built once
# per build tree by t0024 or here): it connects during the boot; `vmgr
# info` and `vmgr list` show the OS, the hostname and the addresses the
# guest's own `ip addr` prints, and its file systems; `vmgr exec` gives a
# command's output and exit status, and a command past its deadline costs
# one timeout while the agent answers on; `vmgr set-password`; with the
# agent stopped every agent command is refused 409 and shutdown takes the
# ACPI button; with the button ignored by the guest (logind) shutdown goes
# through the agent in seconds, also after a vmgrd restart re-adopts the
# VM and finds its agent again.
#
# Two boots of one guest (about a minute each under TCG): the sanitizer
# pass leaves it out; test_qga drives the same client there, and t0023 the
# refusals without an agent.
. "$(dirname "$0")/lib.sh"
if grep -q fsanitize "$BUILD/.flags" 2>/dev/null; then
	echo "1..0 # SKIP the Debian guests are not booted under the sanitizers (test_qga and t0023 cover the code)"
	_done=1; _n=0
	trap - EXIT
	rm -rf "$STATE"
	exit 0
fi
export VMGR_IMAGE_CACHE="$BUILD/image-cache"
start_daemon

W=$STATE/work
mkdir -p "$W"
ssh-keygen -q -t ed25519 -N '' -C t0025 -f "$W/key"
P1=$((20000 + $$ % 5000))
gssh() {	# gssh COMMAND...: as admin, with the key given at create
	timeout 60 "$VMGR_BIN" --state-dir "$STATE" ssh web -- \
	    -o BatchMode=yes -i "$W/key" "$@" </dev/null
}
agent() { vmgr info web --json | jq -r .guest.agent; }
connected() { [ "$(agent)" = connected ]; }
disconnected() { [ "$(agent)" = disconnected ]; }
refreshed() {	# the agent's addresses include the lan NIC's
	vmgr info web --json | jq -e --arg ip "$1" \
	    '[.guest.interfaces[]?.addresses[]?.address] | index($ip)' >/dev/null
}

check "vmgr image build debian-12 (or its cached build)" \
    sh -c "'$VMGR_BIN' --state-dir '$STATE' image build debian-12 >'$W/build.log' 2>&1"
check "network create lan (isolated)" vmgr network create lan --subnet 10.78.0.0/24
check "create web --image debian-12 (the agent's channel is there by default)" \
    vmgr create web --image debian-12 --vcpus 2 --memory 1G --ssh-key "$W/key.pub" \
    --user admin --nic nat --forward "tcp:$P1:22" --nic lan
is "$(vmgr info web --json | jq -c .spec.agent)" '{"enabled":true,"freeze":true}' \
    "the spec says agent enabled, freeze on"
lanip=$(vmgr info web --json | jq -r '.spec.nics[1].ip')

# ---- boot 1: what the agent tells
t0=$(date +%s)
check "start web" vmgr start web
is "$(vmgr info web --json | jq -r .guest.agent)" disconnected \
    "right after start the agent is not there yet"
check "the agent connects during the boot" wait_until 300 connected
diag "agent connected $(( $(date +%s) - t0 )) s after start"
check "it has reported the addresses" wait_until 30 refreshed "$lanip"
info=$(vmgr info web --json)
is "$(echo "$info" | jq -r '.guest.os.id, .guest.os.version_id')" "debian
12" "info: the guest OS is Debian 12"
is "$(echo "$info" | jq -r .guest.hostname)" web "info: the hostname is web"
like "$(echo "$info" | jq -r .guest.agent_version)" '^[0-9]+\.[0-9]+' "info: the agent's version"
like "$(echo "$info" | jq -r .guest.connected_since)" '^20[0-9-]+T' "info: connected since when"
root_fs() {	# what the agent says of /: a few GiB, partly used
	vmgr info web --json | jq -e '.guest.filesystems[] | select(.mountpoint == "/") |
	    .total_bytes > 1000000000 and .used_bytes > 100000000' >/dev/null
}
wait_until 30 root_fs; rc=$?
ok $rc "the file systems' use: / is a few GiB, partly used"
[ $rc = 0 ] || fail_diag "filesystems: $(vmgr info web --json | jq -c .guest.filesystems)"
m=$(curl -s --unix-socket "$STATE/vmgrd.sock" http://vmgrd/metrics)
like "$m" 'vmgr_vm_guest_agent_connected\{vm="web"\} 1' "/metrics: the guest agent answers"
like "$m" 'vmgr_vm_guest_filesystem_size_bytes\{vm="web",mountpoint="/"\} [0-9]{9,}' \
    "/metrics: the size of the guest's /, as its agent says"
like "$m" 'vmgr_vm_guest_filesystem_used_bytes\{vm="web",mountpoint="/"\} [0-9]{8,}' \
    "/metrics: what is used of it"
check "promtool check metrics passes" sh -c "printf '%s\n' \"\$1\" | promtool check metrics" _ "$m"
like "$(vmgr stats web)" 'guest fs / \(ext4\): .* used of ' "vmgr stats shows the guest's file systems"
check "web answers on SSH" wait_until 120 sh -c "timeout 20 '$VMGR_BIN' --state-dir '$STATE' ssh web -- -o BatchMode=yes -i '$W/key' true </dev/null"
# The guest's own view, through ssh, against the agent's through vmgr.
theirs=$(gssh ip -4 -o addr show | awk '{print $4}' | sort | tr '\n' ' ')
ours=$(vmgr info web --json | jq -r '.guest.interfaces[].addresses[] | select(.family == "ipv4") | "\(.address)/\(.prefix)"' | sort | tr '\n' ' ')
is "$ours" "$theirs" "info's IPv4 addresses are the ones the guest's ip addr prints"
like "$ours" "$lanip/24" "among them the address vmgr assigned on lan"
first=$(vmgr info web --json | jq -r .ip)
like "$(vmgr list)" "^web +running .* $first\$" "vmgr list shows its IP ($first)"
like "$(vmgr info web)" "guest agent:  connected since" "vmgr info says the agent is connected"
like "$(vmgr info web)" "guest os:     Debian GNU/Linux 12" "vmgr info names the OS"

# ---- exec
out=$(vmgr exec web -- sh -c 'echo hi; echo oops >&2; exit 3' 2>"$W/err"); rc=$?
is "$out" hi "exec: the command's standard output"
is "$(cat "$W/err")" oops "exec: its standard error, apart"
is "$rc" 3 "exec: vmgr exits with the command's own status (3)"
is "$(printf 'line one\nline two\n' | vmgr exec web --stdin -- wc -l)" 2 "exec --stdin: input reaches the command"
is "$(vmgr exec web --env GREETING=bonjour -- sh -c 'echo $GREETING')" bonjour "exec --env"
is "$(vmgr exec web -- id -un)" root "exec runs as the agent's user"
vmgr exec web -- /no/such/program >/dev/null 2>"$W/err"; rc=$?
is "$rc" 125 "exec of a program that is not there: exit 125"
like "$(cat "$W/err")" "exec_failed|No such file|not found|Failed to execute" "and vmgr says why"
t1=$(date +%s)
vmgr exec web --timeout 2s -- sleep 30 >/dev/null 2>"$W/err"; rc=$?
is "$rc" 124 "exec past its --timeout: exit 124"
like "$(cat "$W/err")" "did not end within 2 s" "it says the command timed out"
ok "$([ $(( $(date +%s) - t1 )) -lt 10 ] && echo 0 || echo 1)" "it costs about the timeout, not the command's 30 s"
is "$(vmgr exec web -- echo still here)" "still here" "the agent answers right after"
is "$(vmgr info web --json | jq -r .guest.agent)" connected "and is still connected"
r=$(api POST /v1/vms/web/exec '{"argv":[]}'); like "$r" '^422 .*argv' "exec with an empty argv: 422"
r=$(api POST /v1/vms/web/exec '{"argv":["true"],"bogus":1}'); like "$r" '^422 .*bogus' "exec with an unknown field: 422"
r=$(api POST /v1/vms/web/exec '{"argv":["cat"],"input":"not base64!"}'); like "$r" '^422 .*base64' "exec with input that is not base64: 422"
r=$(api POST /v1/vms/web/exec '{"argv":["true"],"timeout_s":0}'); like "$r" '^422 ' "exec with timeout_s 0: 422"

# ---- set-password
printf 's3cret-pass\n' >"$W/pw"
check "set-password web admin --password-file" vmgr set-password web admin --password-file "$W/pw"
like "$(vmgr exec web -- passwd -S admin)" '^admin P ' "admin has a usable password now"
is "$(vmgr exec web -- python3 -W ignore -c 'import crypt
h = [l.split(":")[1] for l in open("/etc/shadow") if l.startswith("admin:")][0]
print(h[:3], crypt.crypt("s3cret-pass", h) == h)')" '$6$ True' \
    "the guest's shadow entry is that password, hashed with SHA-512"
r=$(api POST /v1/vms/web/password '{"user":"admin","password_hash":"nope"}'); like "$r" '^422 ' "a password_hash that is no crypt hash: 422"
r=$(api POST /v1/vms/web/password '{"user":"Bad User","password":"x"}'); like "$r" '^422 ' "a user that is no login name: 422"
r=$(api POST /v1/vms/web/password '{"user":"nosuchuser","password":"x"}'); like "$r" '^422 .*guest-set-user-password' "a user the guest does not have: the agent's error"

# ---- consistent snapshots and backups, while the guest writes all along
lines() { gssh sudo wc -l /root/log | cut -d' ' -f1; }
vmgr exec web -- sh -c 'nohup sh -c "i=0; while :; do i=\$((i+1)); echo line-\$i >>/root/log; sync; sleep 0.02; done" </dev/null >/dev/null 2>&1 &' >/dev/null
check "the guest appends numbered lines and syncs, all along" wait_until 30 sh -c "[ \$(timeout 20 '$VMGR_BIN' --state-dir '$STATE' exec web -- wc -l /root/log | cut -d' ' -f1) -gt 20 ]"
is "$(vmgr snapshot create web s1 --json | jq -r .consistency)" filesystem \
    "a disk snapshot of the running guest froze it: consistency filesystem"
check "snapshot delete web s1" vmgr snapshot delete web s1
check "backup create web (live, while it writes)" vmgr backup create web
bk=$(vmgr backup list web --json | jq '.[-1].id')
show=$(vmgr backup show "$bk" --json)
is "$(echo "$show" | jq -r .consistency)" filesystem "the backup's manifest says consistency filesystem"
like "$(echo "$show" | jq -r .consistency_reason)" "file systems frozen by the guest agent" "frozen by the agent"
like "$(vmgr backup show "$bk")" "consistent: filesystem" "vmgr backup show says so"
fms=$(echo "$show" | jq '.timing.freeze_ms')
diag "freeze window (freeze sent to thaw sent): $fms ms"
ok "$([ "$fms" -ge 0 ] && [ "$fms" -lt 10000 ] && echo 0 || echo 1)" "the freeze window ends within its 10 s bound"
is "$(vmgr info web --json | jq -r .guest.freeze)" thawed "the guest is thawed after it"
# Back to back: the next backup's freeze may meet the last one's thaw
# still on its way to the agent; it queues behind it.
c1=$(vmgr backup create web --incremental --json | jq -r .consistency)
c2=$(vmgr backup create web --incremental --json | jq -r .consistency)
is "$c1 $c2" "filesystem filesystem" "two incremental backups back to back are both consistent"
n1=$(lines); sleep 2; n2=$(lines)
ok "$([ "$n2" -gt "$n1" ] && echo 0 || echo 1)" "the guest writes on ($n1 -> $n2 lines)"
check "backup restore $bk --as copy" vmgr backup restore "$bk" --as copy
vol=$(vmgr volume show "$(vmgr info copy --json | jq -r '.spec.disks[0].volume')" --json | jq -r .path)
qemu-img convert -O raw "json:{\"driver\":\"raw\",\"offset\":$((135168 * 512)),\"file\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"$vol\"}}}" "$W/root.raw"
fsck.ext4 -f -n "$W/root.raw" >"$W/fsck.out" 2>&1; rc=$?
is "$rc" 0 "fsck finds the restored file system clean"
[ "$rc" = 0 ] || fail_diag "$(tail -5 "$W/fsck.out")"
debugfs -R 'cat /root/log' "$W/root.raw" 2>/dev/null >"$W/log"
is "$(tail -c 1 "$W/log" | od -An -c | tr -d ' ')" '\n' "the restored file ends on a whole line"
like "$(tail -1 "$W/log")" '^line-[0-9]+$' "its last line is whole ($(tail -1 "$W/log"), $(wc -l <"$W/log") lines)"
rm -f "$W/root.raw"

# ---- freezes by hand, bounded; one that outlives vmgrd, one the agent
r=$(api POST /v1/vms/web/freeze '{"timeout_s": 0}'); like "$r" '^422 ' "freeze with timeout_s 0: 422"
check "vmgr freeze --timeout 2s" vmgr freeze web --timeout 2s
is "$(vmgr info web --json | jq -r .guest.freeze)" frozen "info: frozen"
r=$(api POST /v1/vms/web/freeze '{}'); like "$r" '^409 .*in progress' "a second freeze meanwhile: 409"
check "the window's end thaws it by itself" wait_until 20 sh -c "'$VMGR_BIN' --state-dir '$STATE' info web --json | jq -e '.guest.freeze == \"thawed\"'"
check "freeze, then vmgr thaw" sh -c "'$VMGR_BIN' --state-dir '$STATE' freeze web && '$VMGR_BIN' --state-dir '$STATE' thaw web"
check "a write in the guest completes" vmgr exec web --timeout 20s -- sh -c 'echo after-thaw >/root/after && sync'
r=$(api POST /v1/vms/web/freeze '{"timeout_s": 600}')
like "$r" '^200 .*"frozen": *[1-9]' "freeze web for up to 10 minutes"
kill_daemon KILL
start_daemon
check "vmgrd killed while the guest was frozen, then restarted: it is thawed" \
    wait_until 60 sh -c "'$VMGR_BIN' --state-dir '$STATE' info web --json | jq -e '.guest.agent == \"connected\" and .guest.freeze == \"thawed\"'"
like "$(cat "$STATE/vmgrd.out")" "found frozen; thawing" "vmgrd found it frozen and thawed it"
check "a write in the guest completes" vmgr exec web --timeout 20s -- sh -c 'echo after-vmgrd >/root/after && sync'
vmgr exec web -- sh -c 'nohup sh -c "sleep 5; pkill -9 -x qemu-ga" </dev/null >/dev/null 2>&1 &' >/dev/null
gone=$(grep -c 'guest agent lost' "$STATE/vmgrd.out")
check "freeze web again (the agent is killed 5 s later, inside the guest)" vmgr freeze web --timeout 600s
check "the agent goes" wait_until 30 sh -c "[ \$(grep -c 'guest agent lost' '$STATE/vmgrd.out') -gt $gone ]"
check "systemd starts it again; vmgrd finds the guest frozen and thaws it" \
    wait_until 90 sh -c "'$VMGR_BIN' --state-dir '$STATE' info web --json | jq -e '.guest.agent == \"connected\" and .guest.freeze == \"thawed\"'"
check "a write in the guest completes" vmgr exec web --timeout 20s -- sh -c 'echo after-agent >/root/after && sync'

# ---- the agent stopped in the guest
vmgr exec web -- systemctl stop qemu-guest-agent >/dev/null 2>&1
check "with the agent stopped, vmgr sees it disconnected" wait_until 30 disconnected
like "$(vmgr info web --json | jq -r .guest.error)" "closed the agent's port" "and says why"
vmgr exec web -- true >/dev/null 2>"$W/err"; rc=$?
is "$rc" 125 "exec without an agent: exit 125"
like "$(cat "$W/err")" "no_agent|not connected" "refused: the agent is not connected"
r=$(api POST /v1/vms/web/exec '{"argv":["true"]}'); like "$r" '^409 .*no_agent' "the API says 409 no_agent"
r=$(api POST /v1/vms/web/shutdown '{"method":"agent"}'); like "$r" '^409 .*no_agent' "shutdown --method agent: 409 no_agent"
check "backup create web (no agent)" vmgr backup create web
bk=$(vmgr backup list web --json | jq '.[-1].id')
is "$(vmgr backup show "$bk" --json | jq -r .consistency)" crash "without the agent the backup is marked crash"
like "$(vmgr backup show "$bk" --json | jq -r .consistency_reason)" "not connected" "and says why"
n1=$(lines); sleep 2; n2=$(lines)
ok "$([ "$n2" -gt "$n1" ] && echo 0 || echo 1)" "no freeze is left behind: the guest writes on ($n1 -> $n2 lines)"
is "$(vmgr backup create web --no-freeze --json | jq -r .consistency_reason)" "freezing is off (no_freeze)" \
    "--no-freeze: crash-consistent, by request"
r=$(api POST /v1/vms/web/shutdown '{"method":"magic"}'); like "$r" '^422 .*method' "shutdown with an unknown method: 422"
check "shutdown web (no agent: the ACPI button)" vmgr shutdown web
is "$(vmgr info web --json | jq -r .state_reason)" "guest powered off (ACPI button)" "it went by the ACPI button"
is "$(vmgr info web --json | jq -r .guest.agent)" disconnected "a stopped VM's agent is disconnected"
is "$(vmgr info web --json | jq -r '.guest.interfaces | length')" 0 "and nothing of the guest's is shown"

# ---- boot 2: the button ignored, shutdown through the agent
check "start web again" vmgr start web
check "the agent connects again" wait_until 300 connected
vmgr exec web -- sh -c 'mkdir -p /etc/systemd/logind.conf.d &&
    printf "[Login]\nHandlePowerKey=ignore\n" >/etc/systemd/logind.conf.d/ignore-power.conf &&
    systemctl restart systemd-logind' >/dev/null 2>&1
check "logind ignores the power key now" sh -c "'$VMGR_BIN' --state-dir '$STATE' exec web -- \
    busctl get-property org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager HandlePowerKey | grep -q ignore"
kill_daemon KILL
start_daemon
check "after vmgrd was killed and restarted, the agent is found again" wait_until 30 connected
t1=$(date +%s)
check "shutdown web (through the agent)" vmgr shutdown web --timeout 100s
took=$(( $(date +%s) - t1 ))
diag "shutdown through the agent: $took s"
is "$(vmgr info web --json | jq -r .state_reason)" "guest powered off (guest agent)" \
    "it went through the agent, not a forced stop"
ok "$([ "$took" -lt 60 ] && echo 0 || echo 1)" "in seconds, not the timeout ($took s)"
like "$(vmgr events web --json | jq -r '.[] | select(.to == "stopping") | .reason' | tail -1)" \
    "guest agent shutdown" "the event log says which path ended it"

done_testing
