#!/bin/sh
# A live migration survives a crash of either vmgrd at every phase, a
# destination vmgrd killed mid-way, a destination QEMU killed mid-way and
# its streams cut: after restarts the VM runs on exactly one host, the
# other has no QEMU and no file of it, and `vmgr migrations` on both says
# what happened.  One guest serves every case: it moves back and forth
# between A and B (each case starts from where the last one left it), and
# its counter in RAM goes on through them all, never rebooted.
. "$(dirname "$0")/mig.sh"

check "create web (tiny, 128 MiB, a 256 MiB disk)" vmgr create web --image tiny --memory 128 --disk new:256M
check "start web on A" vmgr start web
check "web boots" wait_until 60 console_has web GUEST-READY
type_in a web 'i=0; while :; do i=$((i+1)); echo $i >/tmp/c; sleep 0.1; done &'
type_in a web 'echo U""P-$(cut -d. -f1 /proc/uptime)'
wait_until 10 console_has web 'UP-[0-9]'
up0=$(last_num a web UP-)
where=a
count=0
n=0

remote_of() { [ "$1" = a ] && echo hosta || echo hostb; }
pid_of() { [ "$1" = a ] && echo "$_daemon_pid" || echo "$b_pid"; }
# No migration of web is under way on either host, and web is not busy.
settled() {
	for h in a b; do
		on $h migrations --json | jq -e \
		    'map(select(.vm == "web" and (.state == "running" or .state == "aborting"))) | length == 0' \
		    >/dev/null || return 1
	done
	for h in a b; do
		if on $h info web >/dev/null 2>&1; then
			[ "$(on $h info web --json | jq -r '.operation // "none"')" = none ] ||
			    return 1
		fi
	done
}
# Wait for host h's vmgrd to die at its crash point, then start it again.
revive() {	# revive h
	_p=$(pid_of "$1")
	wait_until 60 sh -c "! kill -0 $_p 2>/dev/null"
	ok $? "$1's vmgrd died at its crash point"
	if [ "$1" = a ]; then wait "$_p" 2>/dev/null; _daemon_pid=; start_a
	else wait "$_p" 2>/dev/null; b_pid=; start_b; fi
}
# The VM runs on host h alone; the other has nothing of it; the records
# on both say how the migration ended (src_state, dst_state).
one_copy() {	# one_copy WHEN h src_state dst_state src
	_w=$1 _h=$2 _o=$(other "$2")
	is "$(on "$_h" info web --json 2>/dev/null | jq -r .state)" running "$_w: web runs on $_h"
	_pid=$(on "$_h" info web --json 2>/dev/null | jq -r '.pid // 0')
	ok "$(kill -0 "$_pid" 2>/dev/null; echo $?)" "$_w: its QEMU (pid $_pid) is alive"
	is "$(qemus_of "$_h" | wc -l)" 1 "$_w: one QEMU on $_h"
	is "$(on "$_o" info web >/dev/null 2>&1 && echo yes || echo no)" no "$_w: $_o has no web"
	is "$(qemus_of "$_o" | wc -l)" 0 "$_w: $_o runs no QEMU"
	is "$(ls "$(dir_of "$_o")/volumes" 2>/dev/null | wc -l)" 0 "$_w: $_o has no volume file"
	is "$(ls "$(dir_of "$_o")/vm" 2>/dev/null | wc -l)" 0 "$_w: $_o has no run dir"
	_s=$5 _d=$(other "$5")
	is "$(on "$_s" migrations --json | jq -r '.[-1] | .role + " " + .state')" "out $3" \
	    "$_w: the source's record says $3"
	_id=$(on "$_s" migrations --json | jq -r '.[-1].id')
	is "$(on "$_d" migrations --json | jq -r --arg id "$_id" \
	    'map(select(.id == $id)) | .[0] | if . then .role + " " + .state else "none" end')" \
	    "$([ "$4" = none ] && echo none || echo "in $4")" "$_w: the destination's record says ${4}"
	count=$((count + 1))
	type_in "$_h" web "echo P""$count-\$(cat /tmp/c)"
	wait_until 10 console_on "$_h" web "P$count-[0-9]"
	_c=$(last_num "$_h" web "P$count-")
	ok "$([ "${_c:-0}" -gt "$n" ]; echo $?)" "$_w: the guest answers on $_h, its counter goes on ($n, then $_c)"
	n=${_c:-0}
}

