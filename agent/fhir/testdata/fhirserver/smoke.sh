#!/usr/bin/env bash
# Smoke test of the FHIR test server (server.js): start it on a random port,
# exercise what the FHIR connector's tests rely on, and exit non-zero on the
# first mismatch. Needs node, curl and `npm ci` run in this folder.
#
#   bash agent/fhir/testdata/fhirserver/smoke.sh
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules/@medplum/fhir-router ]; then
  echo "smoke: run 'npm ci' in $(pwd) first" >&2
  exit 1
fi

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

mkfifo "$tmp/out"
node server.js 0 >"$tmp/out" 2>"$tmp/err" &
server_pid=$!
exec 3<"$tmp/out"
if ! read -r -t 30 line <&3; then
  echo "smoke: server did not start:" >&2
  cat "$tmp/err" >&2
  exit 1
fi
base=${line#listening }
if [ "$base" = "$line" ]; then
  echo "smoke: unexpected first line: $line" >&2
  exit 1
fi
echo "server: $base"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# req METHOD PATH [BODY] [curl args...]: sets $status, $headers (file) and
# $body (file).
headers=$tmp/headers
body=$tmp/body
req() {
  local method=$1 path=$2 data=${3:-}
  shift 3 || shift $#
  local args=(-sS -X "$method" -D "$headers" -o "$body" -w '%{http_code}' -H 'Accept: application/fhir+json')
  if [ -n "$data" ]; then
    args+=(-H 'Content-Type: application/fhir+json' --data-binary "$data")
  fi
  status=$(curl "${args[@]}" "$@" "$base/$path")
}

# json EXPR: evaluates a JavaScript expression on the last body (as r).
json() {
  node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const v = ('"$1"'); console.log(typeof v === "string" ? v : JSON.stringify(v));' "$body"
}

header() {
  sed -n "s/^$1: *//Ip" "$headers" | tr -d '\r'
}

expect() { # NAME GOT WANT
  if [ "$2" != "$3" ]; then
    fail "$1: got $2, want $3 (body: $(head -c 400 "$body"))"
  fi
  echo "ok   $1: $2"
}

req POST Schedule '{"resourceType":"Schedule","active":true,"actor":[{"reference":"Practitioner/dr-a","display":"Dr A"}]}'
expect "create Schedule" "$status" 201
schedule=$(json r.id)
expect "Schedule ETag is W/\"versionId\"" "$(header ETag)" "W/\"$(json r.meta.versionId)\""
expect "Schedule Location" "$(header Location)" "$base/Schedule/$schedule/_history/$(json r.meta.versionId)"
expect "Content-Type" "$(header Content-Type)" "application/fhir+json; charset=utf-8"

slot() { # START END
  printf '{"resourceType":"Slot","schedule":{"reference":"Schedule/%s"},"status":"free","start":"%s","end":"%s"}' \
    "$schedule" "$1" "$2"
}
req POST Slot "$(slot 2030-01-07T09:00:00Z 2030-01-07T09:15:00Z)"
expect "create Slot 1" "$status" 201
slot1=$(json r.id)
slot1_version=$(json r.meta.versionId)
slot1_updated=$(json r.meta.lastUpdated)
req POST Slot "$(slot 2030-01-08T09:00:00Z 2030-01-08T09:15:00Z)"
expect "create Slot 2" "$status" 201
slot2=$(json r.id)

req GET "Slot?schedule=Schedule/$schedule&status=free&start=ge2030-01-07T00:00:00Z&start=lt2030-01-09T00:00:00Z&_sort=start"
expect "search Slots: status" "$status" 200
expect "search Slots: a searchset Bundle" "$(json 'r.resourceType + "/" + r.type')" "Bundle/searchset"
expect "search Slots: ids" "$(json 'r.entry.map(e => e.resource.id).join(",")')" "$slot1,$slot2"
req GET "Slot?schedule=Schedule/$schedule&start=ge2030-01-08T00:00:00Z&start=lt2030-01-09T00:00:00Z"
expect "search Slots by start range" "$(json 'r.entry.map(e => e.resource.id).join(",")')" "$slot2"
req GET "Slot?schedule=$schedule"
expect "search by a bare id finds nothing (needs Schedule/<id>)" "$(json r.total)" 0
req GET "Slot?schedule=Schedule/$schedule&_count=1"
expect "_count=1: one entry" "$(json r.entry.length)" 1
expect "_count=1: total counts all" "$(json r.total)" 2
expect "_count=1: no next link" "$(json '(r.link || []).filter(l => l.relation === "next").length')" 0

# Take Slot 1 with If-Match on its version: the first PUT wins, a second with
# the same (now stale) version gets 412.
req GET "Slot/$slot1"
taken=$(json 'JSON.stringify({...r, status: "busy-tentative"})')
req PUT "Slot/$slot1" "$taken" -H "If-Match: W/\"$slot1_version\""
expect "PUT with current If-Match" "$status" 200
new_version=$(json r.meta.versionId)
[ "$new_version" != "$slot1_version" ] || fail "PUT kept versionId $new_version"
req PUT "Slot/$slot1" "$taken" -H "If-Match: W/\"$slot1_version\""
expect "PUT with stale If-Match" "$status" 412
req GET "Slot/$slot1"
expect "Slot 1 after the stale PUT: ETag" "$(header ETag)" "W/\"$new_version\""

req GET "Slot?_lastUpdated=gt$slot1_updated&status=free"
expect "_lastUpdated=gt the first create: Slot 2 only" "$(json '(r.entry || []).map(e => e.resource.id).join(",")')" "$slot2"

# Four concurrent PUTs with the same version: exactly one wins.
req GET "Slot/$slot2"
slot2_version=$(json r.meta.versionId)
taken2=$(json 'JSON.stringify({...r, status: "busy-tentative"})')
puts=()
for i in 1 2 3 4; do
  curl -sS -o /dev/null -w '%{http_code}\n' -X PUT -H 'Content-Type: application/fhir+json' \
    -H "If-Match: W/\"$slot2_version\"" --data-binary "$taken2" "$base/Slot/$slot2" >"$tmp/put$i" &
  puts+=($!)
done
wait "${puts[@]}"
expect "4 concurrent If-Match PUTs" "$(cat "$tmp"/put* | sort | tr '\n' ' ')" "200 412 412 412 "

# Conditional create twice: one Patient.
patient='{"resourceType":"Patient","identifier":[{"system":"urn:clinicrelay:smoke","value":"p-1"}],"name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1980-02-03"}'
req POST Patient "$patient" -H 'If-None-Exist: identifier=urn:clinicrelay:smoke|p-1'
expect "conditional create, first" "$status" 201
patient_id=$(json r.id)
req POST Patient "$patient" -H 'If-None-Exist: identifier=urn:clinicrelay:smoke|p-1'
expect "conditional create, second" "$status" 200
expect "conditional create, second: same Patient" "$(json r.id)" "$patient_id"
req GET "Patient?identifier=urn:clinicrelay:smoke|p-1"
expect "Patients with the identifier" "$(json r.total)" 1

# An Appointment keyed by the request id, found again by identifier.
appointment=$(printf '{"resourceType":"Appointment","status":"proposed","identifier":[{"system":"urn:clinicrelay:request","value":"r-1"}],"slot":[{"reference":"Slot/%s"}],"participant":[{"actor":{"reference":"Patient/%s"},"status":"needs-action"}]}' "$slot1" "$patient_id")
req POST Appointment "$appointment" -H 'If-None-Exist: identifier=urn:clinicrelay:request|r-1'
expect "create Appointment" "$status" 201
appointment_id=$(json r.id)
req GET "Appointment?identifier=urn:clinicrelay:request|r-1"
expect "Appointment?identifier=" "$(json 'r.entry.map(e => e.resource.id).join(",")')" "$appointment_id"

req POST Slot '{"resourceType":"Slot","status":"not-a-status","nonsense":true}'
expect "an invalid Slot is accepted (no validation)" "$status" 201

req GET "Slot/does-not-exist"
expect "read of a missing resource" "$status" 404

echo "smoke: all checks passed"
