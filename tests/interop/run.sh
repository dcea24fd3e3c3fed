#!/bin/bash
# Interop of libttrpc with containerd's own Go ttrpc (Debian's 1.1.1), both
# directions: Go client -> C server, C client -> Go server.
# usage: tests/interop/run.sh BUILD_DIR     (prints PASS/FAIL lines)
set -u
build=$1
tmp=$(mktemp -d /tmp/husk-interop-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# Starts a server in the background and waits for its "ready" line.
start_server() { # name socket cmd...
	local name=$1 sock=$2
	shift 2
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pids+=($!)
	for _ in $(seq 100); do
		grep -q '^ready$' "$tmp/$name.out" 2>/dev/null && [ -S "$sock" ] && return 0
		kill -0 "${pids[-1]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "FAIL $name: server did not start"
	sed 's/^/  /' "$tmp/$name.err"
	return 1
}

# Stops the last server; a non-zero exit (ASan report, crash) is a failure.
stop_server() { # name
	local pid=${pids[-1]}
	kill -TERM "$pid"
	wait "$pid"
	local rc=$?
	unset 'pids[-1]'
	if [ $rc -ne 0 ]; then
		echo "FAIL $1-exit: server exited with $rc"
		sed 's/^/  /' "$tmp/$1.err" | head -60
	else
		echo "PASS $1-exit"
	fi
}

run_client() { # prefix cmd...
	local prefix=$1
	shift
	timeout 300 "$@" 2>&1 | sed -e "s/^PASS /PASS $prefix:/" -e "s/^FAIL /FAIL $prefix:/" |
		grep -E '^(PASS|FAIL) '
	[ "${PIPESTATUS[0]}" -eq 0 ] || echo "FAIL $prefix: client exited non-zero"
}

if start_server c-server "$tmp/c.sock" "$build/test/ttrpc-echo-server" --socket "$tmp/c.sock"; then
	run_client go-client-to-c-server "$build/test/go/ttrpc-go-client" -socket "$tmp/c.sock"
	stop_server c-server
fi

if start_server go-server "$tmp/go.sock" "$build/test/go/ttrpc-go-server" -socket "$tmp/go.sock"; then
	run_client c-client-to-go-server "$build/test/ttrpc-interop-client" --socket "$tmp/go.sock"
	stop_server go-server
fi
