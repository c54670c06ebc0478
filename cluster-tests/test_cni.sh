#!/usr/bin/env bash
# The CNI plugin on a three-host cluster, driven by the reference runtime (cnitool) with the
# seeds' own calico config and, where Mesos behaves differently, run directly as Mesos runs it.
# Proves with real packets: containers get addresses and reach each other on the same and on
# other hosts; a repeated ADD returns the same address and repairs a deleted container route,
# host route and veth; DEL twice, DEL of an unknown container and DEL without CNI_NETNS succeed
# (the last releasing the address); CHECK passes on a good container and fails after its route
# is broken; refused calls print a CNI error and leave nothing allocated or wired; IP= picks the
# address; a container on two networks; two container IDs sharing 11 characters (also added at
# once, racing for the name their interfaces were prepared under); every CNI
# version's result shape; Mesos labels on the endpoint.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cni-lib.sh"
hosts_up 3
bootstrap_cluster 3
cni_setup
POOL=192.168.0.0/16

# in_host I CMD...: run CMD in host I's namespace.
in_host() {
	local i=$1
	shift
	ip netns exec "$(host_ns "$i")" "$@"
}

# wired C: C's interface, addresses and routes are as the reference (1.5) says, on both sides.
wired() {
	local c=$1 ip hif ns
	ns=$(cnt_ns "$c")
	ip=$(cnt_ip "$c") && [ -n "$ip" ] || { echo "$c has no address"; return 1; }
	ip -n "$ns" -o -4 addr show dev eth0 | matches " $ip/32 " || { echo "$c: $ip is not a /32"; return 1; }
	ip -n "$ns" -4 route show default | matches "via 169.254.1.1 dev eth0" ||
		{ echo "$c: no default route via 169.254.1.1: $(ip -n "$ns" route)"; return 1; }
	hif=$(host_if "$c") && [ -n "$hif" ] || { echo "$c: no host-side veth"; return 1; }
	ip -n "$(host_ns "${CNT_HOST[$c]}")" link show dev "$hif" | matches "link/ether ee:ee:ee:ee:ee:ee" ||
		{ echo "$c: host end $hif has not the MAC ee:ee:ee:ee:ee:ee"; return 1; }
	[ "$(in_host "${CNT_HOST[$c]}" cat "/proc/sys/net/ipv4/conf/$hif/proxy_arp")" = 1 ] ||
		{ echo "$c: no proxy ARP on $hif"; return 1; }
	ip -n "$(host_ns "${CNT_HOST[$c]}")" -4 route show "$ip/32" | matches "dev $hif" ||
		{ echo "$c: no host route $ip/32 dev $hif"; return 1; }
}
must_be_wired() { local why; why=$(wired "$1") || fail "$1 is not wired: $why"; }

# result_ip C NET [IFNAME]: the IPv4 address (with prefix) a saved 0.3+/0.4 result gives.
result_ip() { res "$1" "$2" "${3:-eth0}" | json '[i["address"] for i in d["ips"] if i.get("version", "4") == "4" and "." in i["address"]][0]'; }

# --- Addresses through cnitool with the seeds' calico config ------------------------------------
for c in a1 b1 a2 a3; do cnt_new "$c"; done
cnt_add 1 a1 calico-net-1
cnt_add 1 b1 calico-net-1
cnt_add 2 a2 calico-net-1
cnt_add 3 a3 calico-net-1
for c in a1 b1 a2 a3; do
	must_be_wired "$c"
	[ "$(result_ip "$c" calico-net-1)" = "$(cnt_ip "$c")/32" ] ||
		fail "$c: the result says $(res "$c" calico-net-1), the kernel $(cnt_ip "$c")"
	ipcalc=$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]))' "$(cnt_ip "$c")" "$POOL")
	[ "$ipcalc" = True ] || fail "$c's address $(cnt_ip "$c") is outside $POOL"
	log "ok: $c on host ${CNT_HOST[$c]} has $(cnt_ip "$c") on $(host_if "$c")"
