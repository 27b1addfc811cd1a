#!/bin/sh
# tools/run-tests.sh - runs meson's test suites and closes with one line,
# "N passed, N failed, N skipped", that CI and people can read at a glance.
#
#   sh tools/run-tests.sh build                # every suite
#   sh tools/run-tests.sh build --suite unit   # extra args go to meson test
set -u
build=${1:?usage: run-tests.sh BUILD_DIR [meson test args]}
shift
out="$build/meson-test-summary.txt"
# meson exits non-zero on any failure; keep its status, print its output.
meson test -C "$build" --print-errorlogs "$@" >"$out" 2>&1
status=$?
cat "$out"
ok=$(awk '/^Ok:/ { print $2 }' "$out")
fail=$(awk '/^Fail:/ { f += $2 } /^Timeout:/ { f += $2 } /^Unexpected Pass:/ { f += $3 } END { print f + 0 }' "$out")
skip=$(awk '/^Skipped:/ { print $2 }' "$out")
echo "${ok:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
exit $status
