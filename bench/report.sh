#!/bin/sh
# bench/report.sh DIR: merge DIR/*.json of a bench/run.sh run into
# DIR/results.json and print the table (medians; ratios of medians).
set -eu
D=$1
f() { [ -f "$D/$1.json" ] && cat "$D/$1.json" || echo '{"ops": {}}'; }
jq -n --slurpfile meta "$D/meta.json" \
    --argjson floor "$(f floor)" --argjson cli "$(f vmgr-cli)" \
    --argjson api "$(f vmgr-api)" --argjson virsh "$(f libvirt)" \
    --argjson list100 "$(f scale-list)" --argjson par "$(f scale-par)" \
    --argjson scale "$([ -f "$D/scale.json" ] && cat "$D/scale.json" || echo null)" \
    --argjson sched "$([ -f "$D/schedbench.json" ] && cat "$D/schedbench.json" || echo null)" \
    --argjson rr "$([ -f "$D/rr.json" ] && cat "$D/rr.json" || echo null)" \
    --argjson mon "$([ -f "$D/monitor.json" ] && cat "$D/monitor.json" || echo null)" \
    --argjson m30 "$(f metrics30)" \
    --argjson backup "$([ -f "$D/backup.json" ] && cat "$D/backup.json" || echo null)" \
    --argjson load "$([ -f "$D/load.json" ] && cat "$D/load.json" || echo null)" \
    --argjson debian "$([ -f "$D/debian.json" ] && cat "$D/debian.json" || echo null)" \
    --argjson agent "$([ -f "$D/agent.json" ] && cat "$D/agent.json" || echo null)" \
    --argjson net "$([ -f "$D/net.json" ] && cat "$D/net.json" || echo null)" \
    '{meta: $meta[0].meta, floor: $floor.ops, vmgr_cli: $cli.ops,
      vmgr_api: $api.ops, libvirt: $virsh.ops,
      scale: ($scale + {list_100_cli: $list100.ops.list100, start_10_concurrent: $par.ops.all}),
      scheduler: {pure: $sched, rr_50: $rr},
      monitor: ($mon + {metrics_30_vms: $m30.ops.get}), backup: $backup, load: $load,
      debian: $debian, agent: $agent, net: $net}' \
    >"$D/results.json"

defs='
  def m(x): if x == null then "-" else (x.median_ms * 100 | round / 100 | tostring) end;
  def r(a; b): if a == null or b == null or b.median_ms == 0 then "-"
               else (a.median_ms / b.median_ms * 100 | round / 100 | tostring) + "x" end;'
jq -r "$defs"'
  "vmgr benchmark \(.meta.date): accel \(.meta.accel), QEMU \(.meta.qemu), \(.meta.host), \(.meta.iterations) iterations",
  "medians in ms (p90, min and max in results.json)", ""' "$D/results.json"
jq -r "$defs"'
  (["operation", "floor", "vmgr-CLI", "vmgr-API", "libvirt", "CLI/floor", "virsh/CLI"] | @tsv),
  (. as $r | ["start", "pause", "resume", "stop", "list", "info"][] as $op |
   [$op, m($r.floor[$op]), m($r.vmgr_cli[$op]), m($r.vmgr_api[$op]), m($r.libvirt[$op]),
    r($r.vmgr_cli[$op]; $r.floor[$op]), r($r.libvirt[$op]; $r.vmgr_cli[$op])] | @tsv)
' "$D/results.json" | column -t -s "$(printf '\t')"
jq -r "$defs"'
  "",
  (if .scale.rss_idle_kib then
    "scale: vmgr list with 100 VMs \(m(.scale.list_100_cli)) ms; 10 concurrent starts: \(m(.scale.start_10_concurrent)) ms until all run",
    "vmgrd RSS: idle \(.scale.rss_idle_kib) KiB; 100 defined \(.scale.rss_100_defined_kib) KiB (+\(.scale.per_defined_vm_kib) KiB/VM); 20 running \(.scale.rss_20_running_kib) KiB (+\(.scale.per_running_vm_kib) KiB/VM)",
    "vmgrd CPU with 20 running guests: \(.scale.cpu_pct_20_running)% of one core",
    "monitor: vmgrd CPU per 1 s sample with 1 / 10 / 30 running guests: \(.monitor.cpu_us_per_sample["1"]) / \(.monitor.cpu_us_per_sample["10"]) / \(.monitor.cpu_us_per_sample["30"]) us (\(.monitor.cpu_us_per_sample["30"] / 10000 * 100 | round / 100)% of one core at 30); GET /metrics with 30 VMs \(m(.monitor.metrics_30_vms)) ms",
    "scheduler, pure: \(.scheduler.pure.admit_decisions_per_s | floor) admission decisions/s with \(.scheduler.pure.running) running and \(.scheduler.pure.queued) queued; a whole pass \(m(.scheduler.pure.ops.pass_ms)) ms",
    "scheduler, rr among 50 VMs for 20 s: \(.scheduler.rr_50.passes) passes at \(.scheduler.rr_50.cpu_us_per_pass * 10 | round / 10) us CPU each, \(.scheduler.rr_50.preemptions) preemptions (save + restore), vmgrd CPU \(.scheduler.rr_50.daemon_cpu_pct * 100 | round / 100)% of one core"
   else "scale: skipped (--quick)" end)
