#!/bin/sh
# Bad input of every kind gets a clear error with the right status, and
# nothing is created: malformed JSON, unknown fields, invalid names, zero
# and huge sizes, missing files, unknown VMs and endpoints, every invalid
# transition, and CLI usage errors.
. "$(dirname "$0")/lib.sh"
start_daemon

code() { api "$@" | cut -d' ' -f1; }
errcode() { api "$@" | cut -d' ' -f2- | jq -r .error.code; }

is "$(code POST /v1/vms '{"name": "x", "image": "tiny"')" 400 "malformed JSON: 400"
like "$(api POST /v1/vms '{"name": "x",, }')" '"malformed_json".*line 1' \
    "malformed JSON names the place"
is "$(code POST /v1/vms '')" 400 "empty body: 400"
is "$(code POST /v1/vms '[1,2]')" 422 "a JSON array: 422"
is "$(errcode POST /v1/vms '{"name": "x", "image": "tiny", "colour": "red"}')" \
    unknown_field "unknown field: unknown_field"
like "$(api POST /v1/vms '{"name": "x", "boot": {"kernal": "/k"}}')" \
    '^422 .*boot\.kernal' "unknown nested field: 422 naming boot.kernal"
is "$(code POST /v1/vms '{"name": "x", "image": "tiny", "name": "y"}')" 400 \
    "duplicate keys: 400"

long=$(printf 'a%.0s' $(seq 1 64))
for name in '../x' 'Web' "$long" '' '-x' 'a/b' '.hidden' 'x y'; do
	is "$(errcode POST /v1/vms "{\"name\": \"$name\", \"image\": \"tiny\"}")" \
	    invalid_name "invalid name '$name' refused"
done
for v in 0 256 -1 1.5 '"2"' 1e300; do
	is "$(code POST /v1/vms "{\"name\": \"x\", \"image\": \"tiny\", \"vcpus\": $v}")" \
	    422 "vcpus $v refused with 422"
done
for m in 0 8 1e30 5000000 '"128M"'; do
	is "$(code POST /v1/vms "{\"name\": \"x\", \"image\": \"tiny\", \"memory_mib\": $m}")" \
	    422 "memory_mib $m refused with 422"
done
like "$(api POST /v1/vms '{"name": "x", "boot": {"kernel": "/nonexistent/vmlinuz"}}')" \
    '^422 .*missing_file.*/nonexistent/vmlinuz' "a missing kernel file: 422 naming it"
like "$(api POST /v1/vms '{"name": "x", "boot": {"kernel": "/etc"}}')" \
    '^422 .*not a regular file' "a directory as kernel: 422"
like "$(api POST /v1/vms '{"name": "x", "image": "nosuch"}')" \
    '^422 .*no_such_image' "an unknown image: 422"
like "$(api POST /v1/vms '{"name": "x", "boot": {"kernel": "vmlinuz"}}')" \
    '^422 .*absolute' "a relative kernel path: 422"
is "$(code POST /v1/vms '{"name": "x", "image": "tiny", "disks": [{"volume": "../../etc/passwd", "size_gib": 1}]}')" \
    422 "a volume name with a path trick: 422"
is "$(code POST /v1/vms '{"name": "x", "image": "tiny", "disks": [{"volume": "v", "size_gib": 100000}]}')" \
    422 "a huge disk: 422"
is "$(code POST /v1/vms '{"name": "x", "image": "tiny", "nics": [{"network": "nosuch"}]}')" \
    422 "an unknown network: 422"
big=$(head -c 1100000 /dev/zero | tr '\0' ' ')
is "$(printf '{"name": "x", "image": "tiny", "pad": "%s"}' "$big" >"$STATE/big.json";
    curl -s -o /dev/null -w '%{http_code}' --unix-socket "$STATE/vmgrd.sock" \
    -X POST --data-binary @"$STATE/big.json" http://vmgrd/v1/vms)" 413 \
    "a body over 1 MiB: 413"
rm -f "$STATE/big.json"
is "$(vmgr list --json | jq length)" 0 "nothing was created by any of them"
is "$(ls "$STATE/volumes" 2>/dev/null | wc -l)" 0 "no volume files were left"

is "$(code POST /v1/vms '{"name": "m1", "image": "tiny", "nics": [{"network": "nat", "mac": "52:54:00:aa:bb:cc"}]}')" 201 \
    "a VM with an explicit MAC is created"
is "$(vmgr info m1 --json | jq -r '.spec.nics[0].mac')" "52:54:00:aa:bb:cc" "... and keeps it"
is "$(errcode POST /v1/vms '{"name": "m2", "image": "tiny", "nics": [{"mac": "52:54:00:AA:BB:CC"}]}')" mac_in_use \
    "another VM with the same MAC: mac_in_use"
