#!/usr/bin/env bash
# tools/bench-compare.sh - atomqd against nats-server under the same NATS
# load (atomq-bench nats): both servers started here on free loopback
# ports, every scenario run against both in one atomq-bench invocation with
# their runs alternated (atomq, nats-server, atomq, ...), one table at the
# end: scenario, atomq, nats-server, atomq/nats-server.
#
#   make bench-compare
#   bash tools/bench-compare.sh build-release
#   bash tools/bench-compare.sh build-release --runs 9 --duration 2
#
# Arguments after the build directory go to atomq-bench after the defaults
# below (so they win). ATOMQD_ARGS adds atomqd flags; NATS_SERVER names the
# nats-server binary. Exit status: 0 when every scenario ran against both
# servers (counted errors are flagged in the table, not in the status);
# 1 when a server did not start or a scenario failed to run; 2 bad usage.
set -u

build=${1:-build-release}
[ $# -gt 0 ] && shift
# shellcheck source=tools/bench-servers.sh
. "$(dirname "$0")/bench-servers.sh"
# 5 cases x 5 runs x 2 servers x ~1.4 s: about 70 s in all.
defaults=(--runs 5 --duration 1 --warmup 0.3)
cases=(pub pubsub fanout queue reqrep)

say() { printf 'bench-compare: %s\n' "$*" >&2; }

tmp=$(mktemp -d /tmp/bench-compare.XXXXXX) || exit 1
# shellcheck disable=SC2119 # nats-server takes no extra arguments here
bench_servers_start
say "atomqd on :$atomq_port (--workers 1), $("$nats_server" --version) on :$nats_port"
say "atomq-bench nats CASE --url $url --json ${defaults[*]} $*"

failed=0
: >"$tmp/all.jsonl"
for c in "${cases[@]}"; do
        say "$c ..."
        bench_case "$c" nats "$bench" nats "$c" --url "$url" --json "${defaults[@]}" "$@"
done
bench_servers_died && failed=1

# One row per figure: atomq, nats-server and their ratio; a missing figure
# is a scenario that failed to run against that server.
awk -v cases="${cases[*]}" -f "$(dirname "$0")/bench-json.awk" -f /dev/stdin "$tmp/all.jsonl" <<'AWK'
function us(v) { return v == "" ? "FAILED" : sprintf("%.1f us", v / 1e3) }
function row(label, c, key, kind,    a, n, r, e) {
        a = fig["atomq", c, key]
        n = fig["nats-server", c, key]
        r = (a != "" && n != "" && n + 0 > 0) ? sprintf("%.2f", a / n) : "-"
        e = ""
        if (err["atomq", c] + 0 > 0) e = e sprintf(" atomq %d", err["atomq", c])
        if (err["nats-server", c] + 0 > 0) e = e sprintf(" nats-server %d", err["nats-server", c])
        if (e != "") e = "  errors:" e
        printf "%-26s %12s %12s %11s%s\n", label, kind == "us" ? us(a) : rate(a),
               kind == "us" ? us(n) : rate(n), r, e
}
{
        s = val($0, "system"); c = val($0, "case")
        fig[s, c, "msgs_per_s"] = val($0, "msgs_per_s")
        fig[s, c, "p50_ns"] = val($0, "p50_ns")
        fig[s, c, "p99_ns"] = val($0, "p99_ns")
        fig[s, c, "p999_ns"] = val($0, "p999_ns")
        err[s, c] = val($0, "errors")
        if (val($0, "subs") != "") subs[c] = val($0, "subs")
        if (runs == "") {
                runs = val($0, "runs")
                dur = val($0, "duration_s")
                bytes = val($0, "msg_bytes")
        }
}
END {
        printf "\nmedians of %s runs of %s s each, %s-byte messages, runs alternated\n\n",
               runs, dur, bytes
        printf "%-26s %12s %12s %11s\n", "scenario", "atomq", "nats-server", "atomq/nats"
        row("pub msgs/s", "pub", "msgs_per_s")
        row("pubsub msgs/s", "pubsub", "msgs_per_s")
        row("fanout x" subs["fanout"] " msgs/s", "fanout", "msgs_per_s")
        row("queue x" subs["queue"] " msgs/s", "queue", "msgs_per_s")
        row("reqrep req/s", "reqrep", "msgs_per_s")
        row("reqrep p50 (lower=better)", "reqrep", "p50_ns", "us")
        row("reqrep p99 (lower=better)", "reqrep", "p99_ns", "us")
        row("reqrep p999 (lower=better)", "reqrep", "p999_ns", "us")
}
AWK

if grep -q '"errors":[1-9]' "$tmp/all.jsonl"; then
        echo
        echo "errors were counted (loss, duplicates, -ERR, wrong answers):" \
                "those figures are not valid"
fi
exit "$failed"