' "$D/results.json"
jq -r '
  def r2(x): x * 100 | round / 100;
  if .backup then
    "backup of \(.backup.data_mib) MiB (warm cache, same filesystem): cp \(.backup.cp_ms) ms, cp + sync \(.backup.cp_sync_ms) ms, vmgr full backup \(.backup.full_ms) ms (copy \(.backup.copy_ms) + SHA-256 \(.backup.hash_ms))",
    "  full backup vs cp: \(r2(.backup.ratio_vs_cp))x end to end, \(r2(.backup.ratio_vs_cp_sync))x vs cp + sync, \(r2(.backup.copy_ratio_vs_cp))x for the copy alone (target 0.8)",
    "  incremental after a 5% change: \(.backup.incremental_ms) ms and \(.backup.incremental_bytes) bytes = \(r2(.backup.incremental_time_vs_full))x the full backup'"'"'s time, \(r2(.backup.incremental_size_vs_full))x its size"
  else empty end' "$D/results.json"
jq -r '
  def r2(x): x * 100 | round / 100;
  if .load then
    "load: \(.load.clients) clients, \(.load.vms) VMs, \(.load.seconds) s: \(.load.requests) requests (\(.load.requests_per_s | floor)/s), \(.load.failed) failed; races won by exactly one: pause \(.load.race.pause_winners), resume \(.load.race.resume_winners); vmgrd RSS \(.load.vmgrd_rss_kib | first) -> \(.load.vmgrd_rss_kib | last) KiB",
    (.load.ops | to_entries[] | "  \(.key): n \(.value.n), p50 \(r2(.value.p50_ms)) ms, p99 \(r2(.value.p99_ms)) ms, max \(r2(.value.max_ms)) ms")
  else empty end' "$D/results.json"
jq -r '
  def pct(a; b): if b == 0 then "-" else ((a - b) / b * 1000 | round / 10 | tostring) + "%" end;
  if .debian then
    "a real OS (Debian 12, 2 vCPUs, 1 GiB, TCG): vmgr create --image \(.debian.create_image_ms) ms, the clone \(.debian.create_image_bytes / 1024 | round) KiB",
    (.debian.boots[] | "  \(.firmware): start to login prompt \(.vmgr_login_ms) ms (floor \(.floor_login_ms), \(pct(.vmgr_login_ms; .floor_login_ms))), to SSH \(.vmgr_ssh_ms) ms (floor \(.floor_ssh_ms), \(pct(.vmgr_ssh_ms; .floor_ssh_ms)))")
  else empty end,
  if .net then
    "networks (2 Debian 12 guests, 1 vCPU, 512 MiB, TCG; iperf3 \(.net.seconds) s, medians of \(.net.rounds)): bridge \(.net.bridge.a_to_b_mbit)/\(.net.bridge.b_to_a_mbit) Mbit/s, rtt \(.net.bridge.rtt_ms) ms; isolated on the \(.net.switch // "user") switch \(.net.isolated.a_to_b_mbit)/\(.net.isolated.b_to_a_mbit) Mbit/s (\(.net.isolated.ratio_a_to_b * 100 | round)%/\(.net.isolated.ratio_b_to_a * 100 | round)% of the bridge; target 80%), rtt \(.net.isolated.rtt_ms) ms (\(.net.isolated.ratio_rtt * 100 | round)%; target under 150%)",
    "  vmgrd while saturated: its switch thread \(.net.isolated.switch_cpu_pct_per_gbit)% of a core per Gbit/s (vmgrd in all \(.net.isolated.vmgrd_cpu_pct_per_gbit)%); vmgr list p50 \(.net.isolated.list_p50_ms) ms, p99 \(.net.isolated.list_p99_ms) ms (target under 20)",
    (if .net.isolated_user then
      "  isolated on the user switch (vmgrd --switch user): \(.net.isolated_user.a_to_b_mbit)/\(.net.isolated_user.b_to_a_mbit) Mbit/s (\(.net.isolated_user.ratio_a_to_b * 100 | round)%/\(.net.isolated_user.ratio_b_to_a * 100 | round)% of the bridge in that run, \(.net.bridge_user_run.a_to_b_mbit)/\(.net.bridge_user_run.b_to_a_mbit)), rtt \(.net.isolated_user.rtt_ms) ms (\(.net.isolated_user.ratio_rtt * 100 | round)%); the switch thread \(.net.isolated_user.switch_cpu_pct_per_gbit)% of a core per Gbit/s; vmgr list p99 \(.net.isolated_user.list_p99_ms) ms"
    else empty end),
    (.net.nat[] | "  NAT \(.backend): guest->host \(.guest_to_host_mbit) Mbit/s, host->guest \(.host_to_guest_mbit) Mbit/s")
  else empty end,
  if .agent then
    "guest agent (Debian 12, TCG): guest-ping p50 \(.agent.ping.p50_ms * 100 | round / 100) ms, p99 \(.agent.ping.p99_ms * 100 | round / 100) ms (n \(.agent.ping.n)); freeze window of \(.agent.freeze_window.backups) backups under write load p50 \(.agent.freeze_window.p50_ms) ms, p99 \(.agent.freeze_window.p99_ms) ms, max \(.agent.freeze_window.max_ms) ms (target p99 < 1000)"
  else empty end' "$D/results.json"
