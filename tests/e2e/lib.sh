# lib.sh - shared by the end-to-end tests: TAP output, a private vmgrd on
# a temporary state dir, and waiting helpers.  Each test script sources it,
# calls `start_daemon`, runs checks against the real vmgrd, vmgr and QEMU
# guests, and ends with `done_testing`.  Everything it starts is ended on
# exit; VMGR_KEEP=1 keeps the state dir for a look.

BUILD=${VMGR_BUILD:-$(cd "$(dirname "$0")/../../build" && pwd)}
VMGR_BIN=$BUILD/vmgr
VMGRD_BIN=$BUILD/vmgrd
STATE=$(mktemp -d /tmp/vmgr-e2e.XXXXXX)
_ck=$STATE.check	# what a check's command said, outside the state dir
export VMGR_STATE_DIR=$STATE
_n=0
_failed=0
_daemon_pid=

_done=0
# The plan is printed at the end (TAP allows it); a script that stops
# before done_testing gets a failing test for it.
done_testing() { _done=1; }
diag() { echo "# $*"; }

# A failure is also told on stderr, which prove shows without -v, and
# kept in $BUILD/test-failures.log, which `make test` prints last: a CI
# log's tail then says what failed and why.
_flog=$BUILD/test-failures.log
tell() { echo "$(basename "$0"): $*" | tee -a "$_flog" >&2; }
fail_diag() { echo "# $*"; tell "# $*"; }

# todo REASON ... todo_end: the checks between are TAP TODO (a known
# failure outside vmgr, said with its reason): they run and are shown,
# and a failure among them does not fail the file.
_todo=
todo() { _todo=$*; }
todo_end() { _todo=; }