# crash_case ROLE POINT WHERE: the source's (src) or the destination's
# (dst) vmgrd dies at POINT; afterwards the VM must run on the source
# (src) or the destination (dst).
crash_case() {
	_src=$where _dst=$(other "$where")
	_victim=$_src
	[ "$1" = dst ] && _victim=$_dst
	restart_host "$_victim" "$2"
	on "$_src" migrate web --to "$(remote_of "$_dst")" --no-wait >/dev/null 2>&1
	revive "$_victim"
	wait_until 90 settled
	ok $? "$2: the migration settled after the restart"
	if [ "$3" = src ]; then
		_d=failed
		[ "$2" = migrate:out:preparing ] && _d=none	# never asked
		one_copy "$1 at $2" "$_src" failed "$_d" "$_src"
	else
		one_copy "$1 at $2" "$_dst" completed completed "$_src"
		where=$_dst
	fi
}

crash_case src migrate:out:preparing src
crash_case src migrate:out:disks src
crash_case src migrate:out:memory src
crash_case src migrate:out:switchover src
crash_case src migrate:out:before-handover src
crash_case src migrate:out:after-handover dst
crash_case src migrate:out:before-commit dst
crash_case src migrate:out:before-forget dst
crash_case dst migrate:in:disks-made src
crash_case dst migrate:in:prepared src
crash_case dst migrate:in:before-record dst
crash_case dst migrate:in:committed dst

# in_memory h: the migration out of h is copying memory.
in_memory() {
	on "$1" migrations --json | jq -e '.[-1] | .state == "running" and .phase == "memory"' >/dev/null
}

# ---- the destination's vmgrd dies mid-way (a kill -9): QEMU to QEMU
# goes on; the source commits once it is back.
_src=$where _dst=$(other "$where")
on "$_src" migrate web --to "$(remote_of "$_dst")" --bandwidth 16M --no-wait >/dev/null
wait_until 30 in_memory "$_src"
if [ "$_dst" = a ]; then kill_daemon KILL; else stop_b KILL; fi
sleep 3
if [ "$_dst" = a ]; then start_a; else start_b; fi
wait_until 90 settled
ok $? "destination vmgrd killed: the migration settled once it was back"
one_copy "destination vmgrd killed" "$_dst" completed completed "$_src"
where=$_dst

# ---- the destination's QEMU dies mid-way: the VM stays on the source
_src=$where _dst=$(other "$where")
on "$_src" migrate web --to "$(remote_of "$_dst")" --bandwidth 16M --no-wait >/dev/null
wait_until 30 in_memory "$_src"
for p in $(qemus_of "$_dst"); do kill -9 "$p"; done
wait_until 90 settled
ok $? "destination QEMU killed: the migration settled"
one_copy "destination QEMU killed" "$_src" failed failed "$_src"
like "$(on "$_src" migrations --json | jq -r '.[-1].error')" '.' "and the source says why: $(on "$_src" migrations --json | jq -r '.[-1].error')"

# ---- the streams between the QEMUs are cut: the VM stays on the source
on "$_src" migrate web --to "$(remote_of "$_dst")" --bandwidth 16M --no-wait >/dev/null
wait_until 30 in_memory "$_src"
qpid=$(qemus_of "$_src")
for sp in $(ss -tnpH state established | grep "pid=$qpid," | awk '{print $3}' | sed 's/.*://'); do
	ss -K state established src 127.0.0.1 sport = :"$sp" >/dev/null 2>&1
done
wait_until 90 settled
ok $? "streams cut: the migration settled"
one_copy "streams cut" "$_src" failed failed "$_src"

type_in "$where" web 'echo U""P2-$(cut -d. -f1 /proc/uptime)'
wait_until 10 console_on "$where" web 'UP2-[0-9]'
up1=$(last_num "$where" web UP2-)
ok "$([ "$up1" -gt "$up0" ]; echo $?)" "the guest never rebooted (uptime $up0 s, then $up1 s)"

done_testing
