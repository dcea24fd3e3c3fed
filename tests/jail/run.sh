#!/bin/bash
# husk-jail on the host, as root: every feature is checked from inside the
# container (/proc/self/status, id, mountinfo, limits, ...), and bad input
# must leave nothing behind. Prints PASS/FAIL/SKIP lines.
# usage: tests/jail/run.sh BUILD_DIR
set -u
build=$(cd "$1" && pwd)
JAIL=$build/bin/husk-jail

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP jail: needs root"
	exit 0
fi

tmp=$(mktemp -d /tmp/husk-jail-test-XXXXXX)
chmod 755 "$tmp" # the user-namespace test's mapped root must reach the rootfs
root=$tmp/state
CG2=/sys/fs/cgroup/unified
cleanup() {
	for id in $(ls "$root" 2>/dev/null); do
		"$JAIL" --root "$root" --no-cgroups delete --force "$id" >/dev/null 2>&1
	done
	# Never leave a mount of ours behind, even after a failed test.
	grep -o " $tmp[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null
	done
	rm -rf "$tmp"
	rmdir "$CG2"/husk-jail-test/* "$CG2"/husk-jail-test 2>/dev/null
}
trap cleanup EXIT

pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	[ -f "$tmp/out" ] && sed 's/^/    out: /' "$tmp/out" | head -20
	[ -f "$tmp/err" ] && sed 's/^/    err: /' "$tmp/err" | head -20
}

# ---- a busybox rootfs and a runc-like base config ----
rootfs=$tmp/rootfs
"$(dirname "$0")/make-rootfs.sh" "$rootfs"
echo "inside-the-rootfs" >"$rootfs/marker"
ln -s / "$rootfs/evil"
ln -s ../../../../.. "$rootfs/up"
base=$(cd "$(dirname "$0")" && pwd)/base-config.json

# bundle JQ_FILTER: makes a fresh bundle from the base config; prints its dir.
bundle() {
	local b
	b=$(mktemp -d "$tmp/bXXXXXX")
	ln -s "$rootfs" "$b/rootfs"
	jq "$1" "$base" >"$b/config.json" || { echo "bad jq filter: $1" >&2; return 1; }
	echo "$b"
}
# jrun NAME JQ_FILTER [husk-jail global flags...]: runs a container to
# completion; stdout in $tmp/out, stderr in $tmp/err, exit code in $rc.
jrun() {
	local id=$1 b
	b=$(bundle "$2") || return 1
	shift 2
	"$JAIL" --root "$root" --no-cgroups "$@" run --bundle "$b" "$id" </dev/null >"$tmp/out" 2>"$tmp/err"
	rc=$?
}
args() { # args CMD -> jq filter setting process.args to sh -c CMD
	jq -cn --arg c "$1" '["sh","-c",$c]' | sed 's/^/.process.args=/'
}
nothing_left() { # nothing_left ID: no state dir, no mount of the bundle, no process
	[ ! -e "$root/$1" ] || return 1
	! grep -q "$tmp/b" /proc/self/mountinfo || return 1
	! pgrep -f "husk-jail-test-marker-$1" >/dev/null
}

# ---- exit codes and output ----
jrun exit0 "$(args 'echo hello from inside')"
[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "hello from inside" ] && pass run-output-and-exit-0 ||
	fail run-output-and-exit-0 "rc=$rc"
jrun exit3 "$(args 'exit 3')"
[ $rc -eq 3 ] && pass run-exit-3 || fail run-exit-3 "rc=$rc"
# PID 1 ignores SIGKILL from inside its own namespace: kill it from outside.
b=$(bundle "$(args 'sleep 1000; : husk-jail-test-marker-k137')")
"$JAIL" --root "$root" --no-cgroups run --bundle "$b" k137 </dev/null >/dev/null 2>&1 &
runner=$!
for _ in $(seq 100); do
	[ "$("$JAIL" --root "$root" state k137 2>/dev/null | jq -r .status)" = running ] && break
	sleep 0.05
done
"$JAIL" --root "$root" kill k137 KILL
wait $runner
rc=$?
[ $rc -eq 137 ] && pass run-killed-137 || fail run-killed-137 "rc=$rc"
[ -z "$(ls "$root")" ] && pass run-deletes-state || fail run-deletes-state "$(ls "$root")"

# ---- what the process sees ----
jrun status "$(args 'cat /proc/self/status')"
caps=0000000020000420 # AUDIT_WRITE(29) KILL(5) NET_BIND_SERVICE(10)
if grep -q "^CapEff:	$caps" "$tmp/out" && grep -q "^CapPrm:	$caps" "$tmp/out" &&
	grep -q "^CapBnd:	$caps" "$tmp/out" && grep -q "^CapAmb:	$caps" "$tmp/out" &&
	grep -q "^CapInh:	$caps" "$tmp/out"; then
	pass capabilities
else
	fail capabilities "$(grep ^Cap "$tmp/out" | tr '\n' ' ')"
fi
grep -q "^NoNewPrivs:	1" "$tmp/out" && pass no-new-privileges || fail no-new-privileges "$(grep NoNewPrivs "$tmp/out")"
grep -q "^Seccomp:	0" "$tmp/out" && pass no-seccomp-without-profile || fail no-seccomp-without-profile "$(grep Seccomp: "$tmp/out")"

# ---- runc's own default specs, as `runc spec` writes them ----
# Only process.args changes (and root.path is the busybox rootfs). Their
# ambient capabilities come without inheritable ones, which the kernel will
# not raise: runc skips them (at debug level), so must we.
runc_bundle() { # runc_bundle [--rootless] -> a bundle dir with runc's config.json
	local b
	b=$(mktemp -d "$tmp/bXXXXXX")
	ln -s "$rootfs" "$b/rootfs"
	(cd "$b" && runc spec "$@") || return 1
	jq --arg c "$(cat "$tmp/runc-args")" '.process.args=["sh","-c",$c]' "$b/config.json" >"$b/c" &&
		mv "$b/c" "$b/config.json" && echo "$b"
}
if command -v runc >/dev/null; then
	echo 'hostname; grep ^Cap /proc/self/status; cat /proc/self/uid_map; touch /x; echo ran' >"$tmp/runc-args"
	b=$(runc_bundle)
	# process.terminal is true: run proxies its own stdio to the pty.
	"$JAIL" --root "$root" --no-cgroups run --bundle "$b" runc-spec </dev/null >"$tmp/out" 2>"$tmp/err"
	rc=$?
	caps=0000000020000420
	if [ $rc -eq 0 ] && grep -q "^runc" "$tmp/out" && grep -q "^CapPrm:	$caps" "$tmp/out" &&
		grep -q "^CapEff:	$caps" "$tmp/out" && grep -q "^CapBnd:	$caps" "$tmp/out" &&
		grep -q "^CapAmb:	0000000000000000" "$tmp/out" && grep -q "Read-only file system" "$tmp/out" &&
		grep -q "^ran" "$tmp/out" && [ ! -s "$tmp/err" ] && nothing_left runc-spec; then
		pass runc-default-spec
	else
		fail runc-default-spec "rc=$rc"
	fi
	# With --debug, each skipped ambient capability is noted, as runc does.
	b=$(runc_bundle --rootless)
	"$JAIL" --root "$root" --no-cgroups --debug run --bundle "$b" runc-rootless </dev/null >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ $rc -eq 0 ] && grep -q "^ran" "$tmp/out" && grep -q "^CapAmb:	0000000000000000" "$tmp/out" &&
		grep -Eq "^ +0 +$(id -u) +1" "$tmp/out" &&
		grep -q "^husk-jail: debug: process.capabilities.ambient: CAP_KILL not raised (it must be in the permitted and inheritable sets)$" "$tmp/err" &&
		nothing_left runc-rootless; then
		pass runc-rootless-spec
	else
		fail runc-rootless-spec "rc=$rc"
	fi
else
	fail runc-default-spec "runc is not installed (mk/packages.txt lists it)"
fi

jrun user "$(args 'id') | .process.user={uid:1000,gid:1001,additionalGids:[5,6]}"
[ "$(cat "$tmp/out")" = "uid=1000 gid=1001 groups=5,6,1001" ] ||
	[ "$(cat "$tmp/out")" = "uid=1000 gid=1001 groups=5,6" ] && pass user-and-groups ||
	fail user-and-groups "$(cat "$tmp/out")"

jrun umask "$(args 'umask') | .process.user.umask=63"
[ "$(cat "$tmp/out")" = "0077" ] && pass umask || fail umask "$(cat "$tmp/out")"

jrun host "$(args 'hostname; cat /proc/sys/kernel/domainname') | .domainname=\"example.org\""
[ "$(tr '\n' ' ' <"$tmp/out")" = "husk-test example.org " ] && pass hostname-domainname ||
	fail hostname-domainname "$(cat "$tmp/out")"

jrun envcwd "$(args 'echo $FOO; pwd') | .process.env+=[\"FOO=bar\"] | .process.cwd=\"/tmp\""
[ "$(tr '\n' ' ' <"$tmp/out")" = "bar /tmp " ] && pass env-and-cwd || fail env-and-cwd "$(cat "$tmp/out")"

# A missing working directory is made, as runc makes it (before the root
# turns read-only).
jrun mkcwd "$(args 'pwd; stat -c %a .') | .process.cwd=\"/no/such/dir\" | .root.readonly=true"
[ $rc -eq 0 ] && [ "$(tr '\n' ' ' <"$tmp/out")" = "/no/such/dir 755 " ] && [ -d "$rootfs/no/such/dir" ] &&
	pass missing-cwd-created || fail missing-cwd-created "rc=$rc"
rm -rf "$rootfs/no"

jrun pid1 "$(args 'echo $$')"
[ "$(cat "$tmp/out")" = "1" ] && pass pid-namespace || fail pid-namespace "$(cat "$tmp/out")"

jrun limits "$(args 'grep "Max open files" /proc/self/limits; grep "Max processes" /proc/self/limits') | .process.rlimits+=[{type:\"RLIMIT_NPROC\",soft:100,hard:200}]"
grep -q "Max open files *1024 *1024" "$tmp/out" && grep -q "Max processes *100 *200" "$tmp/out" &&
	pass rlimits || fail rlimits "$(cat "$tmp/out")"

jrun oom "$(args 'cat /proc/self/oom_score_adj') | .process.oomScoreAdj=500"
[ "$(cat "$tmp/out")" = "500" ] && pass oom-score-adj || fail oom-score-adj "$(cat "$tmp/out")"

jrun sysctl "$(args 'cat /proc/sys/net/ipv4/ip_forward') | .linux.sysctl={\"net.ipv4.ip_forward\":\"1\"}"
[ "$(cat "$tmp/out")" = "1" ] && pass sysctl || fail sysctl "$(cat "$tmp/out")"
# sysctl(8)'s slash form, which runc takes too; ipc and uts ones in their namespaces.
jrun sysctl-forms "$(args 'cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni /proc/sys/kernel/domainname') | .linux.sysctl={\"net/ipv4/ip_forward\":\"1\",\"kernel.shmmni\":\"1234\",\"kernel.domainname\":\"sysctl.example\"}"
[ $rc -eq 0 ] && [ "$(tr '\n' ' ' <"$tmp/out")" = "1 1234 sysctl.example " ] && pass sysctl-forms-and-namespaces ||
	fail sysctl-forms-and-namespaces "rc=$rc $(tr '\n' ' ' <"$tmp/out")"

jrun mounts "$(args 'cat /proc/self/mountinfo')"
if grep -q " /tmp .*- tmpfs " "$tmp/out" && grep -q " /proc .*- proc " "$tmp/out" &&
	grep -q " /dev/pts .*- devpts " "$tmp/out" && grep -q " /sys ro,.*- sysfs " "$tmp/out" &&
	grep -q " /dev/mqueue .*- mqueue " "$tmp/out"; then
	pass mounts-in-mountinfo
else
	fail mounts-in-mountinfo "see output"
fi

jrun root "$(args 'cat /marker; ls /etc/debian_version 2>&1')"
grep -q "inside-the-rootfs" "$tmp/out" && grep -q "No such file" "$tmp/out" && pass root-is-the-rootfs ||
	fail root-is-the-rootfs "$(cat "$tmp/out")"

jrun devs "$(args 'for d in null zero full tty random urandom; do [ -c /dev/$d ] || echo missing $d; done; stat -c "%t %T %a" /dev/null /dev/fuse; for l in /dev/ptmx /dev/fd /dev/stdin; do readlink $l; done')"' | .linux.devices=[{path:"/dev/fuse",type:"c",major:10,minor:229,fileMode:384,uid:0,gid:0}]'
if [ "$(tr '\n' ' ' <"$tmp/out")" = "1 3 666 a e5 600 pts/ptmx /proc/self/fd /proc/self/fd/0 " ]; then
	pass devices
else
	fail devices "$(tr '\n' ' ' <"$tmp/out")"
fi

jrun masked "$(args 'wc -c </proc/keys; ls /sys/firmware | wc -l')"
[ "$(tr '\n' ' ' <"$tmp/out")" = "0 0 " ] && pass masked-paths || fail masked-paths "$(cat "$tmp/out")"

jrun ropaths "$(args 'echo 1 >/proc/sys/kernel/ns_last_pid; echo rc=$?')"
grep -q "Read-only file system" "$tmp/err" && grep -q "rc=1" "$tmp/out" && pass readonly-paths ||
	fail readonly-paths "$(cat "$tmp/out")"

jrun roroot "$(args 'touch /x 2>&1; touch /tmp/ok && echo tmp-ok') | .root.readonly=true"
grep -q "Read-only file system" "$tmp/out" && grep -q tmp-ok "$tmp/out" && pass readonly-root ||
	fail readonly-root "$(cat "$tmp/out")"

# ---- seccomp ----
jrun seccomp "$(args 'grep Seccomp: /proc/self/status; mkdir /tmp/d 2>&1; echo mkdir-rc=$?; touch /tmp/f && echo touch-ok')"' | .linux.seccomp={defaultAction:"SCMP_ACT_ALLOW",architectures:["SCMP_ARCH_X86_64"],syscalls:[{names:["mkdir","mkdirat"],action:"SCMP_ACT_ERRNO",errnoRet:13}]}'
grep -q "Seccomp:	2" "$tmp/out" && grep -q "Permission denied" "$tmp/out" && grep -q touch-ok "$tmp/out" &&
	pass seccomp-errno || fail seccomp-errno "$(cat "$tmp/out")"
# chmod to 0777 (511) is refused, any other mode is fine.
jrun seccomp-args "$(args 'touch /tmp/f; chmod 755 /tmp/f; echo c755=$?; chmod 777 /tmp/f; echo c777=$?')"' | .linux.seccomp={defaultAction:"SCMP_ACT_ALLOW",syscalls:[{names:["chmod"],action:"SCMP_ACT_ERRNO",errnoRet:1,args:[{index:1,value:511,op:"SCMP_CMP_EQ"}]},{names:["fchmodat"],action:"SCMP_ACT_ERRNO",errnoRet:1,args:[{index:2,value:511,op:"SCMP_CMP_EQ"}]}]}'
grep -q "c755=0" "$tmp/out" && grep -q "c777=1" "$tmp/out" && pass seccomp-arg-condition ||
	fail seccomp-arg-condition "$(cat "$tmp/out")"

# ---- user namespace ----
jrun userns "$(args 'id -u; cat /proc/self/uid_map')"' | .linux.namespaces+=[{type:"user"}] | .linux.uidMappings=[{containerID:0,hostID:100000,size:65536}] | .linux.gidMappings=[{containerID:0,hostID:100000,size:65536}] | .mounts|=map(select(.destination!="/sys"))'
if [ "$(head -1 "$tmp/out")" = "0" ] && grep -q "0 *100000 *65536" "$tmp/out"; then
	pass user-namespace
else
	fail user-namespace "$(cat "$tmp/out")"
fi

# ---- the container starts with no blocked or ignored signal ----
# grep is the container's init itself: busybox sh as PID 1 ignores SIGQUIT.
b=$(bundle '.process.args=["grep","-E","^Sig(Blk|Ign):","/proc/self/status"]')
(trap '' PIPE INT HUP; "$JAIL" --root "$root" --no-cgroups run --bundle "$b" sigs </dev/null >"$tmp/out" 2>"$tmp/err")
if grep -q "^SigBlk:	0000000000000000" "$tmp/out" && grep -q "^SigIgn:	0000000000000000" "$tmp/out"; then
	pass signals-reset
else
	fail signals-reset "$(tr '\n' ' ' <"$tmp/out")"
fi

# ---- symlinks in the image cannot reach the host ----
jrun escape "$(args 'grep -q " /escaped " /proc/self/mountinfo && grep -q " /escaped2 " /proc/self/mountinfo && echo inside')"' | .mounts+=[{destination:"/evil/escaped",type:"tmpfs",source:"tmpfs"},{destination:"/up/escaped2",type:"tmpfs",source:"tmpfs"}]'
if [ $rc -eq 0 ] && grep -q inside "$tmp/out" && [ ! -e /escaped ] && [ ! -e /escaped2 ] &&
	[ -d "$rootfs/escaped" ] && [ -d "$rootfs/escaped2" ]; then
	pass symlink-escape-stays-inside
else
	fail symlink-escape-stays-inside "rc=$rc"
fi
rmdir /escaped /escaped2 2>/dev/null
rmdir "$rootfs/escaped" "$rootfs/escaped2" 2>/dev/null

# ---- terminal ----
jrun tty "$(args 'tty; stty size') | .process.terminal=true | .process.consoleSize={height:30,width:100}"
grep -q "^/dev/pts/0" "$tmp/out" && grep -q "30 100" "$tmp/out" && pass terminal ||
	fail terminal "$(cat "$tmp/out")"

# ---- hooks: order and state on stdin ----
# createRuntime/prestart/poststart/poststop paths resolve on the host, and
# so does createContainer (before the root switch); startContainer resolves
# inside the container: a copy lives in the rootfs, logging through a bind.
hookdir=$tmp/hookdir
mkdir -p "$hookdir"
hook=$tmp/hook.sh
printf '%s\n' '#!/bin/sh' \
	'echo "$1 $(cat | tr -d "\n" | sed -e "s/.*\"status\": *\"\([a-z]*\)\".*/\1/")" >>"$2"' >"$hook"
chmod +x "$hook"
cp "$hook" "$rootfs/hook.sh"
h() { echo "[{\"path\":\"$hook\",\"args\":[\"hook\",\"$1\",\"$hookdir/hooks.log\"]}]"; }
hin() { echo "[{\"path\":\"/hook.sh\",\"args\":[\"hook\",\"$1\",\"/hooklog/hooks.log\"]}]"; }
jrun hooks "$(args 'echo process') | .mounts+=[{destination:\"/hooklog\",type:\"bind\",source:\"$hookdir\",options:[\"rbind\"]}] | .hooks={prestart:$(h prestart),createRuntime:$(h createRuntime),createContainer:$(h createContainer),startContainer:$(hin startContainer),poststart:$(h poststart),poststop:$(h poststop)}"
expected="prestart creating|createRuntime creating|createContainer created|startContainer created|poststart running|poststop stopped|"
if [ $rc -eq 0 ] && [ "$(tr '\n' '|' <"$hookdir/hooks.log")" = "$expected" ]; then
	pass hooks-in-order-with-state
else
	fail hooks-in-order-with-state "$(tr '\n' '|' <"$hookdir/hooks.log" 2>/dev/null)"
fi
jrun hookfail "$(args 'echo must-not-run') | .hooks.createRuntime=[{path:\"/bin/false\"}]"
[ $rc -ne 0 ] && ! grep -q must-not-run "$tmp/out" && grep -q "hooks.createRuntime\[0\] /bin/false" "$tmp/err" &&
	nothing_left hookfail && pass failing-hook-aborts-create || fail failing-hook-aborts-create "rc=$rc"

# ---- lifecycle: create, state, start, exec, ps, kill, delete ----
J() { "$JAIL" --root "$root" --no-cgroups "$@"; }
b=$(bundle "$(args 'sleep 1000; : husk-jail-test-marker-life')")
J create --bundle "$b" --pid-file "$tmp/pid" life >"$tmp/out" 2>"$tmp/err" </dev/null
st=$(J state life | jq -r .status)
pid=$(J state life | jq -r .pid)
[ "$st" = created ] && [ "$pid" = "$(cat "$tmp/pid")" ] && [ -d "/proc/$pid" ] && pass create-state-created ||
	fail create-state-created "status=$st pid=$pid"
J start life && [ "$(J state life | jq -r .status)" = running ] && pass start-state-running ||
	fail start-state-running "$(J state life)"
J start life 2>"$tmp/err"; [ $? -ne 0 ] && grep -q "not created" "$tmp/err" && pass start-twice-refused ||
	fail start-twice-refused "$(cat "$tmp/err")"
out=$(J exec life sh -c 'echo $$; hostname; cat /marker' 2>&1)
if [ "$(echo "$out" | sed -n 2p)" = husk-test ] && [ "$(echo "$out" | sed -n 3p)" = inside-the-rootfs ] &&
	[ "$(echo "$out" | sed -n 1p)" != 1 ]; then
	pass exec-joins-container
else
	fail exec-joins-container "$out"
fi
J exec life sh -c 'exit 7'; [ $? -eq 7 ] && pass exec-exit-code || fail exec-exit-code "rc=$?"
J exec -u 4294967295 life id -u >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -ne 0 ] && grep -q -- "--user 4294967295: expected UID\[:GID\], each in range 0-2147483647" "$tmp/err" &&
	pass exec-user-out-of-range || fail exec-user-out-of-range "rc=$rc $(cat "$tmp/out")"
