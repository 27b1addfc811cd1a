#!/bin/sh
# tools/run-tests.sh - runs meson's test suites and closes with one line,
# "N passed, N failed, N skipped", that CI and people can read at a glance.
#
#   sh tools/run-tests.sh build                # every suite
#   sh tools/run-tests.sh build --suite unit   # extra args go to meson test
#   SANITIZE=1 sh tools/run-tests.sh build-sanitized
#
# SANITIZE=1 is for a build with -Db_sanitize=address,undefined: every
# process the suites start (tests, and the atomqd and dataplanes they run)
# writes its ASan/UBSan reports under BUILD/sanitizer-reports, and any
# report fails the run even when the test that provoked it passed (a
# dataplane that aborts is restarted by atomqd; a leak is reported at exit).
set -u
build=${1:?usage: run-tests.sh BUILD_DIR [meson test args]}
shift
out="$build/meson-test-summary.txt"
label=
if [ "${SANITIZE:-0}" = 1 ]; then
        label="sanitized: "
        reports="$build/sanitizer-reports"
        rm -rf "$reports"
        mkdir -p "$reports"
        export ASAN_OPTIONS="detect_leaks=1:log_path=$reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
        export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
        # Leaks inside third-party libraries only (each one explained there).
        export LSAN_OPTIONS="print_suppressions=0:suppressions=$(cd "$(dirname "$0")/.." && pwd)/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fi
# meson exits non-zero on any failure; keep its status, print its output.
meson test -C "$build" --print-errorlogs "$@" >"$out" 2>&1
status=$?
cat "$out"
ok=$(awk '/^Ok:/ { print $2 }' "$out")
fail=$(awk '/^Fail:/ { f += $2 } /^Timeout:/ { f += $2 } /^Unexpected Pass:/ { f += $3 } END { print f + 0 }' "$out")
skip=$(awk '/^Skipped:/ { print $2 }' "$out")
if [ -n "$label" ]; then
        nrep=$(find "$reports" -type f | wc -l)
        if [ "$nrep" -gt 0 ]; then
                for f in "$reports"/*; do
                        echo "--- $f"
                        cat "$f"
                done
                echo "${label}$nrep sanitizer report(s) above"
                status=1
        fi
fi
echo "${label}${ok:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
exit $status
