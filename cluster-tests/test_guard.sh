#!/usr/bin/env bash
# Containers cannot reach the control plane: the members' peer and API ports take requests
# without authentication, so a container that reached them could rewrite the policy meant to
# confine it. Every agent refuses TCP from its workloads to every member's peer and API address
# and port (table inet tabby-guard), with a reset.
# - From a container on host 1: every member's peer and API port is refused at once, its own
#   host's (input) and the others' (forward), while the same hosts' other ports, another
#   container and the host's own traffic to the members are not touched;
# - a member that joins later is guarded on every host, and one removed is not any more;
# - an agent that stops leaves the guard in place for its containers;
# - --workloads-reach-agents removes the table at start and lets containers connect; without it
#   again, the guard is back.
# And a container cannot pass for another: what it sends from an address that is not its own
# (another container's, IPv4 or IPv6) never leaves its host (the policy table's reverse path
# rule; the kernel's rp_filter covers IPv4 only, so only the IPv6 half fails without that rule),
# while its own addresses work. The agent takes no address it could not guard (IPv4-mapped).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cni-lib.sh"
hosts_up 4
bootstrap_cluster 3
cni_setup
command -v socat >/dev/null || fail "no socat (apt-get install socat)"

# conn C ADDR PORT: try a TCP connection from container C; prints "open", "refused" (a reset
# came back) or "silent" (nothing within 3 s).
conn() {
	local err
	if err=$(ip netns exec "$(cnt_ns "$1")" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>&1); then
		echo open
	elif [[ $err == *"Connection refused"* ]]; then
		echo refused
	else
		echo silent
	fi
}
# expect C ADDR PORT WANT
expect() {
	local got
	got=$(conn "$1" "$2" "$3")
	[ "$got" = "$4" ] || fail "container $1 -> $2:$3: $got, not $4"
}
# host_listen I PORT: a plain listener in host I's namespace (not a container) on its address.
host_listen() {
	ip netns exec "$(host_ns "$1")" socat "TCP-LISTEN:$2,bind=$(host_ip "$1"),reuseaddr,fork" \
		SYSTEM:"echo host$1" >/dev/null 2>&1 &
	CNT_PIDS+=($!)
	disown $!
	wait_for "host $1 listening on $2" 5 eval "ip netns exec $(host_ns "$1") ss -Htln | matches ':$2 '"
}
guarded_on() { ip netns exec "$(host_ns "$1")" nft list set inet tabby-guard agents4 2>/dev/null | grep -q "$2 . $3"; }
metric() { curl -s --unix-socket "$(sock "$1")" http://tabby/metrics | awk -v m="$2" '$1 == m {print $2}'; }

for i in 1 2; do net_conf "$i" net-v6 '{"cniVersion": "1.0.0", "ipam": {"assign_ipv6": "true"}}'; done
cnt_new a
cnt_add 1 a net-v6
cnt_new b
cnt_add 2 b net-v6
cnt_listen b 80
wait_for "a -> b" 15 reaches a "$(cnt_ip b)" 80 b
host_listen 1 7000
host_listen 2 7000

wait_for "the guard on host 1" 10 guarded_on 1 "$(host_ip 3)" 7791
for i in 1 2 3; do
	for port in 7790 7791; do expect a "$(host_ip "$i")" "$port" refused; done
done
log "ok: every member's peer and API port refused to a container on host 1"
expect a "$(host_ip 1)" 7000 open # the host's other services (Mesos executors need them)
expect a "$(host_ip 2)" 7000 open
expect a "$(cnt_ip b)" 80 open
# The refusals are the guard's, not a missing listener: the host itself reaches its members.
for i in 2 3; do
	ip netns exec "$(host_ns 1)" timeout 3 bash -c "exec 3<>/dev/tcp/$(host_ip "$i")/7791" ||
		fail "host 1 cannot reach agent$i's API"
done
[ "$(metric 1 tabby_guard_ports)" = 6 ] || fail "tabby_guard_ports on agent1: $(metric 1 tabby_guard_ports), not 6"
grep -q "guard: containers on this host are refused the peer and API ports of the 3 members" "$WORK/agent1.log" ||
	fail "agent1 did not say what it guards"
! grep -q "of the 0 members" "$WORK/agent1.log" || fail "agent1 loaded a guard for no member at start"
log "ok: other ports, containers and the host itself are not touched"
# Addresses are written one way, the way the guard refuses them: an IPv4-mapped API address,
# which listens for IPv4, is refused at start and by a join.
rc=0
"$TABBY" agent --name x --data-dir "$WORK/x" --socket "$WORK/x.sock" --peer-address "$(host_ip 1):7795" \
	--api-address "[::ffff:$(host_ip 1)]:7796" --bootstrap >"$WORK/out" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "is not IP:PORT" "$WORK/out" || fail "an IPv4-mapped --api-address: $rc $(cat "$WORK/out")"
curl -s --unix-socket "$(sock 1)" -X POST http://tabby/v1/cluster/join -d "{\"name\": \"x\", \"peer_address\": \"$(host_ip 1):7795\", \"api_address\": \"[::ffff:$(host_ip 1)]:7796\", \"token\": \"$(token)\"}" >"$WORK/out"
matches "is not IP:PORT" <"$WORK/out" || fail "a join with an IPv4-mapped API address: $(cat "$WORK/out")"
log "ok: an IPv4-mapped address is refused"

# Spoofing: c's addresses on a's interface, and datagrams to b from them and from a's own.
cnt_new c
cnt_add 2 c net-v6
ip netns exec "$(cnt_ns b)" socat -u UDP6-RECV:9999 "OPEN:$WORK/udp-b,creat,append" >/dev/null 2>&1 &
CNT_PIDS+=($!)
disown $!
wait_for "b receiving on 9999" 5 eval "ip netns exec $(cnt_ns b) ss -Huln | matches ':9999 '"
a4=$(cnt_ip a) a6=$(cnt_ip6 a) # before c's are added: the kernel lists the newest first
ip -n "$(cnt_ns a)" addr add "$(cnt_ip c)/32" dev eth0
ip -n "$(cnt_ns a)" addr add "$(cnt_ip6 c)/128" dev eth0 nodad
# datagram SRC DST WORD: from a, bound to SRC.
datagram() {
	local dst=$2 src=$1
	[[ $dst == *:* ]] && { dst="[$dst]"; src="[$src]"; }
	echo "$3" | ip netns exec "$(cnt_ns a)" socat -u - "UDP:$dst:9999,bind=$src" ||
		fail "a could not send $3"
}
got() { grep -qx "$1" "$WORK/udp-b" 2>/dev/null; }
datagram "$(cnt_ip c)" "$(cnt_ip b)" spoofed4
datagram "$(cnt_ip6 c)" "$(cnt_ip6 b)" spoofed6
datagram "$a4" "$(cnt_ip b)" own4
datagram "$a6" "$(cnt_ip6 b)" own6
wait_for "b to get a's datagrams from its own addresses" 5 eval 'got own4 && got own6'
sleep 1
! got spoofed4 || fail "b got a datagram from a that claimed to come from c ($(cnt_ip c))"
! got spoofed6 || fail "b got a datagram from a that claimed to come from c ($(cnt_ip6 c))"
log "ok: a container cannot send from another's address"

# A member that joins is guarded on every host; one that is removed is not any more.
start_agent 4 --join "$(host_ip 1):7791" --token "$(token)"
wait_for "4 healthy members" 30 members_healthy 1 4
wait_for "agent4's API guarded on host 1" 10 guarded_on 1 "$(host_ip 4)" 7791
expect a "$(host_ip 4)" 7791 refused
expect a "$(host_ip 4)" 7790 refused
tctl 1 cluster remove agent4 >/dev/null || fail "cluster remove agent4"
wait_for "agent4 out of the guard on host 1" 10 eval '! guarded_on 1 "$(host_ip 4)" 7791'
stop_agent 4
host_listen 4 7791
expect a "$(host_ip 4)" 7791 open
log "ok: a joining member is guarded, a removed one is not"

# An agent that stops leaves its containers guarded.
stop_agent 1
expect a "$(host_ip 2)" 7791 refused
expect a "$(host_ip 1)" 7000 open
start_agent 1 --workloads-reach-agents
wait_for "the guard's table gone from host 1" 10 eval '! ip netns exec "$(host_ns 1)" nft list table inet tabby-guard'
grep -q "guard: off (--workloads-reach-agents)" "$WORK/agent1.log" || fail "agent1 did not say the guard is off"
expect a "$(host_ip 1)" 7791 open
expect a "$(host_ip 2)" 7791 open
[ "$(metric 1 tabby_guard_ports)" = 0 ] || fail "tabby_guard_ports with the guard off: $(metric 1 tabby_guard_ports)"
log "ok: --workloads-reach-agents lets containers connect"
stop_agent 1
start_agent 1
wait_for "the guard back on host 1" 10 guarded_on 1 "$(host_ip 1)" 7791
expect a "$(host_ip 1)" 7791 refused
expect a "$(host_ip 2)" 7790 refused
log "ok: the guard is back without the flag"
pass
