#!/bin/sh
# rr when CPU is what is short (vmgrd --capacity-cpus 1 --cpu-ratio 1: one
# fixed vCPU): preemptible VMs are paused and resumed in turn rather than
# saved, and a VM paused by the scheduler is not the user's to save, pause
# or resume.
. "$(dirname "$0")/lib.sh"
start_daemon --capacity-cpus 1 --cpu-ratio 1 --policy rr --quantum 2s

check "create c1" vmgr create c1 --image tiny --preemptible
check "create c2" vmgr create c2 --image tiny --preemptible
check "start c1" vmgr start c1
like "$(vmgr start c2)" 'c2: queued \(position 1: needs 1 vCPUs, 0 free\)' \
    "c2 queues for lack of CPU"
check "c2 gets its turn: c1 is paused by the scheduler" wait_until 10 has_state c1 paused
is "$(vmgr info c1 --json | jq -r .state_reason)" "preempted (rr): CPU" "the reason says CPU"
check "and c2 runs (admitted as c1 yields)" wait_until 5 has_state c2 running
like "$(vmgr save c1 2>&1)" 'paused by the scheduler' "saving a VM the scheduler paused is refused"
like "$(vmgr save c1 2>&1)" 'paused by the scheduler' "... every time"
like "$(vmgr resume c1 2>&1)" 'resumes on its turn' "so is resuming it by hand"
check "then c1 again: c2 paused" wait_until 10 has_state c2 paused
check "c1 runs again" wait_until 5 has_state c1 running
ev=$(vmgr events c1 --json | jq -r '[.[] | .event] | join(" ")')
like "$ev" 'preempt resume' "c1 was preempted and resumed (no save, no QEMU restart)"
pid1=$(vmgr info c1 --json | jq .pid)
is "$(vmgr events c1 --json | jq '[.[] | select(.event == "admit")] | length')" 1 \
    "c1 was admitted once: the same QEMU all along (pid $pid1)"
check "stop c1" vmgr stop c1
check "stop c2" vmgr stop c2
done_testing
