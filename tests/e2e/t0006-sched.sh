#!/bin/sh
# The scheduler on a host that holds two tiny guests (vmgrd
# --capacity-memory 300M): four starts, two run and two queue in the order
# of each policy; a stop admits the next within a second; under rr with a
# short quantum the preemptible VMs take turns (saved and restored, memory
# being short) and the non-preemptible one is never preempted.
. "$(dirname "$0")/lib.sh"
start_daemon --capacity-memory 300M --capacity-cpus 2

like "$(vmgr host)" 'capacity: +2 cpus .*300 MiB' "host shows the declared capacity"
check "create j1" vmgr create j1 --image tiny --memory 128M --runtime 40m --priority 2 --preemptible
check "create j2" vmgr create j2 --image tiny --memory 128M --runtime 30m --priority 3 --preemptible
check "create j3" vmgr create j3 --image tiny --memory 128M --runtime 20m --priority 9
check "create j4" vmgr create j4 --image tiny --memory 128M --runtime 10m --priority 5 --preemptible

# Bad input.
like "$(vmgr create big --image tiny --memory 1G 2>&1)" 'big can never run here: it asks for 1024 MiB; the host has 300 MiB' \
    "a VM larger than the host is refused at create"
check "... and not created" sh -c "! '$VMGR_BIN' --state-dir '$STATE' info big"
like "$(api PATCH /v1/vms/j1 '{"policy": "greedy"}')" '^422 .*policy must be fixed, dynamic or hybrid' "unknown policy: 422"
like "$(api PATCH /v1/vms/j1 '{"priority": 0}')" '^422 .*priority must be between 1 and 10' "priority 0: 422"
like "$(api PATCH /v1/vms/j1 '{"priority": 11}')" '^422 ' "priority 11: 422"
like "$(api PATCH /v1/vms/j1 '{"weight": -1}')" '^422 .*weight' "negative weight: 422"
like "$(api PATCH /v1/vms/j1 '{"min_memory_mib": 512}')" '^422 .*min_memory_mib \(512\) is more than memory_mib \(128\)' \
    "min memory above memory: 422"
like "$(api PATCH /v1/vms/j1 '{"colour": 1}')" '^422 .*unknown_field.*colour' "unknown field: 422"
like "$(api PUT /v1/scheduler '{"policy": "lottery"}')" '^422 ' "unknown scheduler policy: 422"
vmgr create x --image tiny --priority 11 >/dev/null 2>&1; is $? 1 "create --priority 11 is refused"

check "start j1" vmgr start j1
check "start j2" vmgr start j2
out=$(vmgr start j3); rc=$?
is "$rc" 0 "start of a VM that does not fit exits 0"
like "$out" 'j3: queued \(position 1: needs 128 MiB, 44 MiB free\)' "... and says it is queued, where and why"
like "$(vmgr start j4)" 'j4: queued \(position 2: waiting behind j3\)' "j4 queues behind j3"
is "$(vmgr list --json | jq -r '[.[] | .state] | join(" ")')" "running running queued queued" \
    "two run, two are queued"

order() { vmgr queue --json | jq -r '[.[].name] | join(" ")'; }
is "$(order)" "j3 j4" "fcfs: arrival order"
check "switch to sjf" vmgr scheduler set --policy sjf
is "$(order)" "j4 j3" "sjf: shortest declared runtime first"
check "switch to priority" vmgr scheduler set --policy priority
is "$(order)" "j3 j4" "priority: highest priority first"
like "$(vmgr queue --json | jq -r '.[0].expected_admission')" '^20[0-9-]+T' \
    "the head of the queue has an expected admission time"
like "$(vmgr queue)" 'j3 .*needs 128 MiB' "vmgr queue shows the table"

t0=$(date +%s%N)
check "stop j1" vmgr stop j1
check "the head of the queue (j3) is admitted within a second" wait_until 1 has_state j3 running
diag "admitted after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
is "$(vmgr events j3 --json | jq -r '.[-1] | .event + " " + .actor')" "admit scheduler" \
    "the admission is an event"
is "$(state_of j4)" queued "j4 still waits"

# rr: j2 (preemptible) and j4 (preemptible) take turns; j3 never yields.
check "switch to rr with a 3 s quantum" vmgr scheduler set --policy rr --quantum 3s
sleep 22
ev=$(vmgr events --json --limit 100000)
n2s=$(echo "$ev" | jq '[.[] | select(.vm == "j2" and .event == "save")] | length')
n4a=$(echo "$ev" | jq '[.[] | select(.vm == "j4" and .event == "admit")] | length')
n4s=$(echo "$ev" | jq '[.[] | select(.vm == "j4" and .event == "save")] | length')
n2r=$(echo "$ev" | jq '[.[] | select(.vm == "j2" and .event == "admit" and .reason == "restored from saved state")] | length')
diag "j2 saved $n2s times, restored $n2r; j4 admitted $n4a, saved $n4s"
ok $(( ! (n2s >= 1 && n4a >= 1) )) "j2 was preempted (saved) and j4 got its turn"
ok $(( ! (n4s >= 1 && n2r >= 1) )) "then j4 was preempted and j2 restored: a rotation"
is "$(echo "$ev" | jq '[.[] | select(.vm == "j3" and (.event == "save" or .event == "preempt"))] | length')" 0 \
    "the non-preemptible j3 was never preempted"
like "$(echo "$ev" | jq -r '[.[] | select(.vm == "j2" and .event == "save")][0].reason')" 'preempted \(rr\): memory' \
    "the preemption says why"
check "back to fcfs" vmgr scheduler set --policy fcfs
wait_until 20 sh -c "'$VMGR_BIN' --state-dir '$STATE' list --json | jq -e '[.[] | select(.operation)] | length == 0'"
like "$(vmgr save j3 2>&1 && vmgr save j3 2>&1)" 'cannot save j3: it is saved' "saving a saved VM again: refused"
check "stop everything" sh -c "for v in j2 j3 j4; do '$VMGR_BIN' --state-dir '$STATE' stop \$v >/dev/null; done"
is "$(vmgr list --json | jq -r '[.[] | .state] | unique | join(" ")')" "created" "all back to created"
done_testing
