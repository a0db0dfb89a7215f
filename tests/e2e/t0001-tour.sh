#!/bin/sh
# The whole tour of one guest, as a user runs it: create, start, console,
# pause/resume, shutdown by the guest, start again, stop, delete; events
# and --json along the way.
. "$(dirname "$0")/lib.sh"
start_daemon

out=$(vmgr host)
like "$out" 'accel: +(kvm|tcg)' "host shows the accelerator"
like "$out" 'qemu: +[0-9]+\.[0-9]+' "host shows the QEMU version"
like "$(vmgr host --json | jq -r '.cpus > 0 and .memory_mib > 0')" true \
    "host --json has cpus and memory"

check "create web from the built-in image" \
    vmgr create web --image tiny --vcpus 1 --memory 128M --disk new:1G --nic nat
j=$(vmgr info web --json)
is "$(echo "$j" | jq -r '[.name, .state, .spec.vcpus, .spec.memory_mib] | join(" ")')" \
    "web created 1 128" "info --json: name, state, spec"
is "$(echo "$j" | jq -r 'has("state_reason") and (has("pid") | not)')" true \
    "info --json has state_reason and no pid while stopped"
like "$(echo "$j" | jq -r '.spec.nics[0].mac')" '^52:54:00:' "the NIC got a MAC"
check "the disk volume exists" test -f "$STATE/volumes/web-disk0.qcow2"
like "$(vmgr list)" '^web +created +1 +128M +-' "list shows it as a table row"
is "$(vmgr list --json | jq -r '.[0].name + " " + .[0].state')" "web created" \
    "list --json is an array of VM objects"

out=$(vmgr start web)
ok $? "start returns success"
like "$out" 'web: running \(pid [0-9]+\)' "start reports running with a pid"
pid=$(vmgr info web --json | jq -r .pid)
check "QEMU runs with that pid" kill -0 "$pid"
is "$(qemu_pids | wc -l)" 1 "exactly one QEMU for the VM"
check "the guest prints GUEST-READY on its console" \
    wait_until 60 console_has web GUEST-READY
# The built-in guest runs no guest agent: its channel is there, unanswered.
j=$(vmgr info web --json)
is "$(echo "$j" | jq -r .guest.agent)" disconnected "info: the guest agent is not connected"
like "$(echo "$j" | jq -r .guest.error)" "waiting for the agent" "and it says it waits for it"
check "the agent's socket is there" test -S "$(echo "$j" | jq -r .runtime.dir)/agent.sock"
vmgr exec web -- true >/dev/null 2>"$STATE/err"; rc=$?
is "$rc" 125 "exec without an agent: exit 125"
like "$(cat "$STATE/err")" "not connected" "exec says the agent is not connected"
printf 'pw\n' >"$STATE/pw"
vmgr set-password web root --password-file "$STATE/pw" >/dev/null 2>&1
is "$?" 1 "set-password without an agent is refused"
r=$(api POST /v1/vms/web/shutdown '{"method":"agent"}')
like "$r" '^409 .*no_agent' "shutdown --method agent without an agent: 409 no_agent"
is "$(state_of web)" running "and the VM runs on"
rm -f "$STATE/err" "$STATE/pw"

out=$(printf 'echo hello-$((6*7))\n' | vmgr console web)
ok $? "console with piped stdin exits at end of input"
check "the guest answered the typed command" \
    wait_until 10 console_has web hello-42
check "the guest sees its virtio disk" sh -c \
    "printf 'test -b /dev/vda && echo disk-ok-\$((3*3))\n' | '$VMGR_BIN' --state-dir '$STATE' console web"
check "... and answers disk-ok" wait_until 10 console_has web disk-ok-9

