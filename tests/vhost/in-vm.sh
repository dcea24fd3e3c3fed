#!/bin/bash
# The vhost-vsock half of tests/vhost/run.sh, run inside its outer VM: a
# Debian kernel that has vhost_vsock, the host's root over 9p (read-only)
# and a tmpfs for everything written. huskctl's "auto" transport must pick
# the kernel's vhost-vsock here, and the inner VMs then talk AF_VSOCK:
# host-initiated connections (Check, container stdio, exec), the
# guest-initiated log stream, two VMs at once with CIDs of their own, a
# container that cannot reach its agent (tests/security), and a teardown
# that leaves nothing behind.
# Prints PASS/FAIL lines on the console, then "in-vm: done".
# usage: tests/vhost/in-vm.sh BUILD_DIR WORK_DIR
set -u
build=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
export TMPDIR=$work

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
H() { "$build/bin/huskctl" --state-dir "$work/s" "$@"; }
RUN() {
	# TCG under TCG: translating is slow here, so the default 16 MiB
	# cache's retranslation made boots 2.5x slower (229 s against 89 s
	# with QEMU's own default, an eighth of this 2 GiB guest: 256 MiB).
	H run --boot-timeout 900000 --tcg-cache 256 --kernel "$build/kernel/bzImage" --initrd "$build/initramfs.cpio.gz" \
		--image-cache "$work/cache" --rootfs "$work/rootfs" "$@"
}
# Waits until VM $1's container runs (ps answers) or huskctl $2 died.
wait_running() {
	local end=$((SECONDS + 900))
	while [ $SECONDS -lt $end ]; do
		H ps "$1" >/dev/null 2>&1 && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.5
	done
	return 1
}
cid_of() { jq -r .cid "$work/s/$1/vm.json" 2>/dev/null; }

"$here/../jail/make-rootfs.sh" "$work/rootfs"
# What a hostile container process runs (tests/security/probe.c).
cp "$build/test/husk-probe" "$work/rootfs/husk-probe"

if [ -c /dev/vhost-vsock ] && H info >"$work/info" 2>&1 &&
	grep -q '^transport vhost (/dev/vhost-vsock opens)$' "$work/info"; then
	pass vhost-transport-detected
else
	fail vhost-transport-detected "$(ls -l /dev/vhost-vsock 2>&1); $(cat "$work/info")"
fi

# Two VMs at once, each with a CID of its own from the kernel: host-
# initiated AF_VSOCK streams (Check, the container's stdio, exec with its
# stdout, stderr and exit code) reach the right agent, and the agent's log
# comes back over the guest-initiated stream (the host listens on a port
# of its own for each VM's CID). One VM boots at a time: two booting at
# once under two layers of TCG take minutes.
RUN -n a -- sleep 600 >/dev/null 2>"$work/a.err" &
pa=$!
t0=$(date +%s%N)
wait_running a $pa && echo "vhost_boot_ms $((($(date +%s%N) - t0) / 1000000))"
RUN -n b --agent-log -- sh -c 'echo out-line; echo err-line >&2; sleep 600' \
	>"$work/b.out" 2>"$work/b.err" &
pb=$!
if wait_running a $pa && wait_running b $pb; then
	ca=$(cid_of a) cb=$(cid_of b)
	ia=$(H info a 2>&1)
	if [ -n "$ca" ] && [ -n "$cb" ] && [ "$ca" -ge 3 ] && [ "$cb" -ge 3 ] && [ "$ca" != "$cb" ] &&
		echo "$ia" | grep -qx 'vm_transport vhost' && echo "$ia" | grep -qx "vm_cid $ca"; then
		pass vhost-two-vms-own-cids
	else
		fail vhost-two-vms-own-cids "a=$ca b=$cb; $ia"
	fi
	v=$(pgrep -x husk-vsockd)
	[ -z "$v" ] && pass vhost-no-vsockd || fail vhost-no-vsockd "husk-vsockd runs: $v"
	H exec b -- sh -c 'echo exec-out; echo exec-err >&2; exit 3' >"$work/e.out" 2>"$work/e.err"
	rc=$?
	if [ $rc -eq 3 ] && [ "$(cat "$work/e.out")" = exec-out ] && [ "$(cat "$work/e.err")" = exec-err ]; then
		pass vhost-exec-stdio-exit-code
	else
		fail vhost-exec-stdio-exit-code "rc=$rc out=$(cat "$work/e.out") err=$(cat "$work/e.err")"
	fi
	out=$(H exec a -- hostname 2>&1)
	[ "$out" = husk ] && pass vhost-exec-other-vm || fail vhost-exec-other-vm "$out"
	# Only the host reaches the agent, over the kernel's transport too: a
	# container in VM a gets no connection to its agent's ports or a stdio
	# port (at CID 1, its own CID, or VM b's), not even racing the host.
	"$build/test/sec-probe-host" --state-dir "$work/s" --name a --label vhost- --cid "$cb" \
		--hang-guard-s 900
	H kill a KILL >/dev/null 2>&1
	H kill b KILL >/dev/null 2>&1