done
[ "$(printf '%s\n' "$(cnt_ip a1)" "$(cnt_ip b1)" "$(cnt_ip a2)" "$(cnt_ip a3)" | sort -u | wc -l)" = 4 ] ||
	fail "two containers got the same address"
catch_up
eps=$(endpoints 2)
[ "$(grep -c . <<<"$eps")" = 4 ] || fail "agent2 does not list 4 endpoints: $eps"
grep -q "^$(cnitool_cid "/var/run/netns/$(cnt_ns a3)")/eth0 agent3 $(cnt_ip a3)/32$" <<<"$eps" ||
	fail "a3's endpoint is not (workload = container ID, eth0, agent3, its address): $eps"
log "ok: every container has its endpoint"

# --- Packets: same host and across hosts --------------------------------------------------------
wait_for "a1 -> b1 (same host)" 10 cnt_ping a1 "$(cnt_ip b1)"
wait_for "a1 -> a2 (host 1 -> 2)" 10 cnt_ping a1 "$(cnt_ip a2)"
wait_for "a1 -> a3 (host 1 -> 3)" 10 cnt_ping a1 "$(cnt_ip a3)"
wait_for "a3 -> a2 (host 3 -> 2)" 10 cnt_ping a3 "$(cnt_ip a2)"
cnt_listen a2 8080
wait_for "TCP a3 -> a2:8080" 10 reaches a3 "$(cnt_ip a2)" 8080 a2
log "ok: ping on one host and across hosts, TCP across hosts"

# --- A repeated ADD returns the same address and repairs the wiring -----------------------------
ip_a1=$(cnt_ip a1)
hif_a1=$(host_if a1)
used=$(in_use 1)
cnt_add 1 a1 calico-net-1
[ "$(result_ip a1 calico-net-1)" = "$ip_a1/32" ] || fail "a repeated ADD gave $(res a1 calico-net-1), not $ip_a1"
[ "$(in_use 1)" = "$used" ] || fail "a repeated ADD allocated an address"
must_be_wired a1
ip -n "$(cnt_ns a1)" route del default
in_host 1 ip route del "$ip_a1/32"
cnt_no_ping a1 "$(cnt_ip a2)" || fail "a1 still reaches a2 without its default route"
cnt_add 1 a1 calico-net-1
must_be_wired a1
wait_for "a1 -> a2 after ADD repaired the routes" 10 cnt_ping a1 "$(cnt_ip a2)"
in_host 1 ip link del "$hif_a1"
cnt_no_ping a2 "$ip_a1" || fail "a1 still answers without its veth"
cnt_add 1 a1 calico-net-1
[ "$(cnt_ip a1)" = "$ip_a1" ] || fail "ADD after the veth was deleted gave $(cnt_ip a1), not $ip_a1"
must_be_wired a1
wait_for "a2 -> a1 after ADD rebuilt the veth" 10 cnt_ping a2 "$ip_a1"
[ "$(in_use 1)" = "$used" ] || fail "repairing ADDs allocated addresses"
log "ok: repeated ADD: same address, routes and veth repaired"

# --- CHECK -------------------------------------------------------------------------------------
rc=0
cnt_check 1 a1 calico-net-1 || rc=$?
[ $rc = 0 ] || fail "CHECK of a good container failed: $(cat "$WORK/out" "$WORK/err")"
# Directly, with the prevResult a runtime passes, so the CNI error itself can be seen.
python3 - "$WORK/net.d/1/calico-net-1.conf" "$WORK/res/a1.calico-net-1.eth0" >"$WORK/check.conf" <<'PY'
import json, sys
conf = json.load(open(sys.argv[1])); conf["prevResult"] = json.load(open(sys.argv[2]))
print(json.dumps(conf))
PY
a1_cid=$(cnitool_cid "/var/run/netns/$(cnt_ns a1)")
rc=0
cni_plugin 1 CHECK "$a1_cid" "/var/run/netns/$(cnt_ns a1)" eth0 "$WORK/check.conf" || rc=$?
[ $rc = 0 ] || fail "direct CHECK of a good container failed: $(cat "$WORK/out" "$WORK/err")"
ip -n "$(cnt_ns a1)" route del default
rc=0
cnt_check 1 a1 calico-net-1 || rc=$?
cnitool_error $rc ""
rc=0
cni_plugin 1 CHECK "$a1_cid" "/var/run/netns/$(cnt_ns a1)" eth0 "$WORK/check.conf" || rc=$?
cni_error $rc 102
# (Not the host route: the agent's own resync may put that back at any moment.)
ip -n "$(cnt_ns a1)" route add default via 169.254.1.1 dev eth0
ip -n "$(cnt_ns a1)" addr del "$ip_a1/32" dev eth0
rc=0
cni_plugin 1 CHECK "$a1_cid" "/var/run/netns/$(cnt_ns a1)" eth0 "$WORK/check.conf" || rc=$?
cni_error $rc 102
cnt_add 1 a1 calico-net-1
rc=0
cnt_check 1 a1 calico-net-1 || rc=$?
[ $rc = 0 ] || fail "CHECK after the repairing ADD failed: $(cat "$WORK/err")"
log "ok: CHECK passes on a good container and fails on a broken route and a missing address"