ok() {	# ok COND_EXIT_STATUS DESCRIPTION
	_n=$((_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $_n - $2${_todo:+ # TODO $_todo}"
	elif [ -n "$_todo" ]; then
		echo "not ok $_n - $2 # TODO $_todo"
	else
		echo "not ok $_n - $2"
		tell "not ok $_n - $2"
		_failed=$((_failed + 1))
	fi
}

check() {	# check DESCRIPTION COMMAND...: ok when the command succeeds
	_d=$1; shift
	"$@" >"$_ck" 2>&1
	_rc=$?
	ok $_rc "$_d"
	[ $_rc -eq 0 ] || tail -5 "$_ck" |
	    while IFS= read -r _l; do fail_diag "  exit $_rc: $_l"; done
	return 0
}

is() {	# is GOT EXPECTED DESCRIPTION
	if [ "$1" = "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		fail_diag "got:      '$1'"
		fail_diag "expected: '$2'"
	fi
}

like() {	# like GOT REGEX DESCRIPTION
	if printf '%s' "$1" | grep -Eq -- "$2"; then
		ok 0 "$3"
	else
		ok 1 "$3"
		fail_diag "got:      '$(printf '%s' "$1" | head -c 600)'"
		fail_diag "expected to match: '$2'"
	fi
}

vmgr() { "$VMGR_BIN" --state-dir "$STATE" "$@"; }

# api METHOD PATH [BODY]: prints "STATUS BODY" of a raw API call.
api() {
	if [ $# -ge 3 ]; then
		curl -s -o "${API_BODY:-$STATE/.body}" -w '%{http_code}' --unix-socket \
		    "$STATE/vmgrd.sock" -X "$1" -H 'Content-Type: application/json' \
		    --data-binary "$3" "http://vmgrd$2"
	else
		curl -s -o "${API_BODY:-$STATE/.body}" -w '%{http_code}' --unix-socket \
		    "$STATE/vmgrd.sock" -X "$1" "http://vmgrd$2"
	fi
	printf ' '
	cat "${API_BODY:-$STATE/.body}"
}


# VMGRD_WRAP runs vmgrd under a wrapper: `ip netns exec NS` for tests
# that make their own network namespace.
start_daemon() {
	$VMGRD_WRAP "$VMGRD_BIN" --state-dir "$STATE" --foreground "$@" \
	    >>"$STATE/vmgrd.out" 2>&1 &
	_daemon_pid=$!
	for _i in $(seq 1 600); do	# 30 s: a first start may probe KVM
		vmgr host >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "Bail out! vmgrd did not start: $(tail -5 "$STATE/vmgrd.out")"
	exit 1
}

kill_daemon() {	# kill_daemon [SIGNAL]
	[ -n "$_daemon_pid" ] || return 0
	kill -"${1:-TERM}" "$_daemon_pid" 2>/dev/null
	wait "$_daemon_pid" 2>/dev/null
	_daemon_pid=
}

# The QEMU pids that belong to this test's state dir.
qemu_pids() { pgrep -f "qemu-(system|storage-daemon).*$STATE/" || true; }

# wait_until TIMEOUT_S COMMAND...: poll every 0.1 s.
wait_until() {
	_t=$1; shift
	_end=$(( $(date +%s) + _t ))
	while [ "$(date +%s)" -le "$_end" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

state_of() { vmgr info "$1" --json 2>/dev/null | jq -r .state; }
has_state() { [ "$(state_of "$1")" = "$2" ]; }
console_has() { vmgr console "$1" --log | grep -q -- "$2"; }

# invariants WHEN: after a crash and restart, nothing is lost or half-made:
# each VM's state agrees with its QEMU, no QEMU or storage daemon runs
# without a running VM, the volume files are exactly the volume list, no
# partial backup is left, and every backup in the catalog verifies.
invariants() {	# invariants WHEN
	_up=0 _bad=
	for v in $(vmgr list --json | jq -r '.[].name'); do
		_s=$(state_of "$v")
		_p=$(vmgr info "$v" --json | jq -r '.pid // 0')
		case $_s in
		running|paused|stopping)
			_up=$((_up + 1))
			kill -0 "$_p" 2>/dev/null || _bad="$_bad $v:$_s-without-QEMU" ;;
		*)	[ "$_p" = 0 ] || _bad="$_bad $v:$_s-with-pid-$_p" ;;
		esac
	done
	is "$_bad" "" "$1: every VM's state agrees with its QEMU"
	is "$(qemu_pids | wc -l)" "$_up" "$1: no QEMU or storage daemon without a running VM"
	is "$(ls "$STATE/volumes" | sort | tr '\n' ' ')" \
	    "$(vmgr volume list --json | jq -r '.[].name + ".qcow2"' | sort | tr '\n' ' ')" \
	    "$1: the volume files are the volume list, nothing partial"
	is "$(find "$STATE/backups" -name '*.partial' 2>/dev/null | wc -l)" 0 \
	    "$1: no partial backup is left"
	_nv=0
	for id in $(vmgr backup list --json | jq '.[].id'); do
		_out=$(vmgr backup verify "$id" 2>&1) || {
			_nv=$((_nv + 1))
			fail_diag "$1: backup $id: $(printf '%s' "$_out" | head -5 | tr '\n' ' ')"
		}
	done
	is "$_nv" 0 "$1: every backup in the catalog verifies"
}

cleanup() {
	if [ "$_done" != 1 ]; then
		ok 1 "the script ran to its end"
	fi
	# A clean exit lets a sanitizer build report leaks too.
	kill_daemon TERM
	if grep -q -E 'Sanitizer|runtime error:' "$STATE/vmgrd.out" 2>/dev/null; then
		ok 1 "vmgrd reported no memory errors"
		grep -A 20 -E 'Sanitizer|runtime error:' "$STATE/vmgrd.out" | sed 's/^/# /'
	fi
	echo "1..$_n"
	rm -f "$_ck"
	for p in $(qemu_pids); do kill -9 "$p" 2>/dev/null; done
	for p in $(pgrep -f "dnsmasq.*$STATE/net/" || true); do kill "$p" 2>/dev/null; done
	# Filesystems a test mounted inside its state dir.
	awk -v d="$STATE/" 'index($2, d) == 1 {print $2}' /proc/mounts |
	    while read -r m; do umount -l "$m"; done
	if [ "${VMGR_KEEP:-0}" = 1 ] || [ "$_failed" -gt 0 ]; then
		diag "state dir: $STATE (vmgrd log: $STATE/vmgrd.out)"
		# What went wrong is often long before the end: the warnings
		# and every QEMU that ended, then the log's last lines.
		[ "$_failed" -gt 0 ] && [ -f "$STATE/vmgrd.out" ] && {
			grep -E 'Z (warn|error|crit) |exited|killed|signal' \
			    "$STATE/vmgrd.out" | head -40
			echo "..."
			tail -20 "$STATE/vmgrd.out"
		} | sed "s|^|# $(basename "$0"): vmgrd: |" | tee -a "$_flog" >&2
	else
		rm -rf "$STATE"
	fi
}
trap cleanup EXIT