out=$(vmgr pause web)
ok $? "pause succeeds"
is "$(state_of web)" paused "state is paused"
# Type into the console while paused, holding the connection open: a
# paused guest must not answer until it is resumed.
(printf 'echo tick-$((40+2))x\n'; sleep 4) | vmgr console web --linger 0 >/dev/null &
cpid=$!
sleep 1.5
vmgr console web --log | grep -q 'tick-42x'
ok $((! $?)) "a paused guest does not run the typed command"
cpu1=$(awk '{print $14+$15}' /proc/$pid/stat); sleep 1
cpu2=$(awk '{print $14+$15}' /proc/$pid/stat)
ok $(( cpu2 - cpu1 > 20 )) "a paused QEMU burns (almost) no CPU ($cpu1 -> $cpu2 ticks)"
check "resume succeeds" vmgr resume web
is "$(state_of web)" running "state is running again"
check "the resumed guest runs the command typed while paused" \
    wait_until 10 console_has web tick-42x
wait $cpid

out=$(vmgr shutdown web)
ok $? "shutdown returns success"
is "$(state_of web)" created "after shutdown the state is created"
is "$(vmgr info web --json | jq -r .state_reason)" "guest powered off (ACPI button)" \
    "the guest powered itself off (ACPI: it has no agent)"
check "QEMU is gone" wait_until 5 sh -c "! kill -0 $pid"
ev=$(vmgr events web --json | jq -r '.[] | .from + ">" + .to + ":" + .event' | tr '\n' ' ')
like "$ev" 'created>queued:start queued>running:admit running>paused:pause paused>running:resume running>stopping:shutdown stopping>created:guest_off' \
    "events record every transition in order"

# events --follow streams transitions as they happen.
vmgr events web --follow --since 1000000 >"$STATE/follow.out" 2>&1 &
fpid=$!
sleep 0.3
check "start again" vmgr start web
check "GUEST-READY again" wait_until 60 console_has web GUEST-READY
check "events --follow printed the new transitions" \
    wait_until 5 grep -Eq 'queued +-> running +admit' "$STATE/follow.out"
kill $fpid 2>/dev/null; wait $fpid 2>/dev/null

pid=$(vmgr info web --json | jq -r .pid)
t0=$(date +%s%N)
out=$(vmgr stop web)
ok $? "stop returns success"
t1=$(date +%s%N)
diag "stop took $(( (t1 - t0) / 1000000 )) ms"
is "$(state_of web)" created "after stop the state is created"
check "QEMU is gone at once" sh -c "! kill -0 $pid"
is "$(vmgr events web --json | jq -r '.[-1].event + " " + .[-1].reason')" "stop stopped" \
    "the last event is the stop"

check "console --log still shows the last run" console_has web GUEST-READY

check "create quiet --no-agent" vmgr create quiet --image tiny --no-agent
is "$(vmgr info quiet --json | jq -c .spec.agent)" '{"enabled":false,"freeze":true}' "its spec: agent disabled"
check "start quiet" vmgr start quiet
qpid=$(vmgr info quiet --json | jq -r .pid)
is "$(tr '\0' '\n' </proc/$qpid/cmdline | grep -c guest_agent)" 0 "its QEMU has no agent channel"
is "$(vmgr info quiet --json | jq -r .guest.agent)" disabled "info: the guest agent is disabled"
r=$(api POST /v1/vms/quiet/exec '{"argv":["true"]}')
like "$r" '^409 .*no_agent.*agent.enabled is false' "exec on it: 409 no_agent, saying why"
check "stop and delete quiet" sh -c "'$VMGR_BIN' --state-dir '$STATE' stop quiet && '$VMGR_BIN' --state-dir '$STATE' delete quiet"
out=$(vmgr delete web)
ok $? "delete succeeds"
vmgr info web >/dev/null 2>&1
is $? 1 "the VM is gone (info exits 1)"
check "its volume is gone" test ! -e "$STATE/volumes/web-disk0.qcow2"
left=$(cd "$STATE" && find . -mindepth 1 | grep -v -E '^\./(vmgr\.db(-wal|-shm)?|vmgrd\.(sock|lock|out)|host_id|\.body|\.reserve|follow\.out|vm|volumes|net)$' || true)
is "$left" "" "delete leaves no files behind in the state dir"
done_testing