J exec life nonexistent-binary 2>"$tmp/err"; [ $? -ne 0 ] && grep -q "executable file not found" "$tmp/err" &&
	pass exec-missing-binary || fail exec-missing-binary "$(cat "$tmp/err")"
J ps --format json life | jq -e "index($pid)" >/dev/null && pass ps-lists-init || fail ps-lists-init "$(J ps --format json life)"
J delete life 2>"$tmp/err"; [ $? -ne 0 ] && grep -q "use --force" "$tmp/err" && pass delete-running-refused ||
	fail delete-running-refused "$(cat "$tmp/err")"
J kill life KILL
for _ in $(seq 50); do [ "$(J state life | jq -r .status)" = stopped ] && break; sleep 0.1; done
[ "$(J state life | jq -r .status)" = stopped ] && pass kill-stops || fail kill-stops "$(J state life | jq -r .status)"
J delete life && nothing_left life && pass delete-cleans-up || fail delete-cleans-up "$(ls "$root")"

# run starts the init over its own socket: no exec fifo, running at once,
# and a later start is refused.
b=$(bundle "$(args 'sleep 1000; : husk-jail-test-marker-rund')")
J run --detach --bundle "$b" rund </dev/null >/dev/null 2>"$tmp/err"
rc=$?
st=$(J state rund | jq -r .status)
[ $rc -eq 0 ] && [ "$st" = running ] && [ ! -e "$root/rund/exec.fifo" ] &&
	pgrep -f husk-jail-test-marker-rund >/dev/null && pass run-detach-no-exec-fifo ||
	fail run-detach-no-exec-fifo "rc=$rc status=$st $(ls "$root/rund" 2>&1)"
