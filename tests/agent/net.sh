#!/bin/bash
# Sandbox.SetupNetwork: husk-agent (the ASan build, on the host) sets up
# links in a network namespace of this test's own, called through libhusk
# (agent-net-client); `ip -j` looks at the result from outside. veth pairs
# stand in for the VM's NICs (their peers up, so that they have a carrier).
# usage: tests/agent/net.sh BUILD_DIR     (prints PASS/FAIL/SKIP lines)
# Env: HUSK_AGENT overrides BUILD_DIR/test/husk-agent.
set -u
build=$1
agent=${HUSK_AGENT:-$build/test/husk-agent}
client=$build/test/agent-net-client

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP agent-net: needs root"
	exit 0
fi
for t in ip jq unshare; do
	command -v "$t" >/dev/null || { echo "SKIP agent-net: no $t"; exit 0; }
done
for b in "$agent" "$client"; do
	[ -x "$b" ] || { echo "FAIL agent-net: $b is not built"; exit 1; }
done
# Everything below in a network namespace of its own.
if [ -z "${HUSK_NET_TEST_NETNS:-}" ]; then
	HUSK_NET_TEST_NETNS=1 exec unshare -n -- "$0" "$@"
fi

tmp=$(mktemp -d /tmp/husk-agent-net-XXXXXX) || exit 1
late_pid=
cleanup() {
	[ -n "$late_pid" ] && kill "$late_pid" 2>/dev/null
	if [ -n "${NC_PID:-}" ]; then
		exec {NC[1]}>&- 2>/dev/null
		wait "$NC_PID" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

fails=0
pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1: $2"
	fails=$((fails + 1))
}

MAC_A=0a:58:0a:58:00:05 MAC_B=0A:58:0A:58:00:06 MAC_C=0a:58:0a:58:00:07
MAC_D=0a:58:0a:58:00:08 MAC_GONE=0a:58:0a:58:00:99

# veth NAME MAC: a link with MAC, its peer up.
veth() {
	ip link add "$1" address "$2" type veth peer name "p-$1" &&
		ip link set "p-$1" up
}
# The name of the link with MAC (lower case), "" for none.
name_of() { ip -j link | jq -r --arg m "$1" '.[] | select(.address == $m) | .ifname'; }
# check NAME JQ-EXPRESSION COMMAND...: the JSON COMMAND prints must satisfy it.
check() {
	local name=$1 expr=$2 out
	shift 2
	out=$("$@" 2>&1)
	if jq -e "$expr" >/dev/null 2>&1 <<<"$out"; then
		pass "$name"
	else
		fail "$name" "$* gave: $(printf '%s' "$out" | head -c 1500)"
	fi
}
# call REQUEST: sends it, sets $reply and $took_ms.
call() {
	local t0
	t0=$(date +%s%N)
	printf '%s\n' "$1" >&"${NC[1]}"
	reply=
	read -r -t 60 reply <&"${NC[0]}" || reply="(no answer)"
	took_ms=$((($(date +%s%N) - t0) / 1000000))
}
# expect_error NAME REQUEST NEEDLE
expect_error() {
	call "$2"
	case $reply in
	"error "*"$3"*) pass "$1" ;;
	*) fail "$1" "want an error naming '$3', got: $reply" ;;
	esac
}
expect_ok() {
	call "$2"
	if [ "$reply" = ok ]; then
		pass "$1"
	else
		fail "$1" "$reply"
		return 1
	fi
}

# The kernel's own names, which the request swaps: A is eth1, B is eth0.
veth eth1 "$MAC_A" && veth eth0 "${MAC_B,,}" && veth vd "$MAC_D" || {
	echo "FAIL agent-net: cannot make veth links"
	exit 1
}

coproc NC { exec "$client" "$agent" "$tmp" 2>"$tmp/client.err"; }
read -r -t 30 line <&"${NC[0]}"
if [ "${line:-}" != ready ]; then
	echo "FAIL agent-net: the client did not start: $(head -c 2000 "$tmp/client.err")"
	exit 1
fi

# ---- refused before anything changes ----
expect_error bad-address "if=eth0,$MAC_A,0,10.0.0.300/24" 'interfaces[0].addresses[0].address "10.0.0.300"'
expect_error bad-prefix "if=eth0,$MAC_A,0,fd00::5/129" 'interfaces[0].addresses[0].prefix_len 129'
expect_error bad-mac "if=eth0,0a:58:zz:58:00:05,0" 'interfaces[0].mac "0a:58:zz:58:00:05"'
expect_error unknown-device "if=eth0,$MAC_A,0,10.88.0.5/16 route=10.1.0.0/16,,nope0" \
	'routes[0].device "nope0" names no interface'
