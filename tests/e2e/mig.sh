# mig.sh - sourced by the migration tests: two vmgrd on this machine, A
# (lib.sh's, on the test's state dir) and B (STATE/b), each serving its
# API on a TCP port of 127.0.0.1 with TLS from a CA made here and a token
# of its own, and each the other's remote (hosta on B, hostb on A).
# restart_host a|b [CRASH_POINT] starts a host again, with VMGR_CRASH_AT
# set when a point is given.
. "$(dirname "$0")/lib.sh"
B=$STATE/b
mkdir -p "$B"
PORT_A=$((20000 + ($$ * 2 + 11) % 20000))
PORT_B=$((PORT_A + 1))

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=vmgr-test-ca \
    -keyout "$STATE/ca.key" -out "$STATE/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=vmgr-test-host \
    -keyout "$STATE/key.pem" -out "$STATE/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$STATE/san.ext"
openssl x509 -req -in "$STATE/req.pem" -CA "$STATE/ca.pem" \
    -CAkey "$STATE/ca.key" -CAcreateserial -days 2 -extfile "$STATE/san.ext" \
    -out "$STATE/cert.pem" 2>/dev/null
for h in a b; do
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/token-$h"
	chmod 600 "$STATE/token-$h"
done

vb() { "$VMGR_BIN" --state-dir "$B" "$@"; }
b_pid=
tls_args() {	# tls_args a|b
	_p=$PORT_A; [ "$1" = b ] && _p=$PORT_B
	echo "--listen tcp:127.0.0.1:$_p --token-file $STATE/token-$1" \
	    "--tls-cert $STATE/cert.pem --tls-key $STATE/key.pem"
}
start_a() {	# start_a [CRASH_POINT]
	VMGRD_WRAP=${1:+env VMGR_CRASH_AT=$1} start_daemon -v $(tls_args a)
}
start_b() {	# start_b [CRASH_POINT]
	env ${1:+VMGR_CRASH_AT=$1} "$VMGRD_BIN" --state-dir "$B" --foreground -v \
	    $(tls_args b) >>"$B/vmgrd.out" 2>&1 &
	b_pid=$!
	wait_until 30 vb host || { echo "Bail out! B did not start"; exit 1; }
}
stop_b() {	# stop_b [SIGNAL]
	[ -n "$b_pid" ] || return 0
	kill -"${1:-TERM}" "$b_pid" 2>/dev/null
	wait "$b_pid" 2>/dev/null
	b_pid=
}
restart_host() {	# restart_host a|b [CRASH_POINT]
	if [ "$1" = a ]; then kill_daemon TERM; start_a "$2"
	else stop_b TERM; start_b "$2"; fi
}
on() {	# on a|b vmgr-args...: vmgr on that host
	_h=$1; shift
	if [ "$_h" = a ]; then vmgr "$@"; else vb "$@"; fi
}
other() { [ "$1" = a ] && echo b || echo a; }
dir_of() { [ "$1" = a ] && echo "$STATE" || echo "$B"; }
# The QEMU processes of host h's state dir.
qemus_of() { pgrep -f "qemu-system.*$(dir_of "$1")/vm/" || true; }
b_qemus() { qemus_of b; }
a_qemus() { qemus_of a; }

start_a
start_b
vmgr remote add hostb "https://127.0.0.1:$PORT_B" --token-file "$STATE/token-b" \
    --cacert "$STATE/ca.pem" >/dev/null 2>&1 ||
    { echo "Bail out! A cannot add B as a remote"; exit 1; }
vb remote add hosta "https://127.0.0.1:$PORT_A" --token-file "$STATE/token-a" \
    --cacert "$STATE/ca.pem" >/dev/null 2>&1 ||
    { echo "Bail out! B cannot add A as a remote"; exit 1; }

# B goes with the test (a sanitizer's report in its log fails it, as
# lib.sh does for A's); then lib.sh's cleanup ends A and every QEMU left.
b_cleanup() {
	stop_b
	for p in $(b_qemus); do kill -9 "$p"; done
	if grep -q -E 'Sanitizer|runtime error:' "$B/vmgrd.out" 2>/dev/null; then
		ok 1 "B's vmgrd reported no memory errors"
		grep -A 20 -E 'Sanitizer|runtime error:' "$B/vmgrd.out" | sed 's/^/# /'
	fi
	awk -v d="$B/" 'index($2, d) == 1 {print $2}' /proc/mounts |
	    while read -r m; do umount -l "$m"; done
	cleanup
}
trap b_cleanup EXIT

# type_in h VM TEXT: a line typed into the guest's console on host h.
type_in() { printf '%s\n' "$3" | on "$1" console "$2" >/dev/null; }
console_on() { on "$1" console "$2" --log | grep -q -- "$3"; }	# h VM REGEX
# The last number printed after the marker MARK on VM's console on host h.
last_num() { on "$1" console "$2" --log | sed -n "s/.*$3\([0-9][0-9]*\).*/\1/p" | tail -1; }
# rc_of COMMAND...: its output and exit status on one line ("... rc=N").
rc_of() { _o=$("$@" 2>&1); _rc=$?; printf '%s rc=%s' "$_o" "$_rc" | tr '\n' ' '; }