J start rund 2>"$tmp/err"; [ $? -ne 0 ] && grep -q "not created" "$tmp/err" &&
	pass run-detach-start-refused || fail run-detach-start-refused "$(cat "$tmp/err")"
J delete --force rund && nothing_left rund || fail run-detach-delete "$(ls "$root")"

# ---- joining namespaces by path (how pods share them) ----
b=$(bundle "$(args 'sleep 1000; : husk-jail-test-marker-poda') | .hostname=\"pod-a\"")
J create --bundle "$b" poda </dev/null >/dev/null 2>"$tmp/err" && J start poda
apid=$(J state poda | jq -r .pid)
jrun podb "$(args 'hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc') | del(.hostname) | .linux.namespaces=[{type:\"pid\"},{type:\"mount\"},{type:\"uts\",path:\"/proc/$apid/ns/uts\"},{type:\"network\",path:\"/proc/$apid/ns/net\"},{type:\"ipc\",path:\"/proc/$apid/ns/ipc\"}]"
want="pod-a $(readlink /proc/$apid/ns/net) $(readlink /proc/$apid/ns/ipc) "
[ $rc -eq 0 ] && [ "$(tr '\n' ' ' <"$tmp/out")" = "$want" ] && pass join-namespaces-by-path ||
	fail join-namespaces-by-path "got '$(tr '\n' ' ' <"$tmp/out")' want '$want'"
