#!/bin/bash
# make bench: performance figures, each against a peer measured in the same
# run. Prints a table; no thresholds are enforced here (the machine is
# noisy), targets are printed next to the figures.
# usage: tests/bench/run.sh BUILD_DIR
set -u
build=$1
tmp=$(mktemp -d /tmp/husk-bench-XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
ROUNDS=${BENCH_ROUNDS:-5}
CALLS=${BENCH_CALLS:-20000}

start_server() { # sock cmd...
	local sock=$1
	shift
	"$@" >"$tmp/server.out" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		[ -S "$sock" ] && grep -q '^ready$' "$tmp/server.out" && return 0
		sleep 0.1
	done
	echo "bench: server $* did not start" >&2
	cat "$tmp/server.out" >&2
	exit 1
}
stop_server() {
	kill "${pids[-1]}" 2>/dev/null
	wait "${pids[-1]}" 2>/dev/null
	unset 'pids[-1]'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== ttrpc: unary round trips over a unix socket, one connection, same C client"
printf '%-34s %12s %12s %8s\n' "case" "C server" "Go server" "C/Go"
for conc in 1 16; do
	: >"$tmp/c.rates"
	: >"$tmp/go.rates"
	for _ in $(seq "$ROUNDS"); do
		# Alternate servers so drift on a noisy machine hits both alike.
		start_server "$tmp/c.sock" "$build/test/ttrpc-echo-server-musl" --socket "$tmp/c.sock"
		"$build/test/ttrpc-bench" --socket "$tmp/c.sock" --calls "$CALLS" --concurrency "$conc" |
			awk '{print $2}' >>"$tmp/c.rates"
		stop_server
		start_server "$tmp/go.sock" "$build/test/go/ttrpc-go-server" -socket "$tmp/go.sock"
		"$build/test/ttrpc-bench" --socket "$tmp/go.sock" --calls "$CALLS" --concurrency "$conc" |
			awk '{print $2}' >>"$tmp/go.rates"
		stop_server
	done
	c=$(median <"$tmp/c.rates")
	g=$(median <"$tmp/go.rates")
	printf '%-34s %12s %12s %7.2fx\n' "calls/s, $conc in flight (median of $ROUNDS)" "$c" "$g" \
		"$(echo "$c $g" | awk '{print $1/$2}')"
done
echo "   target: C server >= 2x the Go server with a single-threaded loop"

start_server "$tmp/c.sock" "$build/test/ttrpc-echo-server-musl" --socket "$tmp/c.sock"
idle=$(rss_kib "${pids[-1]}")
"$build/test/ttrpc-bench" --socket "$tmp/c.sock" --calls "$CALLS" --concurrency 16 >/dev/null
after=$(rss_kib "${pids[-1]}")
stop_server
start_server "$tmp/go.sock" "$build/test/go/ttrpc-go-server" -socket "$tmp/go.sock"
goidle=$(rss_kib "${pids[-1]}")
stop_server
echo
echo "== ttrpc: server memory (VmRSS)"
printf '%-34s %12s %12s\n' "case" "C server" "Go server"
printf '%-34s %9s KiB %9s KiB\n' "idle after start" "$idle" "$goidle"
printf '%-34s %9s KiB\n' "after $CALLS calls, 16 in flight" "$after"
echo "   target: C server idle RSS <= 1024 KiB (static musl build, as the guest runs it)"

# ---- husk-jail run vs runc run ------------------------------------------------
echo
echo "== container start to exit: '/bin/true' in the same bundle, alternating"
if [ "$(id -u)" -ne 0 ] || ! command -v runc >/dev/null; then
	echo "   skipped: needs root and runc"
else
	JROUNDS=${BENCH_JAIL_ROUNDS:-21}
	# runc refuses a symlinked rootfs: a real directory in the bundle.
	"$(dirname "$0")/../jail/make-rootfs.sh" "$tmp/bundle/rootfs"
	jq '.process.args=["/bin/true"] | .process.terminal=false' \
		"$(dirname "$0")/../jail/base-config.json" >"$tmp/bundle/config.json"
	now_ns() { date +%s%N; }
	: >"$tmp/jail.ms"
	: >"$tmp/runc.ms"
	for i in $(seq "$JROUNDS"); do
		t0=$(now_ns)
		"$build/bin/husk-jail" --root "$tmp/jail-root" --no-cgroups run --bundle "$tmp/bundle" "b$i" \
			</dev/null >/dev/null 2>>"$tmp/jail.err" || echo "husk-jail run failed" >&2
		t1=$(now_ns)
		runc --root "$tmp/runc-root" run --bundle "$tmp/bundle" "b$i" </dev/null >/dev/null \
			2>>"$tmp/runc.err" || echo "runc run failed" >&2
		t2=$(now_ns)
		echo "$(((t1 - t0) / 1000))" >>"$tmp/jail.ms"
		echo "$(((t2 - t1) / 1000))" >>"$tmp/runc.ms"
	done
	j=$(median <"$tmp/jail.ms")
	r=$(median <"$tmp/runc.ms")
	printf '%-34s %12s %12s %8s\n' "case" "husk-jail" "runc" "ratio"
	printf '%-34s %9s us %9s us %7.2fx\n' "run /bin/true (median of $JROUNDS)" "$j" "$r" \
		"$(echo "$j $r" | awk '{print $1/$2}')"
	echo "   target: husk-jail <= 0.25x runc (husk-jail without cgroups; runc uses this host's v1 cgroups)"
fi

# ---- husk-agent footprint ---------------------------------------------------------
echo
echo "== husk-agent footprint (static musl build)"
strip -o "$tmp/husk-agent.stripped" "$build/bin/husk-agent"
agent_size=$(stat -c %s "$tmp/husk-agent.stripped")
"$build/bin/husk-agent" --listen "unix:$tmp/agent.sock" --run-dir "$tmp/agent-run" --no-cgroups \
	>"$tmp/agent.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^ready$' "$tmp/agent.out" && break; sleep 0.05; done
agent_rss=$(rss_kib "${pids[-1]}")
stop_server
printf '%-34s %12s %12s\n' "figure" "husk-agent" "target"
printf '%-34s %8s KiB %8s KiB\n' "stripped size" "$((agent_size / 1024))" 1536
printf '%-34s %8s KiB %8s KiB\n' "RSS after start (--listen)" "$agent_rss" 2048
if [ -f "$build/initramfs.cpio.gz" ]; then
	printf '%-34s %8s KiB %8s KiB\n' "initramfs.cpio.gz" \
		"$(($(stat -c %s "$build/initramfs.cpio.gz") / 1024))" 1024
fi
"$(dirname "$0")/vm.sh" "$build"

echo
echo "== containerd: ctr run through io.containerd.husk.v2 and io.containerd.runc.v2"
CTR_BENCH_ONLY=1 "$(dirname "$0")/../containerd/run.sh" "$build"

# ---- a Kubernetes pod through containerd's CRI -------------------------------------
echo
echo "== Kubernetes pod through containerd's CRI (tests/cri, handlers husk and runc, same run)"
if [ "$(id -u)" -ne 0 ]; then
	echo "   skipped: needs root (private namespaces, CNI)"
else
	declare -A pod_ms pod_kib
	for h in husk runc; do
		if ! "$(dirname "$0")/../cri/run.sh" "$build" --handler "$h" --run '^TestHuskBenchPod$' \
			--logs "$tmp/cri-$h" >"$tmp/cri-$h.out" 2>&1; then
			echo "   $h: the CRI harness failed:"
			tail -n 5 "$tmp/cri-$h.out" | sed 's/^/     /'
		fi
		f=$tmp/cri-$h/tests/TestHuskBenchPod.log
		pod_ms[$h]=$(awk '$1 == "HUSK-BENCH" && $2 == "pod-first-output-ms" { print $3 }' "$f" 2>/dev/null)
		pod_kib[$h]=$(awk '$1 == "HUSK-BENCH" && $2 == "pod-pss-kib" { print $3 }' "$f" 2>/dev/null)
	done
	printf '%-44s %12s %12s %8s\n' "figure (median of 3 pods, one at a time)" "husk" "runc" "husk/runc"
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }'; }
	printf '%-44s %9s ms %9s ms %8s\n' "RunPodSandbox to first output in its log" \
		"${pod_ms[husk]:--}" "${pod_ms[runc]:--}" "$(ratio "${pod_ms[husk]:-0}" "${pod_ms[runc]:-0}")"
	printf '%-44s %8s KiB %8s KiB %8s\n' "host memory of a running pod (PSS)" \
		"${pod_kib[husk]:--}" "${pod_kib[runc]:--}" "$(ratio "${pod_kib[husk]:-0}" "${pod_kib[runc]:-0}")"
	echo "   PSS: the pod's shim and every process under it (husk: QEMU, husk-vsockd, virtiofsd;"
	echo "   runc: pause and the container). The pod has a CNI bridge network and CRI's host files."
fi
