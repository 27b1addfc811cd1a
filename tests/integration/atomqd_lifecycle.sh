#!/bin/sh
# atomqd_lifecycle.sh - starts the real atomqd in a temporary directory and
# checks what an operator sees: it comes up with its dataplane process, the
# idle workers back off, it stops on SIGTERM with status 0 (taking the
# dataplane and the socket with it), and bad flags are refused naming the
# flag.
#
#   sh tests/integration/atomqd_lifecycle.sh build/control/atomqd
set -u
atomqd=${1:?usage: atomqd_lifecycle.sh PATH_TO_ATOMQD}
dir=$(mktemp -d)
trap 'kill -KILL $pid 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; cat "$dir/log" 2>/dev/null; exit 1; }

"$atomqd" --workers 2 --max-entities 10000 --control "$dir/c.sock" --metrics off \
        --nats off --data-dir "$dir/data" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
        grep -q "running 2 workers" "$dir/log" && break
        sleep 0.05
done
grep -q "running 2 workers" "$dir/log" || fail "atomqd and its dataplane did not come up"
grep -q "2 workers, 10000 entities each" "$dir/log" || fail "startup line"
[ -S "$dir/c.sock" ] || fail "no control socket"
dp=$(pgrep -P $pid atomq-dataplan)
[ -n "$dp" ] || fail "no atomq-dataplane child"

# Idle workers must back off: CPU time of atomqd and its dataplane over 1 s
# of wall time, from /proc/PID/stat utime+stime in clock ticks.
ticks() { awk '{ t += $14 + $15 } END { print t }' "/proc/$pid/stat" "/proc/$dp/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks); sleep 1; t1=$(ticks)
used=$(( (t1 - t0) * 100 / hz ))
[ "$used" -lt 20 ] || fail "idle atomqd + dataplane used $used% of a core"

kill -TERM $pid
wait $pid
status=$?
[ $status -eq 0 ] || fail "SIGTERM exit status $status"
grep -q "stopping" "$dir/log" || fail "no stopping line"
kill -0 "$dp" 2>/dev/null && fail "the dataplane outlived atomqd"
[ -e "$dir/c.sock" ] && fail "the control socket was left behind"

"$atomqd" --workers 999 >"$dir/err" 2>&1
[ $? -eq 2 ] || fail "--workers 999 should exit 2"
grep -q -- "--workers" "$dir/err" || fail "the error should name --workers"
"$atomqd" --hugepages maybe >"$dir/err" 2>&1
[ $? -eq 2 ] || fail "--hugepages maybe should exit 2"
"$atomqd" --help | grep -q -- "--busy-poll" || fail "--help lists --busy-poll"
echo "atomqd lifecycle: ok (idle CPU ${used}%)"