J delete --force poda

# ---- hook timeout ----
jrun hooktimeout "$(args 'echo must-not-run') | .hooks.createRuntime=[{path:\"/bin/sleep\",args:[\"sleep\",\"30\"],timeout:1}]"
[ $rc -ne 0 ] && grep -q "timed out after 1 s" "$tmp/err" && nothing_left hooktimeout &&
	pass hook-timeout || fail hook-timeout "rc=$rc"

# ---- AppArmor/SELinux fields: accepted, ignored with a warning ----
jrun apparmor "$(args 'echo ran') | .process.apparmorProfile=\"docker-default\" | .process.selinuxLabel=\"system_u:system_r:container_t:s0\""
[ $rc -eq 0 ] && grep -q ran "$tmp/out" && grep -q "apparmorProfile docker-default ignored" "$tmp/err" &&
	grep -q "selinuxLabel ignored" "$tmp/err" && pass apparmor-selinux-warn || fail apparmor-selinux-warn "rc=$rc"
jrun apparmor-empty "$(args 'echo ran') | .process.apparmorProfile=\"\" | .process.selinuxLabel=\"\" | .linux.mountLabel=\"\""
[ $rc -eq 0 ] && grep -q ran "$tmp/out" && ! grep -q warning "$tmp/err" && pass empty-labels-no-warning ||
	fail empty-labels-no-warning "rc=$rc"

