#!/bin/sh
# Remotes: vmgrd A knows vmgrd B (a TCP listener with TLS, its
# certificate from a CA made here) by name.  `vmgr remote add` checks the
# token and the certificate before keeping it; the token is kept in A's
# state dir (0600) and never printed; `vmgr --remote b ...` runs commands
# on B through A.  Wrong tokens, wrong CAs, a certificate for another
# name, bad URLs and unknown remotes are refused, saying why.
. "$(dirname "$0")/lib.sh"
B=$STATE/b
mkdir -p "$B"
PORT=$((20000 + $$ % 20000))

# ---- a CA, and B's certificate for 127.0.0.1 signed by it
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=vmgr-test-ca \
    -keyout "$STATE/ca.key" -out "$STATE/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=hostb -keyout "$B/key.pem" \
    -out "$B/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$STATE/san.ext"
openssl x509 -req -in "$B/req.pem" -CA "$STATE/ca.pem" -CAkey "$STATE/ca.key" \
    -CAcreateserial -days 2 -extfile "$STATE/san.ext" -out "$B/cert.pem" 2>/dev/null
# Another CA, which signed nothing of B's.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca \
    -keyout "$STATE/other.key" -out "$STATE/other.pem" 2>/dev/null
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$B/token"
chmod 600 "$B/token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/wrong-token"

"$VMGRD_BIN" --state-dir "$B" --foreground --listen tcp:127.0.0.1:$PORT \
    --token-file "$B/token" --tls-cert "$B/cert.pem" --tls-key "$B/key.pem" \
    >>"$B/vmgrd.out" 2>&1 &
b_pid=$!
trap 'kill $b_pid 2>/dev/null; wait $b_pid 2>/dev/null; cleanup' EXIT
vb() { "$VMGR_BIN" --state-dir "$B" "$@"; }
wait_until 30 vb host >/dev/null
start_daemon
URL=https://127.0.0.1:$PORT

# ---- bad input
like "$(vmgr remote add hostb "$URL" 2>&1)" 'needs --token-file' "add without a token file: refused"
like "$(vmgr remote add hostb ftp://127.0.0.1 --token-file "$B/token" 2>&1)" 'https://HOST\[:PORT\] or http://' "a URL that is not http(s): refused"
like "$(vmgr remote add hostb "$URL/v1/vms" --token-file "$B/token" 2>&1)" 'not a path' "a URL with a path: refused"
like "$(vmgr remote add hostb https://127.0.0.1:99999 --token-file "$B/token" 2>&1)" 'bad port' "a bad port: refused"
like "$(vmgr remote add ../x "$URL" --token-file "$B/token" 2>&1)" 'not a valid' "a bad remote name: refused"
like "$(vmgr remote add hostb "$URL" --token-file "$STATE/nope" 2>&1)" 'nope: No such file' "a missing token file: said so"
like "$(api POST /v1/remotes '{"name": "x", "url": "https://127.0.0.1:1", "token": "short"}')" '^422 .*token: 16 to 512' \
    "a short token: 422"
like "$(api POST /v1/remotes '{"name": "x", "url": "https://127.0.0.1:1", "token": "aaaaaaaaaaaaaaaaaaaa", "color": 1}')" '^400 |^422 ' \
    "an unknown field: refused"
like "$(api POST /v1/remotes '{"name": "x", "url": "http://127.0.0.1:1", "token": "aaaaaaaaaaaaaaaaaaaa", "cacert": "x"}')" '^422 .*http://' \
    "a CA for a plain-HTTP URL: 422"
like "$(vmgr remote add hostb "$URL" --token-file "$B/token" --cacert "$B/token" 2>&1)" 'no PEM certificate' "a CA file that is not PEM: refused"
like "$(vmgr remote add hostb "$URL" --token-file "$STATE/wrong-token" --cacert "$STATE/ca.pem" 2>&1)" 'refused the token \(401\)' \
    "the wrong token: refused by B, and said so"
like "$(vmgr remote add hostb "$URL" --token-file "$B/token" --cacert "$STATE/other.pem" 2>&1)" 'does not verify' \
    "a certificate from another CA: refused"
