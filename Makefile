# atomq - the two-command entry point. The real build is meson (meson.build);
# this file installs what is missing, configures and calls it.
#
#   make run     install deps, build, start atomqd in the foreground
#   make test    install deps, build, run every test suite, then all of
#                them again on an ASan + UBSan build (make test-sanitized),
#                then each fuzz target for 10 s (make test-fuzz)
#   make fuzz    each libFuzzer target for FUZZ_SECONDS (default 300)
#   make bench   build a release tree and run the benchmarks
#   make bench-compare  atomqd against nats-server under the same NATS load
#   make bench-durable  atomqd against JetStream: acknowledged durable publishes
#
# Variables: BUILD (default build), MESON_ARGS (extra `meson setup` args),
# RUN_ARGS (extra atomqd flags), BENCH_ARGS (extra atomq-bench flags).

BUILD ?= build
RELEASE ?= build-release
SANITIZED ?= build-sanitized
FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 300
MESON_ARGS ?=
RUN_ARGS ?=
BENCH_ARGS ?=

.PHONY: all deps setup build run test test-unit test-sanitized test-fuzz fuzz bench bench-compare clean help

all: build

help:
	@sed -n '1,14p' Makefile

deps:
	@sh tools/setup.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_ARGS)

setup: deps $(BUILD)/build.ninja

build: setup
	ninja -C $(BUILD)

run: build
	$(BUILD)/control/atomqd $(RUN_ARGS)

# Every suite: unit, integration, stress; non-zero on any failure, and a
# closing "N passed, N failed, N skipped" line. Then the same suites on the
# sanitized build.
test: build
	sh tools/run-tests.sh $(BUILD) --num-processes 2
	$(MAKE) test-sanitized
	$(MAKE) test-fuzz

# Every suite on an AddressSanitizer + UndefinedBehaviorSanitizer build:
# any report, from a test or from a daemon a test started, fails the run
# (tools/run-tests.sh, SANITIZE=1). About 4 minutes on 2 cores.
$(SANITIZED)/build.ninja:
	meson setup $(SANITIZED) -Db_sanitize=address,undefined $(MESON_ARGS)

# The soak test runs 15 s there (30 s in the plain run): enough to touch
# every path under the sanitizers, short enough for CI.
test-sanitized: deps $(SANITIZED)/build.ninja
	ninja -C $(SANITIZED)
	SANITIZE=1 SOAK_SECONDS=15 sh tools/run-tests.sh $(SANITIZED) --num-processes 2

# libFuzzer targets (tests/fuzz/: the NATS parser, $AQ requests, the control
# socket's parser, the agent ring reader) on a clang ASan + UBSan build, one
# after the other from their seed corpora; a crash fails the run and leaves
# its input in $(FUZZ)/tests/fuzz/<what>/crash-*.
$(FUZZ)/build.ninja:
	CC=clang meson setup $(FUZZ) -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false $(MESON_ARGS)

# Only the fuzz_<what> executables (and what they link) are built there:
# the rest of the tree is built and tested by the other two builds.
fuzz: deps $(FUZZ)/build.ninja
	ninja -C $(FUZZ) $$(ninja -C $(FUZZ) -t targets all | sed -n 's|^\(tests/fuzz/fuzz_[a-z_]*\): .*|\1|p')
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tools/run-tests.sh $(FUZZ) --suite fuzz --no-rebuild

test-fuzz:
	$(MAKE) fuzz FUZZ_SECONDS=10

test-unit: build
	sh tools/run-tests.sh $(BUILD) --suite unit

$(RELEASE)/build.ninja:
	meson setup $(RELEASE) --buildtype=release $(MESON_ARGS)

# Each scenario prints a table (BENCH_ARGS=--json for JSON lines); the
# figures and how to read them are in docs/benchmarks.md.
bench: deps $(RELEASE)/build.ninja
	ninja -C $(RELEASE) bench/atomq-bench
	$(RELEASE)/bench/atomq-bench ring $(BENCH_ARGS)
	$(RELEASE)/bench/atomq-bench churn $(BENCH_ARGS)
	$(RELEASE)/bench/atomq-bench route $(BENCH_ARGS)

# atomqd (release, one worker) and nats-server started on free loopback
# ports, each NATS scenario of atomq-bench run against both with their runs
# alternated, one table (tools/bench-compare.sh; BENCH_ARGS go to
# atomq-bench, e.g. BENCH_ARGS="--runs 9"). About 70 s.
bench-compare: deps $(RELEASE)/build.ninja
	ninja -C $(RELEASE) bench/atomq-bench control/atomqd dataplane/atomq-dataplane
	bash tools/bench-compare.sh $(RELEASE) $(BENCH_ARGS)

# atomqd (release, one worker) and nats-server -js started on free loopback
# ports with their data in a temporary directory, `atomq-bench durable send`
# and `durable append` at sync batch and always against both, runs
# alternated, one table (tools/bench-durable.sh; BENCH_ARGS go to
# atomq-bench, e.g. BENCH_ARGS="--storage mem"). About 2 minutes.
.PHONY: bench-durable
bench-durable: deps $(RELEASE)/build.ninja
	ninja -C $(RELEASE) bench/atomq-bench control/atomqd dataplane/atomq-dataplane
	bash tools/bench-durable.sh $(RELEASE) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(RELEASE) $(SANITIZED) $(FUZZ)