# ---- terminal sent over --console-socket ----
b=$(bundle "$(args 'tty; echo console-ok') | .process.terminal=true")
"$build/test/recv-console" "$tmp/console.sock" >"$tmp/console.out" 2>"$tmp/console.err" &
recv=$!
for _ in $(seq 100); do grep -q ready "$tmp/console.err" 2>/dev/null && break; sleep 0.05; done
J create --bundle "$b" --console-socket "$tmp/console.sock" cons </dev/null >/dev/null 2>"$tmp/err" &&
	J start cons
wait $recv
if grep -q "^/dev/pts/0" "$tmp/console.out" && grep -q console-ok "$tmp/console.out"; then
	pass console-socket
else
	fail console-socket "$(cat "$tmp/console.out" "$tmp/err")"
fi
J delete --force cons
J create --bundle "$b" nocons </dev/null >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q -- "--console-socket is required" "$tmp/err" && nothing_left nocons &&
	pass terminal-needs-console-socket || fail terminal-needs-console-socket "$(cat "$tmp/err")"

# ---- cgroup v2 (this host's v2 mount has no controllers: freeze, kill, ps) ----
if grep -q "cgroup2 $CG2 " /proc/self/mounts 2>/dev/null || mount | grep -q " $CG2 type cgroup2"; then
	C() { "$JAIL" --root "$root" --cgroup-mount "$CG2" "$@"; }
	b=$(bundle "$(args 'sleep 1000; : husk-jail-test-marker-cg') | .linux.cgroupsPath=\"/husk-jail-test/cg\"")
	C run --detach --bundle "$b" cg </dev/null >/dev/null 2>"$tmp/err"
	pid=$(C state cg | jq -r .pid)
	grep -qx "$pid" "$CG2/husk-jail-test/cg/cgroup.procs" && pass cgroup-created-and-joined ||
		fail cgroup-created-and-joined "$(cat "$tmp/err")"
	C pause cg && [ "$(C state cg | jq -r .status)" = paused ] && grep -q "frozen 1" "$CG2/husk-jail-test/cg/cgroup.events" &&
		pass pause || fail pause "$(C state cg | jq -r .status)"
	# Exec into a frozen cgroup would hang: it is refused at once.
	C exec cg true >/dev/null 2>"$tmp/err"
	[ $? -ne 0 ] && grep -q "paused" "$tmp/err" && pass exec-refused-while-paused ||
		fail exec-refused-while-paused "$(cat "$tmp/err")"
	C resume cg && [ "$(C state cg | jq -r .status)" = running ] && pass resume || fail resume "$(C state cg)"
	before=$(C ps --format json cg | jq length)
	C exec --detach cg sleep 999 && [ "$(C ps --format json cg | jq length)" = $((before + 1)) ] && pass exec-joins-cgroup ||
		fail exec-joins-cgroup "$(C ps --format json cg)"
	C kill --all cg KILL
	for _ in $(seq 50); do [ "$(C state cg | jq -r .status)" = stopped ] && break; sleep 0.1; done
	C delete cg && [ ! -e "$CG2/husk-jail-test/cg" ] && nothing_left cg && pass cgroup-removed-on-delete ||
		fail cgroup-removed-on-delete "$(ls "$CG2/husk-jail-test" 2>&1)"
	jrun memlimit "$(args true) | .linux.resources={memory:{limit:67108864}} | .linux.cgroupsPath=\"/husk-jail-test/mem\"" --cgroup-mount "$CG2"
	[ $rc -ne 0 ] && grep -q "memory" "$tmp/err" && [ ! -e "$CG2/husk-jail-test/mem" ] &&
		pass missing-controller-refused || fail missing-controller-refused "rc=$rc $(cat "$tmp/err")"
