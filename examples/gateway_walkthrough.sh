#!/bin/sh
# A walk through the aclbus REST gateway with curl: health, send, request, groups, broadcast,
# statistics and metrics, each call with its HTTP status and its JSON answer.
#
# Start a gateway first (docs/operations.md, "Gateway"):
#
#     export ACLBUS_GATEWAY__TOKENS='{"alice": "a-long-random-token"}'
#     aclbus serve --port 8000
#
# and an agent that answers requests (RECEIVER, default "worker"). Then:
#
#     GATEWAY=http://127.0.0.1:8000 TOKEN=a-long-random-token sh examples/gateway_walkthrough.sh
#
# The token goes to curl in a header file (mode 600), never on its command line, where any
# user of the machine could read it in the process list.
set -eu

GATEWAY=${GATEWAY:-http://127.0.0.1:8000}
: "${TOKEN:?set TOKEN to your agent's bearer token}"
RECEIVER=${RECEIVER:-worker}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
umask 077
printf 'Authorization: Bearer %s\n' "$TOKEN" > "$work/auth"

# call METHOD PATH EXPECTED-STATUS [JSON-BODY]: print the status and the answer; stop on any
# other status than the one expected.
call() {
    method=$1 path=$2 expected=$3
    if [ $# -ge 4 ]; then
        status=$(curl -sS -o "$work/out" -w '%{http_code}' -X "$method" -H "@$work/auth" \
            -H 'Content-Type: application/json' --data "$4" "$GATEWAY$path")
    else
        status=$(curl -sS -o "$work/out" -w '%{http_code}' -X "$method" -H "@$work/auth" \
            "$GATEWAY$path")
    fi
    printf '%s %s -> %s\n' "$method" "$path" "$status"
    if [ "$path" = /metrics ]; then
        grep '^aclbus_messages_sent_total' "$work/out" || true
    else
        cat "$work/out"
        echo
    fi
    if [ "$status" != "$expected" ]; then
        echo "expected $expected from $method $path, got $status" >&2
        exit 1
    fi
}

echo '== health'
call GET /health/live 200
call GET /health/ready 200

echo '== send: a message to one inbox'
call POST /communication/send 200 \
    "{\"performative\": \"inform\", \"receiver_id\": \"$RECEIVER\", \"payload\": {\"hello\": \"from curl\"}}"

echo '== request: ask, and wait for the reply'
call POST /communication/request 200 \
    "{\"receiver_id\": \"$RECEIVER\", \"payload\": {\"question\": 42}, \"timeout\": 5}"

echo '== request: nobody answers for this agent (503 at once)'
call POST /communication/request 503 '{"receiver_id": "nobody-serves-this", "timeout": 5}'

echo '== groups: join, then leave'
call POST /communication/groups/walkthrough/join 200
call DELETE /communication/groups/walkthrough/leave 200

echo '== broadcast: to every agent'
call POST /communication/broadcast 200 '{"performative": "inform", "payload": "hello, all"}'

echo '== a bad body: 422 naming the field'
call POST /communication/send 422 '{"performative": "shout", "receiver_id": "x"}'

echo '== statistics and metrics'
call GET /communication/statistics 200
call GET /metrics 200
echo 'walk-through done'
