#!/usr/bin/env bash
# The host dataplane beyond one flat subnet, with containers wired by the CNI plugin. Topology:
# hosts 1 and 2 share a subnet; host 3 is on a second subnet, reached through the switch
# namespace acting as a router that knows nothing of container addresses. So a container packet
# reaches host 3 only encapsulated. Proves: IPv6 (assign_ipv6 "true": ping6 and TCP across
# hosts); an IP-in-IP pool (cross-subnet) and a VXLAN pool (always), each with pings between all
# three hosts; NAT outgoing (a container reaches an address outside every pool, which sees the
# host's address; inside the pools the container's own address stays; without nat-outgoing the
# same address is unreachable); tabby-ipam as the IPAM of the reference bridge plugin. A VXLAN
# frame from a container (not a node) is dropped, while the same frame from a node gets through.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cni-lib.sh"
NET2=10.214.$((ID % 200 + 20))
OUTSIDE=198.51.100.1
host_ip() { if [ "$1" = 3 ]; then echo "$NET2.13"; else echo "$NET.$(($1 + 10))"; fi; }
hosts_up 3
# The switch routes between the two subnets; it also holds the "outside" address.
ip -n "$SW" addr add "$NET.1/24" dev br0
ip -n "$SW" addr add "$NET2.1/24" dev br0
ip -n "$SW" addr add "$OUTSIDE/32" dev lo
ip -n "$SW" link set lo up
ip netns exec "$SW" sysctl -qw net.ipv4.ip_forward=1
for i in 1 2; do ip -n "$(host_ns "$i")" route add default via "$NET.1"; done
ip -n "$(host_ns 3)" route add default via "$NET2.1"
bootstrap_cluster 3
cni_setup

in_host() {
	local i=$1
	shift
	ip netns exec "$(host_ns "$i")" "$@"
}
# ping_all C...: every container pings every other one (after the routes have spread).
ping_all() {
	local a b
	for a in "$@"; do
		for b in "$@"; do
			[ "$a" = "$b" ] && continue
			wait_for "$a (host ${CNT_HOST[$a]}) -> $b (host ${CNT_HOST[$b]})" 15 cnt_ping "$a" "$(cnt_ip "$b")"
		done
	done
}

# --- IPv6 ---------------------------------------------------------------------------------------
for i in 1 2 3; do net_conf "$i" net-v6 '{"cniVersion": "1.0.0", "ipam": {"assign_ipv6": "true"}}'; done
for i in 1 2 3; do cnt_new "six$i" && cnt_add "$i" "six$i" net-v6; done
for i in 1 2 3; do
	a=$(cnt_ip6 "six$i")
	[ -n "$a" ] || fail "six$i has no IPv6 address: $(res "six$i" net-v6)"
	ip -n "$(cnt_ns "six$i")" -o -6 addr show dev eth0 scope global | matches " $a/128 " || fail "six$i: $a is not a /128"
	ip -n "$(cnt_ns "six$i")" -6 route show default | matches "via fe80::" ||
		fail "six$i: no IPv6 default route via the host end's link-local: $(ip -n "$(cnt_ns "six$i")" -6 route)"
	res "six$i" net-v6 | matches "\"$a/128\"" || fail "six$i: the result does not give $a/128: $(res "six$i" net-v6)"
	log "six$i on host $i: $(cnt_ip "six$i") $a"
done
for a in 1 2 3; do
	for b in 1 2 3; do
		[ "$a" = "$b" ] && continue
		wait_for "six$a -> six$b over IPv6" 15 cnt_ping "six$a" "$(cnt_ip6 "six$b")"
	done
done
cnt_listen six2 8080
wait_for "TCP over IPv6 six3 -> six2" 10 reaches six3 "$(cnt_ip6 six2)" 8080 six2
log "ok: IPv6 ping and TCP across hosts"

# --- IP-in-IP and VXLAN: host 3 is on another subnet ------------------------------------------
has_ipip() {
	local ns="${PFX}ipip" ok=1
	ip netns add "$ns"
	ip -n "$ns" link add "${PFX}t" type ipip local 10.0.0.1 2>/dev/null && ok=0
	ip netns del "$ns"
	return $ok
}
encap_test() { # encap_test NAME POOL FLAG MODE [FLAG...]
	local name=$1 pool=$2 i
	tctl 1 pool add "$pool" "${@:3}" >"$WORK/out" 2>&1 || fail "pool add $pool ${*:3}: $(cat "$WORK/out")"
	for i in 1 2 3; do
		net_conf "$i" "$name" "{\"cniVersion\": \"0.3.1\", \"ipam\": {\"ipv4_pools\": [\"$pool\"]}}"
		cnt_new "$name$i"
		cnt_add "$i" "$name$i" "$name"
	done
	ping_all "${name}1" "${name}2" "${name}3"
	cnt_listen "${name}3" 8080
	wait_for "TCP ${name}1 -> ${name}3" 10 reaches "${name}1" "$(cnt_ip "${name}3")" 8080 "${name}3"
	log "ok: $3 $4 pool $pool: ping between all three hosts, TCP from host 1 to host 3"
}
if has_ipip; then
	encap_test ipip 10.70.0.0/16 --ipip cross-subnet
	# cross-subnet: host 2 is on host 1's subnet, so that route is direct.
	in_host 1 ip route get "$(cnt_ip ipip2)" | matches "dev eth0" ||
		fail "cross-subnet IP-in-IP encapsulates on one subnet: $(in_host 1 ip route get "$(cnt_ip ipip2)")"
