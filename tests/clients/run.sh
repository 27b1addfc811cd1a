#!/bin/sh
# tests/clients/run.sh - build (if needed) and run a NATS client conformance
# check against a server.
#
#   sh tests/clients/run.sh go|js BUILD_DIR URL [ARGS...]
#
#   go   builds tests/clients/go/natscheck into BUILD_DIR/natscheck-go (GOPATH
#        mode against Debian's golang-github-nats-io-go-nats-dev) when it is
#        missing or older than its source, then runs it.
#   js   runs tests/clients/js/natscheck.mjs with node, using
#        tests/clients/js/node_modules when present, else installing the
#        pinned packages (npm ci) once into BUILD_DIR/natscheck-js.
#
# ARGS go to the check program, e.g. "-only pubsub,headers" or "-v".
# Exit status: the check's (0 all passed, 1 a check failed, 2 usage), or 77
# (meson's "skipped") with the reason on stdout when the toolchain, the
# nats.go sources or the npm packages cannot be had.
#
# Environment: NATSCHECK_GOPATH (default /usr/share/gocode) where the nats.go
# and nuid sources live; GOCACHE (default BUILD_DIR/go-cache).
set -eu

usage() {
	echo "usage: sh tests/clients/run.sh go|js BUILD_DIR URL [ARGS...]" >&2
	exit 2
}

skip() {
	echo "SKIP: $*"
	exit 77
}

[ $# -ge 3 ] || usage
lang=$1
build=$2
url=$3
shift 3

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build"
build=$(cd "$build" && pwd)

run_go() {
	command -v go >/dev/null 2>&1 || skip "go not found (apt-get install golang-go)"
	gopath=${NATSCHECK_GOPATH:-/usr/share/gocode}
	for pkg in github.com/nats-io/nats.go github.com/nats-io/nuid; do
		[ -d "$gopath/src/$pkg" ] ||
			skip "$pkg sources not found under $gopath/src (apt-get install golang-github-nats-io-go-nats-dev)"
	done
	src=$here/go/natscheck/main.go
	out=$build/natscheck-go
	if [ ! -x "$out" ] || [ -n "$(find "$src" -newer "$out" 2>/dev/null)" ]; then
		tmp=$out.tmp.$$
		# GOPATH mode: Debian's nuid has no go.mod, so module mode fails.
		if ! (unset GOFLAGS GOWORK
			GO111MODULE=off GOPATH="$gopath" GOPROXY=off \
				GOCACHE="${GOCACHE:-$build/go-cache}" \
				go build -o "$tmp" "$src"); then
			rm -f "$tmp"
			echo "FAIL build: go build of $src failed"
			exit 1
		fi
		mv -f "$tmp" "$out"
	fi
	exec "$out" -url "$url" "$@"
}

run_js() {
	command -v node >/dev/null 2>&1 || skip "node not found (Node.js >= 16 needed)"
	major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
	[ "$major" -ge 16 ] 2>/dev/null || skip "node $major is too old (>= 16 needed)"
	src=$here/js
	if [ -f "$src/node_modules/nats/package.json" ]; then
		exec node "$src/natscheck.mjs" "$url" "$@"
	fi
	# Install the pinned packages once into the build dir, leaving the
	# source tree alone; a copy of the script runs there so that "nats"
	# resolves from that node_modules.
	dir=$build/natscheck-js
	if [ ! -f "$dir/node_modules/nats/package.json" ] ||
		[ -n "$(find "$src/package-lock.json" -newer "$dir/node_modules/.natscheck-installed" 2>/dev/null)" ]; then
		command -v npm >/dev/null 2>&1 ||
			skip "$src/node_modules is missing and npm is not installed"
		tmp=$dir.tmp.$$
		rm -rf "$tmp"
		mkdir -p "$tmp"
		cp "$src/package.json" "$src/package-lock.json" "$tmp/"
		# From npm's cache if it can, else from the registry.
		if ! (cd "$tmp" && { npm ci --offline --no-audit --no-fund --loglevel=error >/dev/null 2>&1 ||
			npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2; }); then
			rm -rf "$tmp"
			skip "npm ci failed: cannot install the nats package (run 'npm ci' in $src)"
		fi
		touch "$tmp/node_modules/.natscheck-installed"
		rm -rf "$dir"
		mv "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # another run won the race
	fi
	cp "$src/natscheck.mjs" "$dir/natscheck.mjs.tmp.$$"
	mv -f "$dir/natscheck.mjs.tmp.$$" "$dir/natscheck.mjs"
	exec node "$dir/natscheck.mjs" "$url" "$@"
}

case $lang in
go) run_go "$@" ;;
js) run_js "$@" ;;
*) usage ;;
esac
