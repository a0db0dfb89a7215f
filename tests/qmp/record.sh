#!/bin/bash
# record.sh - record real QMP sessions with this machine's QEMU into
# tests/qmp/*.txt (format: tests/qmp/README.md), for test_qmp.c to replay.
# Run from the top of the tree; session "poweroff" boots the tiny guest, so
# `make guest` first.  Usage: tests/qmp/record.sh [OUTDIR]
set -eu

out=${1:-tests/qmp}
qemu=${QEMU:-qemu-system-x86_64}
guest=${GUEST:-build/images/tiny}
tmp=$(mktemp -d /tmp/vmgr-qmp-record.XXXXXX)
qpid=

cleanup() {
	if [ -n "$qpid" ]; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# The QMP side: connect, then run the steps given as arguments, writing each
# line QEMU sends as "S: ..." and each line sent as "C: ...".
#   cmd:JSON     send JSON with the next id (1, 2, ...) added after
#                "execute", as vmgr's client does; wait for its reply
#   event:NAME   wait for the event NAME
#   file:F:TEXT  wait until file F contains TEXT (the guest's serial log)
#   eof          wait for QEMU to close the connection; write "E:"
client() {
	python3 - "$@" <<'EOF'
import json, os, socket, sys, time

sock, outpath, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
s = socket.socket(socket.AF_UNIX)
for _ in range(100):
    try:
        s.connect(sock)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("record: cannot connect to " + sock)
s.settimeout(180)
out = open(outpath, "w")
buf = b""
eof = False
unclaimed = []  # events seen (maybe before a reply) that no step waited for

def line():
    global buf, eof
    while b"\n" not in buf:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            eof = True
            return None
        buf += d
    ln, buf = buf.split(b"\n", 1)
    # QEMU ends every line with CRLF; the format relies on it.
    if not ln.endswith(b"\r"):
        sys.exit("record: a line without CR: %r" % ln)
    ln = ln[:-1].decode()
    out.write("S: " + ln + "\n")
    m = json.loads(ln)
    if "event" in m:
        unclaimed.append(m["event"])
    return m

def until(pred, what):
    while True:
        m = line()
        if m is None:
            sys.exit("record: connection closed waiting for " + what)
        if pred(m):
            return m

until(lambda m: "QMP" in m, "the greeting")
next_id = 0
for st in steps:
    kind, _, arg = st.partition(":")
    if kind == "cmd":
        cmd = json.loads(arg)
        next_id += 1
        msg = {"execute": cmd.pop("execute"), "id": next_id}
        msg.update(cmd)
        text = json.dumps(msg, separators=(",", ":"))
        out.write("C: " + text + "\n")
        s.sendall(text.encode() + b"\n")
        until(lambda m, i=next_id: m.get("id") == i, "reply %d" % next_id)
    elif kind == "event":
        if arg not in unclaimed:
            until(lambda m: m.get("event") == arg, "event " + arg)
        unclaimed.remove(arg)
    elif kind == "file":
        path, _, text = arg.partition(":")
        deadline = time.time() + 180
        while time.time() < deadline:
            if os.path.exists(path) and text in open(path, errors="replace").read():
                break
            time.sleep(0.2)
        else:
            sys.exit("record: no %r in %s" % (text, path))
    elif kind == "eof":
        while line() is not None:
            pass
        out.write("E:\n")
    else:
        sys.exit("record: bad step " + st)
out.close()
EOF
}

# [MEM=MIB] session NAME "COMMENT" [--args QEMU-ARGS --] STEPS...: one QEMU,
# one file.
session() {
	local name=$1 comment=$2 args=()
	shift 2
	if [ "${1:-}" = "--args" ]; then
		shift
		while [ "$1" != "--" ]; do
			args+=("$1")
			shift
		done
		shift
	fi
	rm -f "$tmp/qmp.sock"
	"$qemu" -machine q35,accel=tcg -cpu max -m "${MEM:-64}" -nodefaults \
	    -display none -S -qmp "unix:$tmp/qmp.sock,server=on,wait=off" \
	    "${args[@]}" 2>"$tmp/qemu.err" &
	qpid=$!
	{
		echo "# $comment"
		echo "# Recorded by tests/qmp/record.sh with $("$qemu" --version | head -1)"
	} >"$out/$name.txt"
	client "$tmp/qmp.sock" "$tmp/$name.txt" "$@"
	cat "$tmp/$name.txt" >>"$out/$name.txt"
	kill "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
	qpid=
	echo "recorded $out/$name.txt"
}

mkdir -p "$out"

session status "query-status while paused (prelaunch), cont, stop, cont, query-status running" \
    'cmd:{"execute":"qmp_capabilities"}' \
    'cmd:{"execute":"query-status"}' \
    'cmd:{"execute":"cont"}' \
    'cmd:{"execute":"stop"}' \
    'cmd:{"execute":"cont"}' \
    'cmd:{"execute":"query-status"}'

session error "error replies: an unknown command, then an unknown argument" \
    'cmd:{"execute":"qmp_capabilities"}' \
    'cmd:{"execute":"no-such-command"}' \
    'cmd:{"execute":"query-status","arguments":{"bogus":1}}' \
    'cmd:{"execute":"query-status"}'

session quit "quit: its SHUTDOWN event (guest false), its reply, then EOF" \
    'cmd:{"execute":"qmp_capabilities"}' \
    'cmd:{"execute":"quit"}' \
    eof

# A booted guest: wait until no other QEMU runs (two cores, TCG).  The
# guest's initramfs does not fit in 64 MiB.
if [ ! -f "$guest/vmlinuz" ]; then
	echo "record: no $guest/vmlinuz; run make guest" >&2
	exit 1
fi
while pgrep -f qemu-system >/dev/null; do
	echo "record: another QEMU is running; waiting" >&2
	sleep 10
done
MEM=128 session poweroff "the tiny guest boots, then system_powerdown: POWERDOWN, SHUTDOWN (guest true), EOF" \
    --args -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" \
    -append "$(cat "$guest/cmdline")" -serial "file:$tmp/serial.log" -- \
    'cmd:{"execute":"qmp_capabilities"}' \
    'cmd:{"execute":"cont"}' \
    "file:$tmp/serial.log:GUEST-READY" \
    'cmd:{"execute":"system_powerdown"}' \
    event:POWERDOWN \
    event:SHUTDOWN \
    eof