is "$(code POST /v1/vms '{"name": "m3", "image": "tiny", "nics": [{"mac": "01:54:00:aa:bb:cc"}]}')" 422 \
    "a multicast MAC: 422"
check "delete m1" vmgr delete m1
check "create web" vmgr create web --image tiny
is "$(errcode POST /v1/vms '{"name": "web", "image": "tiny"}')" exists \
    "creating the same name again: exists"
is "$(code POST /v1/vms '{"name": "web", "image": "tiny"}')" 409 "... with 409"

is "$(code GET /v1/vms/nosuch)" 404 "an unknown VM: 404"
is "$(code POST /v1/vms/nosuch/start)" 404 "starting an unknown VM: 404"
is "$(code GET /v1/vms/Bad..Name)" 400 "an invalid name in the path: 400"
is "$(code GET /v1/nothing)" 404 "an unknown endpoint: 404"
is "$(code PUT /v1/vms/web)" 405 "a wrong method: 405"
is "$(code POST /v1/vms/web/explode)" 404 "an unknown action: 404"
is "$(code POST /v1/vms/web/start '{"force": true}')" 422 "an unknown field in an action body: 422"

# Every event the created state does not allow.
for a in pause resume shutdown stop; do
	out=$(api POST /v1/vms/web/$a)
	like "$out" "^409 .*cannot $a web: it is created \\(created allows: start, delete\\)" \
	    "$a on a created VM: 409 naming the state and the allowed events"
done
check "start web" vmgr start web
for a in start resume; do
	like "$(api POST /v1/vms/web/$a)" "^409 .*it is running" "$a on a running VM: 409"
done
like "$(api DELETE /v1/vms/web)" '^409 .*cannot delete web: it is running' \
    "delete of a running VM: 409"
check "pause web" vmgr pause web
for a in start pause; do
	like "$(api POST /v1/vms/web/$a)" "^409 .*it is paused" "$a on a paused VM: 409"
done
check "stop web" vmgr stop web
is "$(state_of web)" created "the refused requests changed nothing"

# A spec file as DESIGN.md writes it, with an explicit kernel.
img=$BUILD/images/tiny
cat >"$STATE/spec.json" <<JSON
{ "name": "web1", "vcpus": 2, "memory_mib": 256, "machine": "q35",
  "boot": {"kernel": "$img/vmlinuz", "initrd": "$img/initrd.img", "cmdline": "console=ttyS0"},
  "disks": [{"volume": "web1-root", "size_gib": 10}],
  "nics": [{"network": "default"}],
  "resources": {"policy": "fixed", "priority": 5, "weight": 1.0, "min_memory_mib": 256},
  "schedule": {"expected_runtime_s": 600, "preemptible": false},
  "autostart": false }
JSON
check "create -f with DESIGN's spec" vmgr create -f "$STATE/spec.json"
is "$(vmgr info web1 --json | jq -r '[.spec.vcpus, .spec.memory_mib, .spec.disks[0].volume, .spec.nics[0].network] | join(" ")')" \
    "2 256 web1-root nat" "the spec was taken as written"
sed 's/"autostart"/"autostrat"/; s/web1/web2/g' "$STATE/spec.json" >"$STATE/bad.json"
like "$(vmgr create -f "$STATE/bad.json" 2>&1)" 'unknown field "autostrat"' \
    "create -f with an unknown field is refused, naming it"
check "... and creates nothing" sh -c "! '$VMGR_BIN' --state-dir '$STATE' info web2"
check "delete web1" vmgr delete web1
check "web1's volume is gone" test ! -e "$STATE/volumes/web1-root.qcow2"

for c in host list info create start pause resume shutdown stop delete console events \
    save set queue scheduler stats top help; do
	like "$(vmgr help $c)" "^usage: vmgr $c" "vmgr help $c"
done
vmgr frobnicate >/dev/null 2>&1; is $? 2 "an unknown command exits 2"
vmgr create >/dev/null 2>&1; is $? 2 "create without a name exits 2"
vmgr create x --memory lots >/dev/null 2>&1; is $? 2 "a bad --memory exits 2"
vmgr pause web >/dev/null 2>&1; is $? 1 "a refused request exits 1"
like "$(vmgr pause web 2>&1)" 'cannot pause web: it is created' \
    "... and says why"
like "$(vmgr help shutdown)" 'usage: vmgr shutdown NAME' "vmgr help COMMAND explains it"
"$VMGR_BIN" --state-dir "$STATE/nowhere" list >/dev/null 2>&1
is $? 1 "no daemon: exits 1"
like "$("$VMGR_BIN" --state-dir "$STATE/nowhere" list 2>&1)" 'cannot reach vmgrd' \
    "... and says it cannot reach vmgrd"
done_testing