# --- DEL: twice, unknown containers ------------------------------------------------------------
used=$(in_use 1)
hif_b1=$(host_if b1)
cnt_del 1 b1 calico-net-1
cnt_del 1 b1 calico-net-1
[ "$(in_use 1)" = $((used - 1)) ] || fail "DEL did not release b1's address ($used -> $(in_use 1))"
! ip -n "$(host_ns 1)" link show dev "$hif_b1" >/dev/null 2>&1 || fail "DEL left b1's veth $hif_b1"
catch_up
! endpoints 3 | matches "$(cnitool_cid "/var/run/netns/$(cnt_ns b1)")" || fail "DEL left b1's endpoint"
cnt_new empty
rc=0
cni_plugin 1 DEL never-added "/var/run/netns/$(cnt_ns empty)" eth0 "$WORK/net.d/1/calico-net-1.conf" || rc=$?
[ $rc = 0 ] || fail "DEL of an unknown container failed: $(cat "$WORK/out" "$WORK/err")"
rc=0
cni_plugin 1 DEL never-added "" eth0 "$WORK/net.d/1/calico-net-1.conf" || rc=$?
[ $rc = 0 ] || fail "DEL of an unknown container without CNI_NETNS failed: $(cat "$WORK/out" "$WORK/err")"
rc=0
cni_plugin 1 DEL never-added /var/run/netns/no-such-namespace eth0 "$WORK/net.d/1/calico-net-1.conf" || rc=$?
[ $rc = 0 ] || fail "DEL with a missing namespace failed: $(cat "$WORK/out" "$WORK/err")"
[ "$(in_use 1)" = $((used - 1)) ] || fail "DELs of unknown containers changed the addresses in use"
log "ok: DEL twice, DEL of unknown containers"

# --- Mesos: no cniVersion (0.2.0 shape), labels, DEL after the namespace is gone ----------------
cni_write_conf "$WORK/mesos.conf" calico-net-1 "$(sock 2)" '{"args": {"org.apache.mesos": {"network_info": {
	"name": "calico-net-1", "labels": {"labels": [{"key": "role", "value": "frontend"},
	{"key": "DCOS_SPACE", "value": "/a/b/c"}, {"key": "foo bar", "value": "x"}]}}}}}'
grep -q cniVersion "$WORK/mesos.conf" && fail "the Mesos config has a cniVersion"
cnt_new m1
CNT_HOST[m1]=2
rc=0
cni_plugin 2 ADD mesos-0001 "/var/run/netns/$(cnt_ns m1)" eth0 "$WORK/mesos.conf" || rc=$?
[ $rc = 0 ] || fail "Mesos ADD failed: $(cat "$WORK/out" "$WORK/err")"
json 'd["ip4"]["ip"]' <"$WORK/out" >"$WORK/m1.ip" 2>/dev/null || fail "the Mesos ADD result has no ip4.ip: $(cat "$WORK/out")"
json '"ips" not in d and "interfaces" not in d' <"$WORK/out" | matches True ||
	fail "a config without cniVersion did not get the 0.2.0 shape: $(cat "$WORK/out")"
