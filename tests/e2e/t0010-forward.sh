#!/bin/sh
# NAT with port forwards: a host port reaches a service in the guest; a
# second VM asking for the same host port is refused at create; a port
# another program holds is refused at start; bad forwards are refused.
. "$(dirname "$0")/lib.sh"
start_daemon
port=$((20000 + $$ % 20000))
busy=$((port + 1))

check "create web with a forward" vmgr create web --image tiny --nic nat --forward tcp:$port:80
like "$(vmgr info web)" "forward: +tcp 127.0.0.1:$port -> guest port 80" "info shows the forward"
check "start web" vmgr start web
check "boots" wait_until 60 console_has web GUEST-READY
printf 'mkdir -p /www; echo hello-from-guest > /www/index.html; httpd -p 80 -h /www; echo httpd-up-$((2+3))\n' |
    vmgr console web >/dev/null
check "the guest runs busybox httpd" wait_until 10 console_has web httpd-up-5
get() { curl -s --max-time 2 "http://127.0.0.1:$port/"; }
check "the host port reaches the guest's web server" \
    wait_until 30 sh -c "curl -s --max-time 2 http://127.0.0.1:$port/ | grep -q hello-from-guest"
is "$(get)" hello-from-guest "and serves the guest's page"

out=$(vmgr create web2 --image tiny --forward tcp:$port:8080 2>&1); rc=$?
is "$rc" 1 "a second VM asking for the same host port is refused"
like "$out" "host port tcp $port is already forwarded to VM web \\(409 port_in_use\\)" "... saying who has it"
check "... and nothing is created" sh -c "! '$VMGR_BIN' --state-dir '$STATE' info web2"
check "another protocol on the same port is fine" vmgr create web3 --image tiny --forward udp:$port:53

perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => '"$busy"', Listen => 1, ReuseAddr => 1) or die; sleep 60' &
lpid=$!
sleep 0.5
check "create web4 on a port a host program holds" vmgr create web4 --image tiny --forward tcp:$busy:80
out=$(vmgr start web4 2>&1); rc=$?
is "$rc" 1 "starting it is refused"
like "$out" "host port tcp 127.0.0.1:$busy is not free: Address already in use \\(409 port_in_use\\)" \
    "... saying the port is busy"
is "$(state_of web4)" created "web4 is still created"
kill $lpid

for bad in tcp:0:80 tcp:80 sctp:1:2 tcp:1.2.3:8080:80 tcp:65536:80; do
	vmgr create bad --image tiny --forward "$bad" >/dev/null 2>&1
	is $? 2 "--forward $bad is a usage error"
done
like "$(api POST /v1/vms '{"name": "bad", "image": "tiny", "nics": [{"network": "nat", "forwards": [{"proto": "tcp", "host_port": 99999, "guest_port": 80}]}]}')" \
    '^422 ' "a forward with a port out of range: 422"
like "$(api POST /v1/vms '{"name": "bad", "image": "tiny", "nics": [{"forwards": [{"host_port": 1, "guest_port": 2}, {"host_port": 1, "guest_port": 3}]}]}')" \
    '^422 .*forwarded twice' "the same host port twice in one spec: 422"
check "stop web" vmgr stop web
done_testing