else
	echo "SKIP cgroup: no cgroup2 mount at $CG2"
fi
# A memory limit too small for the init: this host's cgroup2 has no memory
# controller, so it is checked in a VM (Debian's stock kernel, about 20 s).
"$(dirname "$0")/oom-vm.sh" "$build"
b=$(bundle "$(args true)")
"$JAIL" --root "$root" --cgroup-mount "$tmp" run --bundle "$b" nocg >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q -- "--no-cgroups" "$tmp/err" && nothing_left nocg && pass no-cgroup2-clear-message ||
	fail no-cgroup2-clear-message "$(cat "$tmp/err")"

# ---- what runc accepts with a warning or a debug note ----
# Unknown capability names: left out, with a warning (runtime-spec 1.1: not an error).
jrun unknown-cap "$(args 'grep ^CapBnd /proc/self/status') | .process.capabilities.bounding+=[\"CAP_MAKE_COFFEE\"] | .process.capabilities.effective+=[\"CAP_MAKE_COFFEE\"]"
[ $rc -eq 0 ] && grep -q "^CapBnd:	0000000020000420" "$tmp/out" &&
	grep -q "warning: process.capabilities: ignoring unknown capabilities: CAP_MAKE_COFFEE$" "$tmp/err" &&
	pass unknown-capability-ignored || fail unknown-capability-ignored "rc=$rc"