else
	log "SKIP IP-in-IP: this kernel cannot make ipip links (no ipip module)"
fi
warnings_before=$(dmesg 2>/dev/null | grep -c "'tabby': attribute type 15 has an invalid length" || true)
# With NAT outgoing: a container's own VXLAN frame to another host would otherwise leave
# masqueraded to its host's node address, which the other hosts accept frames from (below).
encap_test vx 10.71.0.0/16 --vxlan always --nat-outgoing
# Calico's VXLAN device settings: VNI 4096, UDP port 4789, no learning. The port goes as the
# 16-bit attribute the kernel expects; libnl 3.7's own setter writes 32 bits, which the kernel
# takes (the right two bytes on a little-endian host) with a warning per device: none here.
if dmesg >/dev/null 2>&1; then
	warnings_after=$(dmesg | grep -c "'tabby': attribute type 15 has an invalid length" || true)
	[ "$warnings_after" = "$warnings_before" ] ||
		fail "the kernel warned about a netlink attribute's length while the VXLAN devices were made"
fi
d=$(in_host 1 ip -d link show vxlan.tabby)
for want in "vxlan id 4096" "dstport 4789" "nolearning"; do
	grep -q "$want" <<<"$d" || fail "vxlan.tabby lacks '$want': $d"
done
log "ok: vxlan.tabby has VNI 4096, port 4789, no learning"
# A VXLAN frame from anyone but a node would reach the containers with any inner source: one
# from container vx1, claiming to be vx3, to vx2 through host 2's VXLAN port must be dropped
# (its pool masquerades it to host 1's address, so host 2's source check alone would let it
# through: host 1 drops it as it leaves vx1); the same frame from host 1 (a node) is
# delivered, so the frame itself is right.
ip netns exec "$(cnt_ns vx2)" socat -u UDP-RECV:9999 "OPEN:$WORK/udp-vx2,creat,append" >/dev/null 2>&1 &
CNT_PIDS+=($!)
disown $!
wait_for "vx2 receiving on 9999" 5 eval "ip netns exec $(cnt_ns vx2) ss -Huln | matches ':9999 '"
mac2=$(in_host 2 cat /sys/class/net/vxlan.tabby/address)
# forge NS WORD: from namespace NS, a VXLAN frame (VNI 4096) to host 2 carrying a UDP datagram
# WORD from vx3's address to vx2's port 9999.
forge() {
	ip netns exec "$1" python3 - "$(host_ip 2)" "$mac2" "$(cnt_ip vx3)" "$(cnt_ip vx2)" "$2" <<'PY'
import socket, struct, sys
host, mac, src, dst, word = sys.argv[1:]
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
data = word.encode() + b"\n"
udp = struct.pack("!HHHH", 40000, 9999, 8 + len(data), 0) + data
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
eth = bytes.fromhex(mac.replace(":", "")) + bytes.fromhex("02aabbccddee") + b"\x08\x00"
vxlan = struct.pack("!II", 0x08000000, 4096 << 8)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(vxlan + eth + ip + udp, (host, 4789))
PY
}
forge "$(cnt_ns vx1)" from-container
forge "$(host_ns 1)" from-host
wait_for "the frame from host 1 to reach vx2" 5 grep -qx from-host "$WORK/udp-vx2"
sleep 1
! grep -qx from-container "$WORK/udp-vx2" || fail "a VXLAN frame from a container reached vx2 as vx3"
in_host 1 nft list chain inet tabby-nat prerouting | matches 'iifname "cali\*" udp dport 4789 drop' ||
	fail "host 1 does not drop its containers' VXLAN: $(in_host 1 nft list table inet tabby-nat)"
in_host 2 nft list chain inet tabby-nat input | matches "udp dport 4789 ip saddr != @hosts4 counter" ||
	fail "host 2 has no VXLAN source rule: $(in_host 2 nft list table inet tabby-nat)"
log "ok: VXLAN takes frames from the nodes only"

