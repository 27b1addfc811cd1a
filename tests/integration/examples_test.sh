#!/bin/sh
# examples_test.sh - runs the agent examples against a real atomqd in a
# temporary directory; each must exit 0 and print what the docs say.
#
#   sh tests/integration/examples_test.sh ATOMQD MAILBOX_RESTART REQUEST_REPLY LATEST_WATCH
set -u
atomqd=${1:?usage: examples_test.sh ATOMQD MAILBOX_RESTART REQUEST_REPLY LATEST_WATCH}
mailbox=$2 request=$3 latest=$4
dir=$(mktemp -d)
trap 'kill -KILL $pid 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; cat "$dir/out" "$dir/log" 2>/dev/null; exit 1; }

# One worker: requests reach only responders on their own worker (docs/agents.md).
# A short ack wait: the mailbox example waits for a redelivery.
"$atomqd" --workers 1 --max-entities 10000 --control "$dir/c.sock" --metrics off \
        --nats off --ack-wait-ms 300 --data-dir "$dir/data" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
        grep -q "running 1 workers" "$dir/log" && break
        sleep 0.05
done
grep -q "running 1 workers" "$dir/log" || fail "atomqd did not come up"

"$mailbox" "$dir/c.sock" >"$dir/out" 2>&1 || fail "mailbox_restart exited $?"
grep -q "consumer 1: acked 8, crashing" "$dir/out" || fail "mailbox_restart: no crash"
grep -Eq "consumer 2: acked 12 jobs, [1-9][0-9]* of them redelivered" "$dir/out" ||
        fail "mailbox_restart: held jobs were not redelivered"
grep -q "all 20 jobs done once each, none lost" "$dir/out" || fail "mailbox_restart: summary"

"$request" "$dir/c.sock" >"$dir/out" 2>&1 || fail "request_reply exited $?"
grep -q 'svc.upper "anyone?": status 503 (no responders)' "$dir/out" || fail "no 503"
grep -q 'svc.upper "memory" -> "MEMORY"' "$dir/out" || fail "no reply"
grep -q 'svc.slow "are you there?": status 408 (timed out)' "$dir/out" || fail "no 408"

"$latest" "$dir/c.sock" >"$dir/out" 2>&1 || fail "latest_watch exited $?"
grep -q "watcher: config.rate = 100 (get)" "$dir/out" || fail "latest_watch: get"
grep -q "watcher: config.rate = 150 " "$dir/out" || fail "latest_watch: last update"
grep -q "watcher: config.state = done" "$dir/out" || fail "latest_watch: done"

kill -TERM $pid
wait $pid || fail "atomqd exit status $?"
echo "ok: mailbox_restart, request_reply, latest_watch"