like "$(vmgr remote add hostb "$URL" --token-file "$B/token" 2>&1)" 'does not verify' \
    "... and without the CA (the system's do not know it)"
like "$(vmgr remote add hostb https://localhost:$PORT --token-file "$B/token" --cacert "$STATE/ca.pem" 2>&1)" 'does not verify' \
    "a certificate that does not name the URL's host: refused"
like "$(vmgr remote add hostb http://127.0.0.1:1 --token-file "$B/token" 2>&1)" 'does not answer' "nobody listening: said so"
like "$(vb host --json | jq -r .host_id)" '^[0-9a-f]{32}$' "each vmgrd has an id of its own"
ok "$([ "$(vb host --json | jq -r .host_id)" != "$(vmgr host --json | jq -r .host_id)" ]; echo $?)" "... not A's"
like "$(vb remote add self "$URL" --token-file "$B/token" --cacert "$STATE/ca.pem" 2>&1)" 'is this vmgrd itself \(422 remote_is_self\)' \
    "B cannot take itself as a remote"
is "$(vmgr remote list --json)" "[]" "none of those was kept"

# ---- add, list, show
like "$(vmgr remote add hostb "$URL" --token-file "$B/token" --cacert "$STATE/ca.pem")" \
    "added remote hostb: $URL \(vmgrd [0-9.]+ on " "add: B answers with the token over TLS"
like "$(vmgr remote add hostb "$URL" --token-file "$B/token" --cacert "$STATE/ca.pem" 2>&1)" 'exists' "a second hostb: refused"
is "$(vmgr remote list --json | jq -r '.[] | .name + " " + .url + " " + (.tls | tostring) + " " + .ca')" \
    "hostb $URL true its own" "list: name, URL, TLS, its own CA"
like "$(vmgr remote show hostb)" 'answers: +yes' "show: B answers"
tok=$(cat "$B/token")
ok "$( (vmgr remote list --json; vmgr remote show hostb --json; vmgr remote show hostb) | grep -c "$tok" | grep -qx 0; echo $?)" \
    "the token is never printed"
f=$STATE/remotes/hostb.json
is "$(stat -c '%a' "$f" "$STATE/remotes" | tr '\n' ' ')" "600 700 " "it is kept in a 0600 file in a 0700 dir"

# ---- commands on B, through A
check "create a VM on B through A" vmgr --remote hostb create web --image tiny --memory 64M
is "$(vb list --json | jq -r '.[].name')" web "B has it"
is "$(vmgr list --json | jq length)" 0 "A does not"
is "$(vmgr --remote hostb info web --json | jq -r .state)" created "info through A"
is "$(vmgr --json --remote=hostb list | jq -r '.[].name')" web "--remote=NAME works anywhere on the line"
like "$(vmgr --remote hostb info nosuch 2>&1)" 'no VM named "nosuch"' "B's errors come back as they are"
like "$(vmgr --remote nosuch list 2>&1)" 'no remote named "nosuch"' "an unknown remote: refused"
like "$(vmgr --remote hostb console web 2>&1)" 'not available through --remote' "console through a remote: refused, saying why"
check "delete on B through A" vmgr --remote hostb delete web
is "$(vb list --json | jq length)" 0 "B has no VM left"

# ---- kept across a restart; B away; remove
id_a=$(vmgr host --json | jq -r .host_id)
kill_daemon TERM
start_daemon
is "$(vmgr host --json | jq -r .host_id)" "$id_a" "a vmgrd keeps its id across a restart"
is "$(vmgr remote list --json | jq -r '.[].name')" hostb "remotes are kept across a vmgrd restart"
is "$(vmgr --remote hostb host --json | jq -r .state_dir)" "$B" "and still work"
kill $b_pid; wait $b_pid 2>/dev/null
like "$(vmgr --remote hostb list 2>&1)" 'does not answer' "B gone: a clear error"
like "$(vmgr remote show hostb)" 'answers: +no' "show says B does not answer"
check "remove hostb" vmgr remote remove hostb
is "$(vmgr remote list --json)" "[]" "it is gone"
check "... and its file too" sh -c "[ ! -e '$f' ]"
like "$(vmgr remote remove hostb 2>&1)" 'no remote named "hostb"' "removing it again: 404"
done_testing