else
	fail vhost-two-vms-own-cids "a: $(tail -3 "$work/a.err"); b: $(tail -3 "$work/b.err")"
	kill $pa $pb 2>/dev/null
fi
wait $pa
ra=$?
wait $pb
rb=$?
[ $ra -eq 137 ] && [ $rb -eq 137 ] && pass vhost-kill-exit-137 || fail vhost-kill-exit-137 "a=$ra b=$rb"
if [ "$(cat "$work/b.out")" = out-line ] && grep -qx err-line "$work/b.err" &&
	grep -q "^husk-agent: info: container .* exec .*: pid [0-9]* exited with status 3$" "$work/b.err"; then
	pass vhost-run-stdio-and-log-stream
else
	fail vhost-run-stdio-and-log-stream "out=$(cat "$work/b.out") err=$(tail -5 "$work/b.err")"
fi

# The agent's own check, behind the guest kernel's (no loopback transport)
# and the transport's: where a loopback transport exists, as in this outer
# VM (run.sh loads it here, never in a guest), a connection to the agent's
# port or console from any peer but the host (CID 2) is closed unanswered.
# husk-agent runs here as a plain process on vsock; husk-probe connects at
# CID 1 and at this VM's own CID, both looped back with peer CID 1.
if [ -d /sys/module/vsock_loopback ]; then
	port=7024
	mkdir -p "$work/agent-run"
	"$build/bin/husk-agent" --listen vsock:$port --no-cgroups --debug-console \
		--run-dir "$work/agent-run" >"$work/agent.out" 2>"$work/agent.err" &
	agent=$!
	for _ in $(seq 600); do grep -q '^ready$' "$work/agent.out" && break; sleep 0.1; done
	out=$("$build/test/husk-probe" direct --port $port --port 1026 2>&1)
	rc=$?
	attempts=$(echo "$out" | grep -c '^attempt ')
	# Connected at the transport (the loopback accepts for the listener),
	# closed by the agent before a byte came back.
	unanswered=$(echo "$out" | grep -c '^attempt .* \(refused\|connected reply=0\)')
	if [ "$attempts" -ge 2 ] && [ "$attempts" = "$unanswered" ] &&
		echo "$out" | grep -q "^attempt cid=1 port=$port connected reply=0$" &&
		echo "$out" | grep -q "^done .* answered=0$" && kill -0 $agent 2>/dev/null &&
		grep -q "port $port: refused a connection from CID 1 " "$work/agent.err" &&
		grep -q "port 1026: refused a connection from CID 1 " "$work/agent.err"; then
		pass vhost-agent-refuses-non-host-peer
	else
		fail vhost-agent-refuses-non-host-peer "rc=$rc $(echo "$out" | tr '\n' '|') agent: $(tail -5 "$work/agent.err" | tr '\n' '|')"
	fi
	kill $agent 2>/dev/null
	wait $agent 2>/dev/null
else
	fail vhost-agent-refuses-non-host-peer "vsock_loopback is not loaded in the outer VM"
fi

left=$(pgrep -f "qemu-system-x86_64|husk-vsockd" || true)
if [ -z "$left" ] && [ -z "$(ls -A "$work/s" 2>/dev/null)" ]; then
	pass vhost-nothing-left
else
	fail vhost-nothing-left "processes: $left; state: $(ls -A "$work/s" 2>/dev/null)"
fi
echo "in-vm: done"
