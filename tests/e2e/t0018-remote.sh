#!/bin/sh
# The TCP listener: off unless --listen is given; never without a token
# file, which must not be readable by other users; every request needs the
# bearer token (401 otherwise); HTTPS with --tls-cert/--tls-key.  The unix
# socket is unchanged.
. "$(dirname "$0")/lib.sh"
PORT=$((20000 + $$ % 20000))
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/token"
chmod 644 "$STATE/token"

out=$("$VMGRD_BIN" --state-dir "$STATE" --listen tcp:127.0.0.1:$PORT 2>&1); rc=$?
is "$rc" 1 "--listen without --token-file: vmgrd refuses to start"
like "$out" 'needs --token-file' "and says why"
out=$("$VMGRD_BIN" --state-dir "$STATE" --listen tcp:127.0.0.1:$PORT --token-file "$STATE/token" 2>&1); rc=$?
is "$rc" 1 "a token file other users can read: refused"
like "$out" 'readable or writable by every user.*chmod' "saying what to do"
chmod 600 "$STATE/token"
TOKEN=$(cat "$STATE/token")

start_daemon --listen tcp:127.0.0.1:$PORT --token-file "$STATE/token"
tcp() { curl -s -o "$STATE/.tcp" -w '%{http_code}' "$@"; }
is "$(tcp http://127.0.0.1:$PORT/v1/vms)" 401 "no token: 401"
like "$(cat "$STATE/.tcp")" 'unauthorized' "with an error object"
is "$(tcp -H 'Authorization: Bearer not-the-token-at-all' http://127.0.0.1:$PORT/v1/vms)" 401 "a wrong token: 401"
is "$(tcp -H "Authorization: Bearer ${TOKEN}x" http://127.0.0.1:$PORT/v1/vms)" 401 "the token with a byte more: 401"
is "$(tcp -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$PORT/v1/vms)" 200 "the token: 200"
is "$(tcp -H "Authorization: Bearer $TOKEN" -X POST --data '{"name":"t1","image":"tiny"}' http://127.0.0.1:$PORT/v1/vms)" 201 \
    "a create over TCP with the token: 201"
is "$(tcp -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$PORT/metrics)" 200 "Prometheus can scrape /metrics with it"
check "the unix socket needs no token" vmgr info t1
kill_daemon

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$STATE/key.pem" -out "$STATE/cert.pem" \
    -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
start_daemon --listen tcp:127.0.0.1:$PORT --token-file "$STATE/token" \
    --tls-cert "$STATE/cert.pem" --tls-key "$STATE/key.pem"
is "$(tcp --cacert "$STATE/cert.pem" -H "Authorization: Bearer $TOKEN" https://127.0.0.1:$PORT/v1/vms/t1)" 200 \
    "HTTPS with the token: 200"
is "$(tcp --cacert "$STATE/cert.pem" https://127.0.0.1:$PORT/v1/vms)" 401 "HTTPS without it: 401"
is "$(tcp http://127.0.0.1:$PORT/v1/vms)" 000 "plain HTTP to the TLS listener gets nothing"
check "vmgrd serves on after that" vmgr list
kill_daemon
out=$("$VMGRD_BIN" --state-dir "$STATE" --listen tcp:127.0.0.1:$PORT --token-file "$STATE/token" --tls-cert "$STATE/cert.pem" 2>&1); rc=$?
is "$rc" 1 "--tls-cert without --tls-key: refused"
start_daemon
done_testing
