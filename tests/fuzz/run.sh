#!/bin/sh
# tests/fuzz/run.sh - runs one libFuzzer target for a bounded time.
#
#   sh tests/fuzz/run.sh FUZZ_EXE SEED_DIR WORK_DIR
#
# FUZZ_SECONDS (default 15) bounds the run. New inputs go to WORK_DIR/corpus
# (the seed corpus in the source tree is only read); a crash, leak or
# timeout leaves its input in WORK_DIR as crash-*, leak-* or timeout-*, and
# the exit status is libFuzzer's (non-zero).
set -u
exe=${1:?usage: run.sh FUZZ_EXE SEED_DIR WORK_DIR}
seeds=${2:?usage: run.sh FUZZ_EXE SEED_DIR WORK_DIR}
work=${3:?usage: run.sh FUZZ_EXE SEED_DIR WORK_DIR}
mkdir -p "$work/corpus"
# -timeout: one input running this long is a hang; -rss_limit_mb: memory
# that grows without bound is a bug here, not a reason to slow the host.
exec "$exe" -max_total_time="${FUZZ_SECONDS:-15}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "$seeds"