[ "$(cat "$WORK/m1.ip")" = "$(cnt_ip m1)/32" ] || fail "ip4.ip $(cat "$WORK/m1.ip") is not m1's $(cnt_ip m1)"
must_be_wired m1
wait_for "a1 -> m1 (Mesos container)" 10 cnt_ping a1 "$(cnt_ip m1)"
catch_up
labels=$(tctl 1 get workloadendpoint -o json --workload mesos-0001 | python3 -c '
import json, sys
d = json.load(sys.stdin); d = d[0] if isinstance(d, list) else d
print(json.dumps(d["metadata"].get("labels", {}), sort_keys=True))')
[ "$labels" = '{"DCOS_SPACE": "a.b.c", "foo-bar": "x", "role": "frontend"}' ] ||
	fail "the Mesos labels became $labels"
log "ok: Mesos ADD: 0.2.0 result, endpoint labels $labels"
used=$(in_use 2)
cnt_gone m1
rc=0
cni_plugin 2 DEL mesos-0001 "" eth0 "$WORK/mesos.conf" || rc=$?
[ $rc = 0 ] || fail "Mesos DEL without CNI_NETNS failed: $(cat "$WORK/out" "$WORK/err")"
[ "$(in_use 2)" = $((used - 1)) ] || fail "DEL without CNI_NETNS did not release the address"
catch_up
! endpoints 1 | matches mesos-0001 || fail "DEL without CNI_NETNS left the endpoint"
log "ok: DEL without CNI_NETNS released the address and the endpoint"

# --- Refused calls print a CNI error and leave nothing allocated or wired -----------------------
before_use=$(in_use 1)
before_eps=$(endpoints 1)
before_links=$(ip -n "$(host_ns 1)" -o link show | awk -F': ' '{print $2}' | sort)
cnt_new bad
bad_ns=/var/run/netns/$(cnt_ns bad)
refuse() { # refuse CODE SUBSTRING CONF [VAR=VALUE...]: ADD of container "bad" is refused
	local code=$1 sub=$2 conf=$3 rc=0
	shift 3
	cni_plugin 1 ADD bad-container "$bad_ns" eth0 "$conf" "$@" || rc=$?
	cni_error $rc "$code" "$sub"
}
cni_write_conf "$WORK/e1.conf" "bad name!" "$(sock 1)" '{"cniVersion": "0.4.0"}'
refuse 7 "" "$WORK/e1.conf"
mesos_labels() { cni_write_conf "$WORK/e.conf" calico-net-1 "$(sock 1)" \
	"{\"args\": {\"org.apache.mesos\": {\"network_info\": {\"labels\": {\"labels\": $1}}}}}"; }
mesos_labels '[{"key": "a/b", "value": "1"}, {"key": "a.b", "value": "2"}]'
refuse 7 "a.b" "$WORK/e.conf"
mesos_labels '[{"key": "///", "value": "1"}]'
refuse 7 "" "$WORK/e.conf"
cni_write_conf "$WORK/e3.conf" calico-net-1 "$WORK/no-agent.sock" '{"cniVersion": "0.4.0"}'
refuse 11 "$WORK/no-agent.sock" "$WORK/e3.conf"
cni_write_conf "$WORK/e4.conf" calico-net-1 "$(sock 1)" '{"cniVersion": "9.9.9"}'
refuse 1 "9.9.9" "$WORK/e4.conf"
refuse 4 "" "$WORK/net.d/1/calico-net-1.conf" CNI_IFNAME=
rc=0
cni_plugin 1 ADD bad-container "$bad_ns" eth0 "$WORK/net.d/1/calico-net-1.conf" CNI_ARGS=IP=10.99.99.99 || rc=$?
[ $rc != 0 ] || fail "IP= outside every pool was accepted"
cni_error $rc "$(json 'd["code"]' <"$WORK/out")" "10.99.99.99"
rc=0
cni_plugin 1 ADD bad-container "$bad_ns" eth0 "$WORK/net.d/1/calico-net-1.conf" CNI_ARGS="IP=$(cnt_ip a2)" || rc=$?
cni_error $rc 100
rc=0
cnitool_run 1 add bad calico-net-1 eth0 "IP=10.99.99.99" || rc=$?
cnitool_error $rc "10.99.99.99"
[ "$(in_use 1)" = "$before_use" ] || fail "refused calls left addresses allocated ($before_use -> $(in_use 1))"
[ "$(endpoints 1)" = "$before_eps" ] || fail "refused calls left endpoints: $(endpoints 1)"
[ "$(ip -n "$(host_ns 1)" -o link show | awk -F': ' '{print $2}' | sort)" = "$before_links" ] ||
	fail "refused calls left interfaces on host 1: $(ip -n "$(host_ns 1)" -o link show)"
! ip -n "$(cnt_ns bad)" link show dev eth0 >/dev/null 2>&1 || fail "a refused call left eth0 in the container"
log "ok: every refused call left nothing allocated and nothing wired"

# --- IP= asks for an address -------------------------------------------------------------------
cnt_new ipreq
cnt_add 1 ipreq calico-net-1 eth0 "IP=192.168.250.7"
[ "$(cnt_ip ipreq)" = 192.168.250.7 ] || fail "IP=192.168.250.7 gave $(cnt_ip ipreq)"
must_be_wired ipreq
wait_for "a3 -> the requested address" 10 cnt_ping a3 192.168.250.7
log "ok: IP= gave the address asked for, reachable across hosts"

# --- An address borrowed from another host's block; changes routes do not depend on -------------
# recomputes I: how many times agent I calculated its routes.
recomputes() { curl -s --unix-socket "$(sock "$1")" http://tabby/metrics | awk '$1 == "tabby_netsync_recomputes_total" {print $2}'; }
# Containers coming and going on host 1 inside its own block change nothing host 3 routes, and
# host 3 must not recalculate its routes for them (it used to, once per change, reading every
# allocation of the cluster). The coincidence of the periodic refresh allows one.
r0=$(recomputes 3)
for k in 1 2 3 4 5; do
	cnt_new "quiet$k"
	cnt_add 1 "quiet$k" calico-net-1
	cnt_del 1 "quiet$k" calico-net-1
	cnt_gone "quiet$k"
done
catch_up
r1=$(recomputes 3)
[ -n "$r0" ] && [ $((r1 - r0)) -le 1 ] ||
	fail "host 3 recalculated its routes $((r1 - r0)) times for 10 changes inside host 1's block"
# Host 2 asks for an address inside host 1's block: host 1 and 3 route it to host 2.
ip_a1=$(cnt_ip a1)
borrowed=${ip_a1%.*}.$(((${ip_a1##*.} & ~63) + 50))
cnt_new borrow
cnt_add 2 borrow calico-net-1 eth0 "IP=$borrowed"
[ "$(cnt_ip borrow)" = "$borrowed" ] || fail "IP=$borrowed gave $(cnt_ip borrow)"
must_be_wired borrow
routed_via() { ip -n "$(host_ns "$1")" -4 route show "$2/32" proto 116 | grep -q "via $3"; }
for i in 1 3; do
	wait_for "host $i routes the borrowed $borrowed via host 2" 10 routed_via "$i" "$borrowed" "$(host_ip 2)"
done
wait_for "a1 -> the borrowed address on host 2" 10 cnt_ping a1 "$borrowed"
wait_for "a3 -> the borrowed address on host 2" 10 cnt_ping a3 "$borrowed"
cnt_del 2 borrow calico-net-1
unrouted_at() { [ -z "$(ip -n "$(host_ns "$1")" -4 route show "$2/32" proto 116)" ]; }
for i in 1 3; do
	wait_for "host $i drops the route of the released $borrowed" 10 unrouted_at "$i" "$borrowed"
done
log "ok: a borrowed address is routed to its holder and no longer once released; host 3 recalculated $((r1 - r0)) times for 10 changes in host 1's block"

# --- Every CNI version gets its result shape ---------------------------------------------------
rc=0
cni_plugin 1 VERSION "" "" eth0 "$WORK/net.d/1/calico-net-1.conf" || rc=$?
[ $rc = 0 ] || fail "VERSION failed: $(cat "$WORK/out")"
[ "$(json 'sorted(d["supportedVersions"])' <"$WORK/out")" = "['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0']" ] ||
	fail "VERSION: $(cat "$WORK/out")"
for v in 0.1.0 0.2.0 0.3.0 0.3.1 0.4.0 1.0.0; do
	cnt_new "v${v//./}"
	CNT_HOST[v${v//./}]=3
	cni_write_conf "$WORK/v.conf" calico-net-1 "$(sock 3)" "{\"cniVersion\": \"$v\"}"
	rc=0
	cni_plugin 3 ADD "version-${v//./}" "/var/run/netns/$(cnt_ns "v${v//./}")" eth0 "$WORK/v.conf" || rc=$?
	[ $rc = 0 ] || fail "ADD with cniVersion $v failed: $(cat "$WORK/out" "$WORK/err")"
	python3 - "$v" "$(cnt_ip "v${v//./}")/32" "$WORK/out" <<'PY' || fail "cniVersion $v: wrong result shape: $(cat "$WORK/out")"
import json, sys
v, addr, d = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
assert d["cniVersion"] == v
if v in ("0.1.0", "0.2.0"):
    assert d["ip4"]["ip"] == addr and "ips" not in d
else:
    ips = d["ips"]
    assert [i["address"] for i in ips] == [addr]
    assert all(("version" in i) == (v != "1.0.0") for i in ips)
PY
	must_be_wired "v${v//./}"
	rc=0
	cni_plugin 3 DEL "version-${v//./}" "/var/run/netns/$(cnt_ns "v${v//./}")" eth0 "$WORK/v.conf" || rc=$?
	[ $rc = 0 ] || fail "DEL with cniVersion $v failed: $(cat "$WORK/out" "$WORK/err")"
done
log "ok: VERSION, and each version's result shape"

# --- Host-side names: two networks in one container, container IDs sharing 11 characters -------
for s in 1 2; do
	cnt_new "same$s"
	CNT_HOST[same$s]=1
	rc=0
	cni_plugin 1 ADD "0123456789a-same-$s" "/var/run/netns/$(cnt_ns "same$s")" eth0 \
		"$WORK/net.d/1/calico-net-1.conf" || rc=$?
	[ $rc = 0 ] || fail "ADD of container 0123456789a-same-$s failed: $(cat "$WORK/out" "$WORK/err")"
	must_be_wired "same$s"
done
[ "$(host_if same1)" != "$(host_if same2)" ] || fail "container IDs sharing 11 characters share $(host_if same1)"
wait_for "a2 -> same1" 10 cnt_ping a2 "$(cnt_ip same1)"
wait_for "a2 -> same2" 10 cnt_ping a2 "$(cnt_ip same2)"
log "ok: IDs sharing 11 characters: $(host_if same1) and $(host_if same2)"
# The agent makes an ADD's interfaces while raft decides its addresses, under the host-side name
# it expects the state machine to give (agent/routes_cni.c). Two ADDs at once of IDs sharing 11
# characters both expect cali0123456789b, and only the first applied gets it: whichever way the
# race goes, both containers end up wired under distinct names with nothing else of theirs left.
grep -q "cni: ADD .*via $(host_if a1) (.*interfaces prepared meanwhile" "$WORK/agent1.log" ||
	fail "a1's ADD did not prepare its interfaces while it replicated: $(grep 'cni: ADD' "$WORK/agent1.log" | head -3)"
for s in 1 2; do cnt_new "race$s"; CNT_HOST[race$s]=1; done
for round in 1 2 3 4 5; do
	pids=()
	for s in 1 2; do
		in_host 1 env -i PATH="$PATH" CNI_COMMAND=ADD CNI_CONTAINERID="0123456789b-race-$s" \
			CNI_NETNS="/var/run/netns/$(cnt_ns "race$s")" CNI_IFNAME=eth0 CNI_PATH="$CNI_BIN" \
			"$CNI_BIN/calico" <"$WORK/net.d/1/calico-net-1.conf" >"$WORK/race$s.out" 2>&1 &
		pids+=($!)
	done
	for s in 1 2; do
		wait "${pids[$((s - 1))]}" || fail "round $round: ADD of race$s failed: $(cat "$WORK/race$s.out")"
	done
	must_be_wired race1
	must_be_wired race2
	[ "$(host_if race1)" != "$(host_if race2)" ] || fail "round $round: both races got $(host_if race1)"
	wait_for "a2 -> race1" 10 cnt_ping a2 "$(cnt_ip race1)"
	wait_for "a2 -> race2" 10 cnt_ping a2 "$(cnt_ip race2)"
	n=$(ip -n "$(host_ns 1)" -o link show | grep -c 'alias tabby:0123456789b-race-' || true)
	[ "$n" = 2 ] || fail "round $round: $n host ends of the two containers: $(ip -n "$(host_ns 1)" -o link show | grep 0123456789b)"
	for s in 1 2; do
		cni_plugin 1 DEL "0123456789b-race-$s" "/var/run/netns/$(cnt_ns "race$s")" eth0 \
			"$WORK/net.d/1/calico-net-1.conf" || fail "DEL of race$s: $(cat "$WORK/out")"
	done
done
log "ok: two ADDs at once under the same expected name, five times: both wired, nothing left over"
# The entry is usually applied before the preparation is over: the worker that made the pair then
# adds the addresses at once instead of handing back to the agent's loop (agent/routes_cni.c,
# hand_over()), and the ADD's line says so. ADD and DEL one container until an ADD went that way;
# every one must be wired completely, and reach a container on another host.
cnt_new hand
handed=""
for try in $(seq 1 30); do
	n=$(grep -c "cni: ADD .*and addressed right after" "$WORK/agent1.log" || true)
	cnt_add 1 hand calico-net-1
	must_be_wired hand
	wait_for "hand -> a2 (ADD $try)" 10 cnt_ping hand "$(cnt_ip a2)"
	if [ "$(grep -c "cni: ADD .*and addressed right after" "$WORK/agent1.log" || true)" -gt "$n" ]; then
		handed=$try
	fi
	cnt_del 1 hand calico-net-1
	[ -z "$handed" ] || break
done
[ -n "$handed" ] || fail "in 30 ADDs the preparing worker never added the addresses itself: $(grep 'cni: ADD' "$WORK/agent1.log" | tail -3)"
log "ok: ADD $handed of one container was finished by the worker that prepared its interfaces"
for i in 1 2 3; do net_conf "$i" calico-net-2 '{"cniVersion": "0.4.0"}'; done
cnt_new dual
cnt_new n2
cnt_add 1 dual calico-net-1 eth0
cnt_add 1 dual calico-net-2 eth1
cnt_add 2 n2 calico-net-2
[ -n "$(cnt_ip dual eth1)" ] || fail "dual has no address on eth1"
[ "$(host_if dual eth0)" != "$(host_if dual eth1)" ] || fail "eth0 and eth1 share a host-side name"
ip -n "$(host_ns 1)" -4 route show "$(cnt_ip dual eth1)/32" | matches "dev $(host_if dual eth1)" ||
	fail "no host route for dual's eth1 address"
wait_for "a2 -> dual's eth0 (calico-net-1)" 10 cnt_ping a2 "$(cnt_ip dual eth0)"
wait_for "n2 -> dual's eth1 (calico-net-2)" 10 cnt_ping n2 "$(cnt_ip dual eth1)"
log "ok: one container on two networks: $(host_if dual eth0) and $(host_if dual eth1)"
# CNI allows periods in container IDs (Marathon task IDs have them); Linux allows them in names.
cnt_new dotted
CNT_HOST[dotted]=1
rc=0
cni_plugin 1 ADD "web.task.1" "/var/run/netns/$(cnt_ns dotted)" eth0 "$WORK/net.d/1/calico-net-1.conf" || rc=$?
[ $rc = 0 ] || fail "ADD of container web.task.1 failed: $(cat "$WORK/out" "$WORK/err")"
must_be_wired dotted
wait_for "a2 -> web.task.1" 10 cnt_ping a2 "$(cnt_ip dotted)"
log "ok: a container ID with periods: $(host_if dotted)"

# --- A failed wiring leaves nothing behind ---------------------------------------------------------
# A container whose eth0 is something Tabby must not replace (here a bridge): the ADD fails with a
# CNI error, and the address, the endpoint and the host end it had are all gone again.
cnt_new foreign
CNT_HOST[foreign]=1
ip -n "$(cnt_ns foreign)" link add eth0 type bridge
before=$(in_use 1)
rc=0
cni_plugin 1 ADD "foreign-eth0" "/var/run/netns/$(cnt_ns foreign)" eth0 "$WORK/net.d/1/calico-net-1.conf" || rc=$?
cni_error "$rc" 101 "bridge"
catch_up
[ "$(in_use 1)" = "$before" ] || fail "a failed wiring left an address allocated ($before -> $(in_use 1))"
endpoints 1 | matches '^foreign-eth0/' && fail "a failed wiring left its endpoint"
ip -n "$(host_ns 1)" -o link show | matches 'alias tabby:foreign-eth0/' && fail "a failed wiring left its host end"
ip -n "$(cnt_ns foreign)" link show eth0 | matches . || fail "the container's own eth0 was removed"
log "ok: a failed wiring is undone (address, endpoint, host end), the container's bridge untouched"

# --- DEL answers once the interface is gone; the same container's next ADD survives the rest -------
# The agent answers a DEL when the kernel announces the host end's removal, about 20 ms before the
# delete returns (agent/linkwatch.c). A runtime that ADDs the same container at once (a retry)
# gets new interfaces with the same names and alias while the old removal still waits in the
# kernel, and that removal must leave them alone. cni_exec runs the plugin as Mesos does: 50
# cycles of DEL then ADD back to back, then a last ADD.
CNI_EXEC=$(dirname "$TABBY")/bench/cni_exec
[ -x "$CNI_EXEC" ] || fail "no $CNI_EXEC (ninja -C build builds it)"
cnt_new again
CNT_HOST[again]=1
again_ns=/var/run/netns/$(cnt_ns again)
in_host 1 "$CNI_EXEC" "$CNI_BIN" "$WORK/net.d/1/calico-net-1.conf" "$WORK/again-cycles" 50 "$again_ns" 2>/dev/null
in_host 1 "$CNI_EXEC" "$CNI_BIN" "$WORK/net.d/1/calico-net-1.conf" "$WORK/again-add" 0 "$again_ns" 2>/dev/null
for r in again-cycles again-add; do
	[ "$(cat "$WORK/$r.errs")" = 0 ] || fail "$r: calls failed: $(head -c 800 "$WORK/$r.err")"
done
sleep 0.2 # the last removal's wait in the kernel is over
must_be_wired again
[ "$(ip -n "$(host_ns 1)" -o link show | grep -c "alias tabby:$(cnt_ns again)/eth0")" = 1 ] ||
	fail "not exactly one host end for the container: $(ip -n "$(host_ns 1)" -o link show | grep "$(cnt_ns again)")"
log "ok: 50 DEL/ADD cycles back to back on one container; the last ADD's interfaces are whole"

# --- A restarted agent removes its stale interfaces, and nothing else ------------------------------
# A host end whose container was deleted while the agent was down (the DEL never came): made by
# hand with Tabby's alias; and a veth without the alias that must stay.
ip -n "$(host_ns 1)" link add caliGhost0 type veth peer name ghostpeer
ip -n "$(host_ns 1)" link set caliGhost0 alias "tabby:ghost-container/eth0"
ip -n "$(host_ns 1)" link add caliForeign0 type veth peer name foreignpeer
stop_agent 1
start_agent 1
wait_for "agent1's stale interface sweep" 20 bash -c "! ip -n $(host_ns 1) link show caliGhost0 >/dev/null 2>&1"
ip -n "$(host_ns 1)" link show caliForeign0 >/dev/null 2>&1 || fail "the sweep removed a veth that is not Tabby's"
must_be_wired dotted
log "ok: after a restart the stale host end is gone; a foreign veth and live containers stay"

wait_for "hashes to agree" 10 hash_agrees 1
pass