expect_error bad-destination "if=eth0,$MAC_A,0 route=10.1.0.1/16,,eth0" 'routes[0].destination 10.1.0.1/16'
if [ "$(name_of "$MAC_A")" = eth1 ] && ! ip -j addr show eth1 | jq -e '.[0].addr_info[]' >/dev/null; then
	pass refused-untouched
else
	fail refused-untouched "$(ip -br addr)"
fi

# ---- two interfaces swapping names, addresses, MTU, routes ----
req="if=eth0,$MAC_A,1400,10.88.0.5/16,fd00::5/64 if=eth1,$MAC_B,0,192.168.50.2/24"
req+=" route=default,10.88.0.1,eth0 route=default,fd00::1, route=172.30.0.0/16,,eth1"
req+=" route=fd01::/64,fd00::1,eth0"
verify() { # suffix
	local s=$1
	check "eth0-link$s" '.[0].ifname == "eth0" and .[0].mtu == 1400 and (.[0].flags | index("UP"))' \
		ip -j link show eth0
	[ "$(name_of "$MAC_A")" = eth0 ] && [ "$(name_of "${MAC_B,,}")" = eth1 ] &&
		pass "names-by-mac$s" || fail "names-by-mac$s" "$(ip -br link)"
	check "eth0-addrs$s" '[.[0].addr_info[] | select(.scope == "global") | "\(.local)/\(.prefixlen)"] | sort
		== ["10.88.0.5/16", "fd00::5/64"]' ip -j addr show eth0
	check "eth0-v6-usable$s" '[.[0].addr_info[] | select(.family == "inet6" and .scope == "global")
		| select(.tentative or .dadfailed)] == []' ip -j addr show eth0
	check "eth1$s" '(.[0].flags | index("UP")) and .[0].mtu == 1500 and
		[.[0].addr_info[] | select(.family == "inet") | "\(.local)/\(.prefixlen)"] == ["192.168.50.2/24"]' \
		ip -j addr show eth1
	check "lo-up$s" '.[0].flags | index("UP")' ip -j link show lo
	check "default-v4$s" 'length == 1 and .[0].gateway == "10.88.0.1" and .[0].dev == "eth0"' \
		ip -j route show default
	check "default-v6$s" 'length == 1 and .[0].gateway == "fd00::1" and .[0].dev == "eth0"' \
		ip -j -6 route show default
	check "on-link-v4$s" 'length == 1 and .[0].dev == "eth1" and .[0].scope == "link" and
		(.[0].gateway == null)' ip -j route show 172.30.0.0/16
	check "via-v6$s" 'length == 1 and .[0].gateway == "fd00::1" and .[0].dev == "eth0"' \
		ip -j -6 route show fd01::/64
}
expect_ok setup "$req" && verify ""
# Again, as it is: nothing to change, nothing fails.
expect_ok setup-again "$req" && verify "-again"

# ---- a NIC hot-added a second after the call ----
(sleep 1 && veth late0 "$MAC_C") &
late_pid=$!
if expect_ok hot-added "if=eth2,$MAC_C,0,10.55.0.2/24 route=10.56.0.0/16,10.55.0.1,eth2"; then
	[ "$took_ms" -ge 900 ] && [ "$took_ms" -lt 8000 ] && pass hot-added-time ||
		fail hot-added-time "answered after $took_ms ms"
	check hot-added-link '(.[0].flags | index("UP")) and .[0].addr_info[0].local == "10.55.0.2"' \
		ip -j addr show eth2
	check hot-added-route 'length == 1 and .[0].gateway == "10.55.0.1"' ip -j route show 10.56.0.0/16
fi
wait "$late_pid"
late_pid=
# The first call's set-up is still there.
check kept-default-v4 'length == 1 and .[0].gateway == "10.88.0.1"' ip -j route show default

# ---- failing halfway: the kernel refuses the route, the rest is undone ----
expect_error undo-route "if=eth3,$MAC_D,0,10.99.0.2/24,fd99::2/64 route=10.77.0.0/16,10.66.0.1,eth3" \
	'routes[0] (10.77.0.0/16 via 10.66.0.1 dev eth3)'
check undo-link '(.[0].flags | index("UP") | not) and
	[.[0].addr_info[]? | select(.scope == "global")] == []' ip -j addr show dev "$(name_of "$MAC_D")"

# ---- a NIC that never comes: the wait ends ----
expect_error never-comes "if=eth4,$MAC_GONE,0" "interfaces[0].mac $MAC_GONE: no network link"
[ "$took_ms" -ge 9500 ] && pass never-comes-time || fail never-comes-time "answered after $took_ms ms"

if grep -q 'ERROR: AddressSanitizer\|runtime error' "$tmp"/net/console.log 2>/dev/null; then
	fail sanitizers "$(grep -A20 'ERROR\|runtime error' "$tmp"/net/console.log | head -40)"
fi
[ "$fails" -eq 0 ]
