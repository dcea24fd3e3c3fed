#!/bin/bash
# containerd's own Go task client (runtime/v2/task from containerd 1.6,
# Debian's golang-github-containerd-containerd-dev) drives husk-agent's
# containerd.task.v2.Task service over ttrpc through a whole container
# lifecycle; see tests/agent/go/client/main.go for the steps.
# usage: tests/agent/go-lifecycle.sh BUILD_DIR     (prints PASS/FAIL lines)
# Env: HUSK_AGENT overrides BUILD_DIR/test/husk-agent (the ASan build).
set -u
build=$1
agent=${HUSK_AGENT:-$build/test/husk-agent}
client=$build/test/go-agent/agent-go-client
here=$(cd "$(dirname "$0")" && pwd) || exit 1
root=$(cd "$here/../.." && pwd) || exit 1

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP go-task-client: needs root"
	exit 0
fi

tmp=$(mktemp -d /tmp/husk-go-agent-XXXXXX) || exit 1
agent_pid=
cleanup() {
	if [ -n "$agent_pid" ]; then
		kill -KILL "$agent_pid" 2>/dev/null
		wait "$agent_pid" 2>/dev/null
	fi
	# Whatever a failed run left mounted goes first.
	grep -o " $tmp/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
	rm -rf "$tmp"
}
trap cleanup EXIT
chmod 0755 "$tmp"

# Every process below PID, children first.
descendants() { # pid
	local c
	for c in $(pgrep -P "$1"); do
		descendants "$c"
		echo "$c"
	done
}

if ! log=$("$here/go/build.sh" "$build/test/go-agent" 2>&1); then
	echo "FAIL go-build: tests/agent/go/build.sh failed"
	printf '%s\n' "$log" | sed 's/^/  /' | head -40
	exit 1
fi
if [ ! -x "$agent" ]; then
	echo "FAIL go-task-client: $agent is not built"
	exit 1
fi

# One bundle per container: the agent keeps state per id.
make_bundle() { # dir script
	mkdir -p "$1" &&
		"$root/tests/jail/make-rootfs.sh" "$1/rootfs" &&
		jq --arg s "$2" '.process.args = ["sh", "-c", $s]' \
			"$root/tests/jail/base-config.json" >"$1/config.json"
}
# The script's $((6*7)) is for the container's shell to expand.
# shellcheck disable=SC2016
if ! make_bundle "$tmp/go1" 'echo out-$((6*7)); echo err >&2; exit 3' ||
	! make_bundle "$tmp/go2" 'exec sleep 1000'; then
	echo "FAIL go-task-client: making the bundles failed"
	exit 1
fi

sock=$tmp/agent.sock
"$agent" --listen "unix:$sock" --run-dir "$tmp/run" --no-cgroups \
	>"$tmp/agent.out" 2>"$tmp/agent.err" &
agent_pid=$!
started=
for _ in $(seq 300); do
	if grep -q '^ready' "$tmp/agent.out" 2>/dev/null && [ -S "$sock" ]; then
		started=1
		break
	fi
	kill -0 "$agent_pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$started" ]; then
	echo "FAIL go-task-client: husk-agent did not print ready"
	sed 's/^/  /' "$tmp/agent.err" | head -40
	exit 1
fi

timeout 180 "$client" -socket "$sock" -bundle "$tmp/go1" -bundle2 "$tmp/go2" \
	>"$tmp/client.out" 2>&1
rc=$?
grep -E '^(PASS|FAIL) ' "$tmp/client.out"
if [ "$rc" -ne 0 ]; then
	if ! grep -q '^FAIL ' "$tmp/client.out"; then
		echo "FAIL go-task-client: client exited with status $rc"
		sed 's/^/  /' "$tmp/client.out" | head -40
	fi
	echo "  husk-agent stderr:"
	sed 's/^/  /' "$tmp/agent.err" | head -60
fi

# The agent kills what is left on SIGTERM and must exit 0 (no ASan report).
left=$(descendants "$agent_pid")
kill -TERM "$agent_pid"
wait "$agent_pid"
arc=$?
agent_pid=
if [ "$arc" -eq 0 ]; then
	echo "PASS agent-exit"
else
	echo "FAIL agent-exit: husk-agent exited with status $arc"
	sed 's/^/  /' "$tmp/agent.err" | head -80
fi
stray=
for p in $left; do
	if kill -0 "$p" 2>/dev/null; then
		stray="$stray $p"
		kill -KILL "$p" 2>/dev/null
	fi
done
if [ -n "$stray" ]; then
	echo "FAIL agent-exit-no-leftovers: still running after the agent exited:$stray"
else
	echo "PASS agent-exit-no-leftovers"
fi
[ "$rc" -eq 0 ] && [ "$arc" -eq 0 ] && [ -z "$stray" ]