# Syscall names libseccomp does not know: skipped, the rest of the rule holds.
jrun unknown-syscall "$(args 'mkdir /tmp/d 2>&1; echo mkdir-rc=$?')"' | .linux.seccomp={defaultAction:"SCMP_ACT_ALLOW",syscalls:[{names:["not_a_syscall","mkdir","mkdirat"],action:"SCMP_ACT_ERRNO",errnoRet:13}]}' --debug
[ $rc -eq 0 ] && grep -q "mkdir-rc=1" "$tmp/out" && grep -q "Permission denied" "$tmp/out" &&
	grep -q 'debug: linux.seccomp.syscalls\[0\].names\[0\]: unknown syscall "not_a_syscall" ignored' "$tmp/err" &&
	pass unknown-syscall-ignored || fail unknown-syscall-ignored "rc=$rc"

# ---- bad input: refused, naming the field, nothing left behind ----
bad() { # bad NAME EXPECTED_IN_STDERR JQ_FILTER  (or RAW:text for a raw config)
	local name=$1 expect=$2 filter=$3 b
	if [[ $filter == RAW:* ]]; then
		b=$(mktemp -d "$tmp/bXXXXXX")
		ln -s "$rootfs" "$b/rootfs"
		printf '%s' "${filter#RAW:}" >"$b/config.json"
	else
		b=$(bundle "$filter")
	fi
	"$JAIL" --root "$root" --no-cgroups run --bundle "$b" "bad-$name" </dev/null >"$tmp/out" 2>"$tmp/err"
	local r=$?
	if [ $r -ne 0 ] && grep -qF -- "$expect" "$tmp/err" && nothing_left "bad-$name"; then
		pass "bad-input-$name"
	else
		fail "bad-input-$name" "rc=$r, wanted '$expect'"
	fi
}
bad malformed-json "config.json" 'RAW:{"ociVersion": "1.0.2", "process": {'
bad missing-args "process.args" 'del(.process.args)'
bad wrong-type "process.terminal" '.process.terminal="yes"'
bad no-rootfs "root.path" '.root.path="does-not-exist"'
bad relative-mount "mounts[7].destination" '.mounts+=[{destination:"tmp2",type:"tmpfs",source:"tmpfs"}]'
bad escaping-mount "mounts[7].destination" '.mounts+=[{destination:"/../../etc",type:"tmpfs",source:"tmpfs"}]'
bad negative-uid "process.user.uid" '.process.user.uid=-1'
bad huge-uid "process.user.uid" '.process.user.uid=4294967296'
# (uid_t)-1 is "unchanged" to setresuid: the container would run as root.
bad uid-minus-one "process.user.uid: expected a uid or gid in range 0-2147483647, got 4294967295" '.process.user.uid=4294967295'
bad gid-minus-one "process.user.gid" '.process.user.gid=4294967295'
bad gid-2-31 "process.user.additionalGids[1]" '.process.user.additionalGids=[5,2147483648]'
bad negative-memory-limit "linux.resources.memory.limit: -2 is not a byte count" '.linux.resources={memory:{limit:-2}}'
bad hostname-without-uts 'hostname "husk-test": cannot be set without a uts namespace' '.linux.namespaces|=map(select(.type!="uts"))'
bad intel-rdt-schema "linux.intelRdt.l3CacheSchema" '.linux.intelRdt={closID:"x",l3CacheSchema:"L3:0=ff"}'
# Sysctls outside the container's namespaces would change the host's. The
# values are the host's own, so that a runtime that wrongly writes them
# changes nothing.
bad sysctl-system-wide "linux.sysctl.kernel.panic: not in a namespace of the container's own" \
	".linux.sysctl={\"kernel.panic\":\"$(cat /proc/sys/kernel/panic)\"}"
