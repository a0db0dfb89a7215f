#!/bin/sh
# The graphical console: a VM that boots through firmware gets a VGA
# screen by default, the built-in guest only with --vnc; `vmgr screenshot`
# writes a PNG of the right size that is not one colour; `vmgr vnc`
# serves the display on 127.0.0.1 and a client completes the RFB
# handshake (version, security None, ServerInit with the screen's size);
# a VM without a screen, or not running, is refused.
. "$(dirname "$0")/lib.sh"
start_daemon

# png_info FILE: "WIDTH HEIGHT DISTINCT": the distinct byte values of its
# pixel data (after inflating, without the rows' filter bytes)
png_info() {
	perl -MCompress::Zlib -e '
	    local $/; open my $f, "<:raw", $ARGV[0] or die; my $d = <$f>;
	    die "not a PNG\n" unless substr($d, 0, 8) eq "\x89PNG\r\n\x1a\n";
	    my ($w, $h) = unpack("NN", substr($d, 16, 8));
	    my ($p, $z) = (8, "");
	    while ($p < length $d) {
	        my ($n, $t) = unpack("Na4", substr($d, $p, 8));
	        $z .= substr($d, $p + 8, $n) if $t eq "IDAT";
	        $p += 12 + $n;
	    }
	    my $raw = uncompress($z) // die "bad IDAT\n";
	    # Each row: a filter byte, then RGB (QEMU writes 8-bit RGB).  A
	    # screen of one colour leaves at most two values besides them.
	    my %seen; my $row = 1 + 3 * $w;
	    for (my $i = 0; $i + $row <= length $raw; $i += $row) {
	        $seen{$_}++ for unpack("C*", substr($raw, $i + 1, $row - 1));
	    }
	    print "$w $h ", scalar(keys %seen), "\n";' "$1"
}
# rfb PORT: the RFB handshake as a viewer does it; prints "VERSION WxH".
rfb() {
	perl -MIO::Socket::INET -e '
	    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ARGV[0]",
	        Timeout => 10) or die "connect: $!\n";
	    sub rd { my $n = shift; my $b = ""; while (length $b < $n) {
	        my $r = sysread($s, $b, $n - length $b, length $b);
	        die "short read\n" unless $r } $b }
	    my $v = rd(12); chomp(my $ver = $v);
	    syswrite $s, "RFB 003.008\n";
	    my $n = unpack("C", rd(1)); my @types = unpack("C*", rd($n));
	    die "no None security: @types\n" unless grep { $_ == 1 } @types;
	    syswrite $s, pack("C", 1);
	    die "security refused\n" if unpack("N", rd(4)) != 0;
	    syswrite $s, pack("C", 1);		# ClientInit, shared
	    my ($w, $h) = unpack("nn", rd(4));
	    print "$ver ${w}x$h\n";' "$1"
}

check "create t --image tiny --vnc" vmgr create t --image tiny --vnc
is "$(vmgr info t --json | jq .spec.vnc)" true "its spec has vnc"
check "create plain --image tiny" vmgr create plain --image tiny
is "$(vmgr info plain --json | jq .spec.vnc)" false "the built-in guest has no screen by default"
: >"$STATE/empty.iso"
check "create fw --disk new:64M --cdrom (boots through SeaBIOS)" \
    vmgr create fw --disk new:64M --cdrom "$STATE/empty.iso"
is "$(vmgr info fw --json | jq .spec.vnc)" true "a VM that boots through firmware gets a screen by default"
r=$(api POST /v1/vms '{"name":"bad","image":"tiny","vnc":"yes"}')
like "$r" '^422 .*vnc' "vnc that is not a boolean: 422"
vmgr screenshot t "$STATE/no.png" >/dev/null 2>"$STATE/err"
like "$(cat "$STATE/err")" "409 invalid_state" "a screenshot of a stopped VM: 409"

check "start t" vmgr start t
check "t boots" wait_until 60 console_has t GUEST-READY
sock=$(vmgr info t --json | jq -r .runtime.vnc_socket)
check "its VNC socket is vmgrd's, in the run dir" test -S "$sock"
is "$(stat -c %a "$sock")" 600 "and only its owner may use it"
is "$(tr '\0' '\n' </proc/$(vmgr info t --json | jq .pid)/cmdline | grep -A1 -x -- -vnc | tail -1)" none \
    "QEMU's VNC display listens nowhere itself"
out=$(vmgr screenshot t "$STATE/t.png")
like "$out" "720x400 PNG" "vmgr screenshot says what it wrote"
set -- $(png_info "$STATE/t.png")
is "$1x$2" 720x400 "the PNG is the screen's size (VGA text mode)"
ok "$([ "${3:-0}" -gt 2 ] && echo 0 || echo 1)" "and not all one colour ($3 distinct bytes)"
api GET /v1/vms/t/screenshot >/dev/null
is "$(head -c 4 "$STATE/.body" | od -An -c | tr -d ' ')" '211PNG' "GET /v1/vms/t/screenshot is the PNG itself"

"$VMGR_BIN" --state-dir "$STATE" vnc t >"$STATE/vnc.out" 2>&1 &
vpid=$!
check "vmgr vnc prints the port it listens on" wait_until 10 grep -q '127.0.0.1:[0-9]' "$STATE/vnc.out"
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$STATE/vnc.out")
is "$(rfb "$port")" "RFB 003.008 720x400" "a VNC client completes the handshake: RFB 3.8, the 720x400 screen"
is "$(rfb "$port")" "RFB 003.008 720x400" "and a second one too"
kill $vpid 2>/dev/null; wait $vpid 2>/dev/null

check "start fw" vmgr start fw
check "SeaBIOS draws on fw's screen" wait_until 30 sh -c \
    "'$VMGR_BIN' --state-dir '$STATE' screenshot fw '$STATE/fw.png' >/dev/null"
set -- $(png_info "$STATE/fw.png")
ok "$([ "${3:-0}" -gt 2 ] && echo 0 || echo 1)" "fw's screen is not blank ($1x$2, $3 distinct bytes)"

check "start plain" vmgr start plain
vmgr screenshot plain "$STATE/p.png" >/dev/null 2>"$STATE/err"; rc=$?
is "$rc" 1 "a screenshot of a VM without a screen fails"
like "$(cat "$STATE/err")" "409 no_display" "409 no_display"
vmgr vnc plain >/dev/null 2>"$STATE/err"; rc=$?
is "$rc" 1 "vmgr vnc of it fails"
like "$(cat "$STATE/err")" "no graphical console" "and says it has no graphical console"
for v in t fw plain; do vmgr stop "$v" >/dev/null; done
check "the VNC socket goes with QEMU" test ! -e "$sock"
done_testing
