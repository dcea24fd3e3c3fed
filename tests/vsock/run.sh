#!/bin/bash
# Integration test of husk-vsockd against a real guest: QEMU microvm (TCG)
# with vhost-user-vsock-device backed by the daemon, the guest kernel
# BUILD/kernel/bzImage, and tests/vsock/guest_echo.c as /init.
#
# Prints PASS/FAIL lines for tests/run.sh and figures:
#   vsock_echo_mb_s N     64 MiB host -> guest echo -> host, MiB per second
#   vsockd_rss_kib N      the daemon's VmRSS after the transfers
#
# usage: tests/vsock/run.sh BUILD_DIR
set -eu

build=${1:?usage: $0 BUILD_DIR}
vsockd=${VSOCKD:-$build/bin/husk-vsockd}
peer=$build/test/vsock-host-peer
init=$build/test/vsock-guest-echo
kernel=${VSOCK_KERNEL:-$build/kernel/bzImage}
qemu=${QEMU:-qemu-system-x86_64}
# Hang detectors only, never performance assertions.
limit=${VSOCK_TIMEOUT:-300}
echo_mib=${VSOCK_ECHO_MIB:-64}

for f in "$vsockd" "$peer" "$init" "$kernel"; do
	if [ ! -f "$f" ]; then
		echo "FAIL vsock-prerequisites: $f is missing (run 'make all kernel')"
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/husk-vsock.XXXXXX")
vu=$tmp/vu.sock
uds=$tmp/hybrid.sock
serial=$tmp/serial.log
pids=()
qpid= dpid=
cleanup() {
	local p
	for p in "$qpid" "${pids[@]}" "$dpid"; do
		[ -n "$p" ] || continue
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

failed=0
fail() { # name why
	echo "FAIL $1: $2"
	failed=$((failed + 1))
}
pass() {
	echo "PASS $1"
}
show_logs() {
	echo "----- serial log (tail) -----"
	tail -n 40 "$serial" 2>/dev/null || true
	echo "----- husk-vsockd stderr (tail) -----"
	tail -n 40 "$tmp/vsockd.err" 2>/dev/null || true
	echo "-----"
}

# wait_for SECS CMD...: polls CMD every 50 ms until it succeeds.
wait_for() {
	local secs=$1 i=0
	shift
	while ! "$@"; do
		i=$((i + 1))
		[ "$i" -lt $((secs * 20)) ] || return 1
		sleep 0.05
	done
}
not_running() { ! kill -0 "$1" 2>/dev/null; }
# wait_pid SECS PID: waits for a child to exit; its status in $wrc.
wait_pid() {
	local secs=$1 pid=$2
	wrc=124
	if wait_for "$secs" not_running "$pid"; then
		wrc=0
		wait "$pid" || wrc=$?
	fi
}
in_serial() { grep -q "$1" "$serial" 2>/dev/null; }

# ---- initramfs: just /init ----------------------------------------------------
mkdir "$tmp/root"
cp "$init" "$tmp/root/init"
chmod 0755 "$tmp/root/init"
(cd "$tmp/root" && printf 'init\n' | cpio -o -H newc -R 0:0 --quiet) | gzip -n -1 >"$tmp/initrd.gz"

# ---- host listeners the guest connects to at boot -----------------------------
"$peer" listen "${uds}_1025" >"$tmp/hello.out" 2>"$tmp/hello.err" &
hello_pid=$!
pids+=("$hello_pid")
# Reads only after 2 s: the guest's stream must wait on credit meanwhile.
"$peer" listen "${uds}_1026" 2 >"$tmp/stream.out" 2>"$tmp/stream.err" &
stream_pid=$!
pids+=("$stream_pid")
wait_for 10 test -S "${uds}_1025" -a -S "${uds}_1026" || {
	echo "FAIL vsock-setup: host listeners did not come up"
	exit 1
}

# ---- daemon and VM ------------------------------------------------------------
"$vsockd" --socket "$vu" --uds "$uds" --guest-cid 3 --foreground >"$tmp/vsockd.out" \
	2>"$tmp/vsockd.err" &
dpid=$!
if wait_for 10 grep -q '^ready$' "$tmp/vsockd.out" && [ -S "$vu" ] && [ -S "$uds" ]; then
	pass vsockd-ready
else
	fail vsockd-ready "husk-vsockd did not print ready with both sockets listening"
	show_logs
	exit 1
fi

# Under TCG the guest's TSC runs at the host's rate. On a loaded host the
# guest's PIT-based calibration can fail, leaving it without a usable clock
# (it hangs after "Marking TSC unstable"); telling it the rate avoids that.
append="console=ttyS0 panic=-1"
# The measured TSC rate (build/test/tsc-khz), not "cpu MHz".
khz=$("$build/test/tsc-khz" 2>/dev/null || true)
if [[ $khz =~ ^[0-9]+$ ]]; then
	append="$append tsc_early_khz=$khz no_timer_check tsc=reliable"
fi
timeout -k 5 "$limit" "$qemu" -M microvm,memory-backend=mem \
	-object memory-backend-memfd,id=mem,size=256M,share=on \
	-global virtio-mmio.force-legacy=false \
	-accel tcg -cpu max -m 256 -smp 1 -nodefaults -no-user-config -display none -no-reboot \
	-chardev socket,id=vs,path="$vu" -device vhost-user-vsock-device,chardev=vs \
	-kernel "$kernel" -initrd "$tmp/initrd.gz" -append "$append" \
	-serial "file:$serial" </dev/null >"$tmp/qemu.out" 2>&1 &
qpid=$!

if wait_for 60 in_serial 'GUEST: listening'; then
	pass guest-boot
else
	fail guest-boot "the guest never listened on vsock (see the serial log)"
	cat "$tmp/qemu.out"
	show_logs
	exit 1
fi
# The vhost-user socket name goes once QEMU is connected.
if [ ! -e "$vu" ]; then
	pass vhost-user-socket-removed-after-accept
else
	fail vhost-user-socket-removed-after-accept "$vu still exists"
fi

# ---- host -> guest: small echo --------------------------------------------------
out=$(printf 'ping-123\n' | timeout 30 "$peer" connect "$uds" 1024 2>"$tmp/small.err") || true
reply=$(cat "$tmp/small.err")
if [ "$out" = "ping-123" ] && [[ $reply =~ ^handshake:\ OK\ ([0-9]+)$ ]] &&
	[ "${BASH_REMATCH[1]}" -ge $((1 << 30)) ]; then
	pass echo-small
else
	fail echo-small "got '$out', handshake '$reply'"
fi

# ---- host -> guest: bulk echo, byte-identical -------------------------------------
head -c "$((echo_mib << 20))" /dev/urandom >"$tmp/bulk.in"
want=$(sha256sum <"$tmp/bulk.in" | cut -d' ' -f1)
t0=$(date +%s%N)
got=$(timeout "$limit" "$peer" connect "$uds" 1024 <"$tmp/bulk.in" 2>"$tmp/bulk.err" |
	sha256sum | cut -d' ' -f1)
t1=$(date +%s%N)
if [ "$got" = "$want" ]; then
	pass "echo-${echo_mib}mib-sha256"
	ms=$(((t1 - t0) / 1000000))
	[ "$ms" -gt 0 ] || ms=1
	echo "vsock_echo_mb_s $((echo_mib * 1000 / ms))"
else
	fail "echo-${echo_mib}mib-sha256" "sha256 of the echo $got != $want sent ($(cat "$tmp/bulk.err"))"
	show_logs
fi
rm -f "$tmp/bulk.in"

# ---- several connections at once ----------------------------------------------------
head -c 1048576 /dev/urandom >"$tmp/multi.in"
want=$(sha256sum <"$tmp/multi.in" | cut -d' ' -f1)
mpids=()
for i in 1 2 3 4 5 6 7 8; do
	timeout 120 "$peer" connect "$uds" 1024 <"$tmp/multi.in" >"$tmp/multi.$i" 2>/dev/null &
	mpids+=("$!")
done
bad=0
for i in 1 2 3 4 5 6 7 8; do
	wait "${mpids[$((i - 1))]}" || bad=$((bad + 1))
	[ "$(sha256sum <"$tmp/multi.$i" | cut -d' ' -f1)" = "$want" ] || bad=$((bad + 1))
done
if [ "$bad" = 0 ]; then
	pass echo-8-concurrent
else
	fail echo-8-concurrent "$bad of 8 concurrent 1 MiB echoes failed or differ"
fi

# ---- host -> guest: a guest that does not read: credit, not buffering -----------------
want=$("$peer" pattern 8388608 | "$peer" fnv)
got=$("$peer" pattern 8388608 | timeout 120 "$peer" connect "$uds" 1027 2>/dev/null) || true
if [ "$got" = "sink $want" ]; then
	pass slow-guest-reader
else
	fail slow-guest-reader "guest got '$got', want 'sink $want'"
fi

# ---- host: CONNECT to a guest port nobody listens on -> EOF, no OK ------------------------
rc=0
timeout 30 "$peer" connect "$uds" 4444 </dev/null >/dev/null 2>"$tmp/refused.err" || rc=$?
if [ "$rc" = 3 ] && grep -q '^handshake: EOF$' "$tmp/refused.err"; then
	pass host-connect-refused
else
	fail host-connect-refused "exit $rc, $(cat "$tmp/refused.err")"
fi
rc=0
timeout 30 "$peer" connect "$uds" not-a-port </dev/null >/dev/null 2>"$tmp/bad.err" || rc=$?
if [ "$rc" = 3 ]; then
	pass host-bad-handshake
else
	fail host-bad-handshake "exit $rc, $(cat "$tmp/bad.err")"
fi

# ---- guest -> host --------------------------------------------------------------------------
wait_pid 30 "$hello_pid"
if [ "$wrc" = 0 ] && [ "$(cat "$tmp/hello.out")" = "hello-from-guest" ] && in_serial 'GUEST: hello sent'; then
	pass guest-connect-hello
else
	fail guest-connect-hello "listener exit $wrc, got '$(cat "$tmp/hello.out")'"
fi
if wait_for 30 in_serial 'GUEST: refused-'; in_serial 'GUEST: refused-ok'; then
	pass guest-connect-refused-rst
else
	fail guest-connect-refused-rst "$(grep 'GUEST: refused' "$serial" || echo 'no report from the guest')"
fi
wait_pid 120 "$stream_pid"
want=$("$peer" pattern 16777216 | "$peer" fnv)
got=$("$peer" fnv <"$tmp/stream.out")
if [ "$wrc" = 0 ] && [ "$got" = "$want" ] && wait_for 30 in_serial 'GUEST: stream sent'; then
	pass guest-stream-16mib-slow-host-reader
else
	fail guest-stream-16mib-slow-host-reader "listener exit $wrc, got '$got', want '$want'"
fi
rm -f "$tmp/stream.out"

# ---- memory -----------------------------------------------------------------------------------
# VmRSS counts every page of guest RAM the daemon has touched (RssShmem:
# the memfd QEMU shares, already counted in QEMU); the daemon's own memory
# is its private pages.
if [ -r "/proc/$dpid/status" ]; then
	echo "vsockd_rss_kib $(awk '/^VmRSS:/ { print $2 }' "/proc/$dpid/status")"
	echo "vsockd_private_kib $(awk '/^Private_(Clean|Dirty):/ { s += $2 } END { print s }' \
		"/proc/$dpid/smaps_rollup")"
	grep -E '^Rss(Anon|File|Shmem):' "/proc/$dpid/status" | tr -s ' \t' ' ' | sed 's/^/# /'
fi

# ---- the VM goes away: the daemon follows and cleans up -----------------------------------------
if grep -qiE 'broken|not supported|error' "$tmp/vsockd.err"; then
	fail vsockd-no-errors "husk-vsockd reported: $(grep -iE 'broken|not supported|error' "$tmp/vsockd.err" | head -5)"
else
	pass vsockd-no-errors
fi
kill "$qpid"
wait "$qpid" 2>/dev/null || true
qpid=
wait_pid 15 "$dpid"
if [ "$wrc" = 0 ] && [ ! -e "$uds" ] && [ ! -e "$vu" ]; then
	pass vsockd-exits-with-vm
	dpid=
elif [ "$wrc" = 124 ]; then
	fail vsockd-exits-with-vm "husk-vsockd still running 15 s after QEMU was killed"
else
	fail vsockd-exits-with-vm "exit status $wrc; sockets left: $(ls "$tmp" | grep sock | tr '\n' ' ')"
	dpid=
fi

[ "$failed" = 0 ] || show_logs
[ "$failed" = 0 ]