bad sysctl-host-network "linux.sysctl.net.ipv4.ip_forward: not allowed in the host's network namespace" \
	".linux.namespaces|=map(select(.type!=\"network\")) | .linux.sysctl={\"net.ipv4.ip_forward\":\"$(cat /proc/sys/net/ipv4/ip_forward)\"}"
bad sysctl-host-ipc "linux.sysctl.kernel.shmmni: not allowed in the host's ipc namespace" \
	".linux.namespaces|=map(select(.type!=\"ipc\")) | .linux.sysctl={\"kernel.shmmni\":\"$(cat /proc/sys/kernel/shmmni)\"}"
bad sysctl-joined-own-network "network path /proc/self/ns/net is the runtime's own" \
	".linux.namespaces|=map(if .type==\"network\" then .path=\"/proc/self/ns/net\" else . end) | .linux.sysctl={\"net.ipv4.ip_forward\":\"$(cat /proc/sys/net/ipv4/ip_forward)\"}"
bad sysctl-dotdot "linux.sysctl: invalid key" \
	".linux.sysctl={\"net/ipv4/../../kernel/panic\":\"$(cat /proc/sys/kernel/panic)\"}"
bad missing-binary "executable file not found" "$(args true) | .process.args=[\"no-such-binary\"]"
# runc looks a bare name up only in the process's own PATH.
bad no-path "sleep: executable file not found in \$PATH" \
	'.process.args=["sleep","0"] | .process.env=["TERM=xterm"]'
bad cwd-not-a-dir "process.cwd /marker/sub: Not a directory" '.process.cwd="/marker/sub"'
J run --bundle "$(bundle .)" "../escape" >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q "container id" "$tmp/err" && [ -z "$(ls "$root")" ] && pass bad-input-id-with-slash ||
	fail bad-input-id-with-slash "$(cat "$tmp/err")"
b=$(bundle "$(args 'sleep 1000; : husk-jail-test-marker-dup')")
J create --bundle "$b" dup </dev/null >/dev/null 2>&1
J create --bundle "$b" dup </dev/null >/dev/null 2>"$tmp/err"
[ $? -ne 0 ] && grep -q "already exists" "$tmp/err" && pass duplicate-id-refused || fail duplicate-id-refused "$(cat "$tmp/err")"
J delete --force dup
