# shellcheck shell=bash disable=SC2154 # build and say: the sourcing script's
# tools/bench-servers.sh - sourced by bench-compare.sh and bench-durable.sh:
# atomqd and nats-server started side by side on free loopback ports in
# $tmp, stopped (and $tmp removed) when the script exits.
#
# The sourcing script sets build (the release tree) before sourcing, which
# names the binaries here (bench, atomqd; nats_server from NATS_SERVER or
# the PATH), and later tmp (a fresh directory) and say(). Then:
#
#   bench_servers_start [nats-server arguments ...]
#
# starts both (atomqd with ATOMQD_ARGS added) or exits with a reason (2: a
# binary of the build is missing, 1: no nats-server or a server did not
# start, with its log), and sets atomq_port, nats_port and url (both,
# atomq first).
#
#   bench_case NAME SCENARIO command ...
#
# runs one atomq-bench invocation with its JSON lines in $tmp/NAME.jsonl
# (also appended to $tmp/all.jsonl) and its stderr in $tmp/NAME.log, and
# sets failed=1, saying why, unless it ran against both servers (exit 0,
# or 1 with both systems' SCENARIO lines: counted errors, for the table);
# its status says the same.

bench=$build/bench/atomq-bench
atomqd=$build/control/atomqd
nats_server=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
# How long a server may take to listen.
start_wait_s=10
atomqd_pid=
nats_pid=
tmp=

bench_servers_cleanup() {
        for pid in $atomqd_pid $nats_pid; do
                kill "$pid" 2>/dev/null
        done
        for pid in $atomqd_pid $nats_pid; do
                wait "$pid" 2>/dev/null
        done
        if [ -n "$tmp" ]; then
                rm -rf "$tmp"
        fi
}
trap bench_servers_cleanup EXIT
trap 'exit 1' INT TERM HUP

# Whether something accepts connections on 127.0.0.1:$1.
listening() {
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port nothing listens on; the server bound to it is checked anyway.
free_port() {
        local p
        for _ in $(seq 1 50); do
                p=$((20000 + RANDOM % 40000))
                if ! listening "$p"; then
                        echo "$p"
                        return 0
                fi
        done
        return 1
}

# Waits until pid $1 listens on port $2; 1 if it died or took too long.
await_listen() {
        for _ in $(seq 1 $((start_wait_s * 10))); do
                kill -0 "$1" 2>/dev/null || return 1
                listening "$2" && return 0
                sleep 0.1
        done
        return 1
}

bench_servers_start() {
        for f in "$bench" "$atomqd"; do
                if [ ! -x "$f" ]; then
                        say "$f is missing: build the release tree first (ninja -C $build)"
                        exit 2
                fi
        done
        if [ ! -x "$nats_server" ]; then
                say "nats-server not found (apt-get install nats-server, or NATS_SERVER=PATH)"
                exit 1
        fi
        atomq_port=$(free_port) || { say "no free port"; exit 1; }
        # shellcheck disable=SC2086 # ATOMQD_ARGS is a list of flags
        "$atomqd" --workers 1 --max-entities 20000 --hugepages off --metrics off \
                --control "$tmp/control.sock" --data-dir "$tmp/data" \
                --nats "127.0.0.1:$atomq_port" --max-agents 0 ${ATOMQD_ARGS:-} \
                >"$tmp/atomqd.log" 2>&1 &
        atomqd_pid=$!
        if ! await_listen "$atomqd_pid" "$atomq_port"; then
                say "atomqd did not listen on 127.0.0.1:$atomq_port; its log:"
                cat "$tmp/atomqd.log" >&2
                exit 1
        fi
        nats_port=$(free_port) || { say "no free port"; exit 1; }
        while [ "$nats_port" = "$atomq_port" ]; do
                nats_port=$(free_port) || { say "no free port"; exit 1; }
        done
        "$nats_server" "$@" -a 127.0.0.1 -p "$nats_port" >"$tmp/nats-server.log" 2>&1 &
        nats_pid=$!
        if ! await_listen "$nats_pid" "$nats_port"; then
                say "nats-server did not listen on 127.0.0.1:$nats_port; its log:"
                cat "$tmp/nats-server.log" >&2
                exit 1
        fi
        # shellcheck disable=SC2034 # for the sourcing script
        url="nats://127.0.0.1:$atomq_port,nats://127.0.0.1:$nats_port"
}

bench_case() {
        local name=$1 scenario=$2 rc n
        shift 2
        "$@" >"$tmp/$name.jsonl" 2>"$tmp/$name.log"
        rc=$?
        cat "$tmp/$name.jsonl" >>"$tmp/all.jsonl"
        n=$(grep -c "\"scenario\":\"$scenario\"" "$tmp/$name.jsonl")
        if [ "$rc" -ne 0 ] && { [ "$rc" -ne 1 ] || [ "$n" -lt 2 ]; }; then
                say "$name failed to run against a server (exit $rc):"
                grep -v "^$scenario: " "$tmp/$name.log" >&2
                # shellcheck disable=SC2034 # for the sourcing script
                failed=1
                return 1
        fi
        return 0
}

# True (0), with both logs on stderr, when a server died during the runs.
bench_servers_died() {
        local died=1
        for pid in $atomqd_pid $nats_pid; do
                if ! kill -0 "$pid" 2>/dev/null; then
                        say "a server exited during the runs (pid $pid); logs:"
                        cat "$tmp/atomqd.log" "$tmp/nats-server.log" >&2
                        died=0
                fi
        done
        return $died
}
