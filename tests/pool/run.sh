#!/bin/bash
# huskd, the pool of ready VMs, through huskctl: it fills and refills, a VM
# is handed out once, the container in a pooled VM behaves as in a cold
# one, a client that dies takes its VM along, a ready VM that dies is
# replaced, a huskd that dies takes its ready VMs but not those handed
# out, SIGTERM stops it cleanly, without huskd (or of another shape)
# huskctl boots cold, and bad shapes are refused. Nothing may be left:
# no process, no directory. Prints PASS/FAIL lines for tests/run.sh.
# usage: tests/pool/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
huskctl=$build/bin/huskctl
huskd=$build/bin/huskd
kernel=$build/kernel/bzImage
initrd=$build/initramfs.cpio.gz
for f in "$huskctl" "$huskd" "$kernel" "$initrd" "$build/bin/husk-vsockd"; do
	if [ ! -e "$f" ]; then
		echo "FAIL pool-prerequisites: $f is missing (run 'make')"
		exit 1
	fi
done

tmp=$(mktemp -d /tmp/husk-pool-XXXXXX)
state=$tmp/state
sock=$tmp/huskd.sock
huskd_pid=
cleanup() {
	[ -n "$huskd_pid" ] && kill -9 "$huskd_pid" 2>/dev/null
	pkill -9 -f -- "$state" 2>/dev/null
	pkill -9 -f -- "$sock" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
export HUSK_STATE_DIR=$state
run_args=(run --kernel "$kernel" --initrd "$initrd" --image-cache "$tmp/cache")
RUN() { "$huskctl" "${run_args[@]}" "$@"; }
STATUS() { "$huskd" status --socket "$sock"; }
# One field of the first shape in `huskd status`.
field() { STATUS 2>/dev/null | jq -r ".shapes[0].$1"; }
wait_field() { # field value seconds
	local i
	for i in $(seq 1 $(($3 * 5))); do
		[ "$(field "$1")" = "$2" ] && return 0
		sleep 0.2
	done
	return 1
}
start_huskd() { # shape...
	local args=() s
	for s in "$@"; do args+=(--shape "$s"); done
	"$huskd" --socket "$sock" --state-dir "$state" "${args[@]}" >>"$tmp/huskd.log" 2>&1 &
	huskd_pid=$!
	local i
	for i in $(seq 1 50); do
		[ -S "$sock" ] && return 0
		sleep 0.1
	done
	return 1
}
# Processes of this suite: huskd, its keepers (a keeper's command line is
# huskd's, with "--state-dir $state"), QEMU and husk-vsockd (their paths
# are under $state/).
vm_procs() { pgrep -f -- "$state" | wc -l; }
# Until they are gone, bounded (a keeper booting when huskd died finishes
# its boot before it finds huskd gone).
wait_no_procs() { # seconds
	local i
	for i in $(seq 1 $(($1 * 5))); do
		[ "$(vm_procs)" = 0 ] && return 0
		sleep 0.2
	done
	return 1
}
shape=kernel=$kernel,initrd=$initrd,ready=2

rootfs=$tmp/rootfs
"$here/../jail/make-rootfs.sh" "$rootfs" >/dev/null

# ---- it fills ----
if start_huskd "$shape" && wait_field ready 2 120; then
	pass pool-fills
else
	fail pool-fills "huskd never had 2 VMs ready: $(STATUS 2>&1 | tr '\n' ' ' | cut -c1-400); $(tail -5 "$tmp/huskd.log")"
fi

# ---- a container in a pooled VM ----
taken=$(field taken)
out=$(RUN --pool "$sock" --rootfs "$rootfs" -- sh -c 'echo hello from $(hostname); exit 3' 2>"$tmp/err")
rc=$?
if [ "$out" = "hello from husk" ] && [ "$rc" = 3 ] && [ "$(field taken)" = $((taken + 1)) ]; then
	pass pool-take-runs
else
	fail pool-take-runs "rc=$rc out='$out' taken $(field taken) (was $taken): $(head -c 300 "$tmp/err")"
fi

# ---- refilled, and nothing left of the VM taken ----
if wait_field ready 2 60 && [ "$(ls "$state" | wc -l)" = 2 ]; then
	pass pool-refills
else
	fail pool-refills "ready $(field ready), state holds: $(ls "$state" | tr '\n' ' ')"
fi

# ---- two clients at once get two VMs ----
wait_field ready 2 60
taken=$(field taken)
ready_vms=$(STATUS | jq -r '.shapes[0].ready_vms | sort | join(" ")' )
para=()
for i in 1 2; do
	RUN --pool "$sock" --rootfs "$rootfs" -- cat /proc/sys/kernel/random/boot_id >"$tmp/para$i" 2>&1 &
	para+=($!)
done
wait "${para[@]}"
# Each guest's boot_id: the same one twice would be one VM handed out twice.
a=$(cat "$tmp/para1") b=$(cat "$tmp/para2")
if [ "${#a}" = 36 ] && [ "${#b}" = 36 ] && [ "$a" != "$b" ] && [ "$(field taken)" = $((taken + 2)) ]; then
	pass pool-no-double-handout
else
	fail pool-no-double-handout "taken $(field taken) (was $taken), ready were $ready_vms; outputs '$a' '$b'"
fi

# ---- a client killed: its VM goes, with its directory ----
wait_field ready 2 60
ready_list() { STATUS | jq -r '.shapes[0].ready_vms[]' | sort; }
before=$(ready_list)
# huskctl itself in the background (not a shell function's subshell), so
# that the kill reaches it.
"$huskctl" "${run_args[@]}" --pool "$sock" --rootfs "$rootfs" -- sleep 300 >/dev/null 2>&1 &
client=$!
taken_vm=
for i in $(seq 1 100); do
	taken_vm=$(comm -23 <(echo "$before") <(ready_list) | head -1)
	[ -n "$taken_vm" ] && break
	sleep 0.1
done
sleep 2 # the container runs
kill -9 "$client"
wait "$client" 2>/dev/null
gone=
for i in $(seq 1 100); do
	if [ -n "$taken_vm" ] && [ ! -e "$state/$taken_vm" ] && ! pgrep -f -- "$state/$taken_vm/" >/dev/null; then
		gone=1
		break
	fi
	sleep 0.1
done
if [ -n "$gone" ]; then
	pass pool-client-killed-vm-reaped
else
	fail pool-client-killed-vm-reaped "VM '$taken_vm' left: $(ls "$state" | tr '\n' ' '); $(pgrep -af -- "$state/$taken_vm/" | cut -c1-100)"
fi

# ---- a ready VM that dies is replaced ----
wait_field ready 2 60
deaths=$(field ready_vm_deaths)
victim=$(STATUS | jq -r '.shapes[0].ready_vms[0]' )
pkill -9 -f -- "qemu-system-x86_64.*$state/$victim/"
if wait_field ready_vm_deaths $((deaths + 1)) 20 && wait_field ready 2 60 &&
	[ ! -e "$state/$victim" ] && ! pgrep -f -- "$state/$victim/" >/dev/null; then
	pass pool-ready-vm-died-replaced
else
	fail pool-ready-vm-died-replaced "deaths $(field ready_vm_deaths) ready $(field ready); $victim $(ls -d "$state/$victim" 2>&1)"
fi

# ---- another shape, or --name: a cold VM, the pool untouched ----
taken=$(field taken)
out=$(RUN --pool "$sock" --memory 128 --rootfs "$rootfs" -- echo cold 2>&1)
out2=$(RUN --name named1 --rootfs "$rootfs" -- cat /proc/sys/kernel/hostname 2>&1)
err=$(RUN --pool "$sock" --name named2 --rootfs "$rootfs" -- true 2>&1)
rc=$?
if [ "$out" = cold ] && [ "$out2" = husk ] && [ "$(field taken)" = "$taken" ] && [ "$rc" != 0 ] &&
	[[ "$err" == *"--pool"*"--name"* ]]; then
	pass pool-other-shape-boots-cold
else
	fail pool-other-shape-boots-cold "out='$out' out2='$out2' taken $(field taken) (was $taken) rc=$rc err='$err'"
fi

# ---- huskd killed: ready VMs go, one handed out runs on ----
wait_field ready 2 60
taken=$(field taken)
"$huskctl" "${run_args[@]}" --pool "$sock" --rootfs "$rootfs" -- sh -c 'sleep 5; echo still here' \
	>"$tmp/survivor" 2>&1 &
survivor=$!
wait_field taken $((taken + 1)) 10
pooled=$(field taken)
sleep 2
kill -9 "$huskd_pid"
wait "$huskd_pid" 2>/dev/null
huskd_pid=
wait "$survivor"
rc=$?
wait_no_procs 60
left=$(vm_procs)
if [ "$pooled" = $((taken + 1)) ] && [ "$(cat "$tmp/survivor")" = "still here" ] && [ "$rc" = 0 ] &&
	[ "$left" = 0 ] && [ -z "$(ls "$state")" ]; then
	pass pool-huskd-killed
else
	fail pool-huskd-killed "taken $pooled (was $taken) rc=$rc out='$(head -c 200 "$tmp/survivor")' processes $left, state: $(ls "$state" | tr '\n' ' ')"
fi

# ---- no huskd: cold, the same container ----
rm -f "$sock"
out=$(RUN --pool "$sock" --rootfs "$rootfs" -- sh -c 'echo hello from $(hostname); exit 3' 2>&1)
rc=$?
if [ "$out" = "hello from husk" ] && [ "$rc" = 3 ]; then
	pass pool-absent-boots-cold
else
	fail pool-absent-boots-cold "rc=$rc out='$out'"
fi

# ---- SIGTERM: ready and booting VMs end, the socket goes, exit 0 ----
start_huskd "$shape"
wait_field ready 1 60
kill -TERM "$huskd_pid"
wait "$huskd_pid"
rc=$?
huskd_pid=
# huskd waits for its keepers before it exits: nothing may be left now.
if [ "$rc" = 0 ] && [ ! -e "$sock" ] && [ "$(vm_procs)" = 0 ] && [ -z "$(ls "$state")" ]; then
	pass pool-sigterm-clean
else
	fail pool-sigterm-clean "rc=$rc socket $(ls "$sock" 2>&1) processes $(vm_procs) state: $(ls "$state" | tr '\n' ' ')"
fi

# ---- bad shapes are refused, naming what is wrong ----
e1=$("$huskd" --socket "$sock" --shape bogus=1 2>&1); r1=$?
e2=$("$huskd" --socket "$sock" --shape memory=10 2>&1); r2=$?
e3=$("$huskd" --socket "$sock" --shape "kernel=$tmp/nope" 2>&1); r3=$?
e4=$("$huskd" --socket "$sock" --shape "$shape" --shape "$shape" 2>&1); r4=$?
if [ "$r1" = 2 ] && [[ "$e1" == *'unknown key "bogus"'* ]] && [ "$r2" = 2 ] && [[ "$e2" == *memory* ]] &&
	[ "$r3" = 2 ] && [[ "$e3" == *"$tmp/nope"* ]] && [ "$r4" = 2 ] && [[ "$e4" == *"give each once"* ]] &&
	[ ! -e "$sock" ]; then
	pass pool-bad-shape-refused
else
	fail pool-bad-shape-refused "$r1 '$e1' / $r2 '$e2' / $r3 '$e3' / $r4 '$e4'"
fi

# ---- a shape whose boots fail: reported, retried with back-off ----
start_huskd "$shape,qemu=/bin/false,ready=1"
sleep 4
fails=$(field boot_failures)
why=$(field last_error)
if [ "$fails" -ge 1 ] && [ "$fails" -le 4 ] && [ -n "$why" ] && [ "$(field ready)" = 0 ] &&
	[ -z "$(ls "$state")" ]; then
	pass pool-failing-boots-back-off
else
	fail pool-failing-boots-back-off "boot_failures $fails in 4 s, last_error '$why', state: $(ls "$state" | tr '\n' ' ')"
fi
kill -TERM "$huskd_pid"
wait "$huskd_pid"
huskd_pid=

# ---- under systemd: the socket from LISTEN_FDS (huskd.socket) ----
sock2=$tmp/activated.sock
systemd-socket-activate --seqpacket -l "$sock2" \
	"$huskd" --state-dir "$state" --shape "$shape,ready=1" >>"$tmp/huskd.log" 2>&1 &
huskd_pid=$!
for i in $(seq 1 50); do [ -S "$sock2" ] && break; sleep 0.1; done
# The first connection starts huskd; it answers from the socket it was given.
out=$("$huskd" status --socket "$sock2" 2>&1)
ok=
for i in $(seq 1 300); do
	[ "$("$huskd" status --socket "$sock2" 2>/dev/null | jq -r '.shapes[0].ready')" = 1 ] && ok=1 && break
	sleep 0.2
done
kill -TERM "$huskd_pid"
wait "$huskd_pid"
rc=$?
huskd_pid=
if [ -n "$ok" ] && [ "$rc" = 0 ] && [[ "$out" == *'"target":1'* ]] && [ "$(vm_procs)" = 0 ]; then
	pass pool-socket-activation
else
	fail pool-socket-activation "ready=$ok rc=$rc status '$(echo "$out" | head -c 200)' processes $(vm_procs)"
fi

# ---- a kernel replaced: a new shape; the old ready VMs end ----
cp "$kernel" "$tmp/bzImage"
start_huskd "kernel=$tmp/bzImage,initrd=$initrd,ready=1"
wait_field ready 1 60
old_vm=$(STATUS | jq -r '.shapes[0].ready_vms[0]')
touch -d '+1 minute' "$tmp/bzImage" # what a rebuild does to it
taken=$(field taken)
out=$(RUN --kernel "$tmp/bzImage" --pool "$sock" --rootfs "$rootfs" -- echo first 2>&1)
first_taken=$(field taken)
ok=
for i in $(seq 1 300); do
	new_vm=$(STATUS | jq -r '.shapes[0].ready_vms[0] // empty')
	[ -n "$new_vm" ] && [ "$new_vm" != "$old_vm" ] && ok=1 && break
	sleep 0.2
done
out2=$(RUN --kernel "$tmp/bzImage" --pool "$sock" --rootfs "$rootfs" -- echo second 2>&1)
if [ "$out" = first ] && [ "$first_taken" = "$taken" ] && [ -n "$ok" ] && [ ! -e "$state/$old_vm" ] &&
	[ "$out2" = second ] && [ "$(field taken)" = $((taken + 1)) ]; then
	pass pool-kernel-replaced
else
	fail pool-kernel-replaced "out='$out' taken $first_taken (was $taken), new VM '${new_vm:-}' (old $old_vm), out2='$out2' taken $(field taken)"
fi
kill -TERM "$huskd_pid"
wait "$huskd_pid"
huskd_pid=

# ---- warm-up: a throwaway container first; the VM comes without its disk ----
start_huskd "$shape,ready=1,warm-up=1"
if wait_field ready 1 120; then
	warm=$(field warm_up) fails=$(field boot_failures)
	out=$(RUN --pool "$sock" --rootfs "$rootfs" -- sh -c 'cat /sys/block/*/serial' 2>&1)
	if [ "$warm" = true ] && [ "$fails" = 0 ] && [ "$(field taken)" = 1 ] &&
		[ "$(echo "$out" | tr -s '\n' ' ')" = "rootfs0 " ]; then
		pass pool-warm-up
	else
		fail pool-warm-up "warm_up=$warm failures=$fails taken $(field taken); the container saw: $out"
	fi
else
	fail pool-warm-up "no VM ready: $(field last_error)"
fi
kill -TERM "$huskd_pid"
wait "$huskd_pid"
huskd_pid=

if [ "$(vm_procs)" = 0 ] && [ -z "$(ls "$state" 2>/dev/null)" ]; then
	pass pool-nothing-left
else
	fail pool-nothing-left "processes: $(pgrep -af -- "$state/" | cut -c1-100 | tr '\n' ';') state: $(ls "$state" | tr '\n' ' ')"
fi