# --- NAT outgoing -------------------------------------------------------------------------------
ip netns exec "$SW" socat "TCP-LISTEN:7000,bind=$OUTSIDE,reuseaddr,fork" 'SYSTEM:echo $SOCAT_PEERADDR' >/dev/null 2>&1 &
CNT_PIDS+=($!)
disown $!
tctl 1 pool add 10.72.0.0/16 --nat-outgoing >"$WORK/out" 2>&1 || fail "pool add --nat-outgoing: $(cat "$WORK/out")"
for i in 1 2; do net_conf "$i" net-nat '{"ipam": {"ipv4_pools": ["10.72.0.0/16"]}}'; done
cnt_new nat1
cnt_add 1 nat1 net-nat
cnt_new nat2
cnt_add 2 nat2 net-nat
wait_for "nat1 -> $OUTSIDE, masqueraded to host 1's address" 10 reaches nat1 "$OUTSIDE" 7000 "$(host_ip 1)"
ip netns exec "$(cnt_ns nat2)" socat "TCP-LISTEN:7001,reuseaddr,fork" 'SYSTEM:echo $SOCAT_PEERADDR' >/dev/null 2>&1 &
CNT_PIDS+=($!)
disown $!
wait_for "nat1 -> nat2 keeps its own address" 10 reaches nat1 "$(cnt_ip nat2)" 7001 "$(cnt_ip nat1)"
# The default pool has no nat-outgoing: the outside has no route back to its addresses.
net_conf 1 net-plain '{"cniVersion": "0.3.1", "ipam": {"ipv4_pools": ["192.168.0.0/16"]}}'
cnt_new plain1
cnt_add 1 plain1 net-plain
wait_for "plain1 -> host 2 (plain1 is wired and may send)" 10 cnt_ping plain1 "$(host_ip 2)"
blocked plain1 "$OUTSIDE" 7000 || fail "a container of a pool without nat-outgoing reached $OUTSIDE"
log "ok: NAT outgoing: outside sees $(host_ip 1); inside the pools addresses stay; no NAT without the option"

# --- tabby-ipam under the reference bridge plugin (host 2) --------------------------------------
tctl 2 pool add 10.73.0.0/24 >"$WORK/out" 2>&1 || fail "pool add 10.73.0.0/24: $(cat "$WORK/out")"
cat >"$WORK/net.d/2/br-net.conf" <<EOF
{"cniVersion": "0.4.0", "name": "br-net", "type": "bridge", "bridge": "tbr0", "isGateway": false,
 "agent_socket": "$(sock 2)",
 "ipam": {"type": "tabby-ipam", "ipv4_pools": ["10.73.0.0/24"], "routes": [{"dst": "10.73.0.0/24"}]}}
EOF
used=$(pool_in_use 2 10.73.0.0/24)
for c in br1 br2; do cnt_new "$c" && cnt_add 2 "$c" br-net; done
for c in br1 br2; do
	[ -n "$(cnt_ip "$c")" ] || fail "$c got no address from tabby-ipam: $(res "$c" br-net)"
	ip -n "$(cnt_ns "$c")" route show 10.73.0.0/24 | matches "dev eth0" ||
		fail "$c has no on-link route to the pool: $(ip -n "$(cnt_ns "$c")" route)"
done
[ "$(ip -n "$(host_ns 2)" -o link show master tbr0 | wc -l)" = 2 ] || fail "tbr0 does not have the two veths"
[ "$(pool_in_use 2 10.73.0.0/24)" = $((used + 2)) ] || fail "tabby-ipam did not record two addresses"
wait_for "br1 -> br2 on the bridge" 10 cnt_ping br1 "$(cnt_ip br2)"
cnt_del 2 br1 br-net
cnt_del 2 br2 br-net
[ "$(pool_in_use 2 10.73.0.0/24)" = "$used" ] || fail "tabby-ipam DEL did not release the addresses"
log "ok: tabby-ipam under bridge: addresses, the on-link pool route, ping, release"

# An IPAM plugin given a netns path the agent cannot see: the address is recorded without it, so
# the leak reconciler, which would take the missing path for a dead container, leaves it alone.
CNI_TYPE=tabby-ipam cni_plugin 2 ADD ipamonly /nonexistent/ns eth0 "$WORK/net.d/2/br-net.conf" ||
	fail "tabby-ipam ADD with an unseen netns: $(cat "$WORK/out" "$WORK/err")"
grep -q "ADD ipamonly/eth0: netns /nonexistent/ns is not a network namespace this agent can see" "$WORK/agent2.log" ||
	fail "agent2 did not log the unseen netns"
tctl 2 ipam check >"$WORK/out" 2>&1 || true
matches "belongs to container ipamonly, which has no network namespace recorded: never released automatically" <"$WORK/out" ||
	fail "ipam check: $(cat "$WORK/out")"
CNI_TYPE=tabby-ipam cni_plugin 2 DEL ipamonly "" eth0 "$WORK/net.d/2/br-net.conf" || fail "tabby-ipam DEL: $(cat "$WORK/out" "$WORK/err")"
[ "$(pool_in_use 2 10.73.0.0/24)" = "$used" ] || fail "the DEL did not release the address"
log "ok: tabby-ipam with a netns the agent cannot see: recorded without it, never reclaimed, released by DEL"

wait_for "hashes to agree" 10 hash_agrees 1
pass
