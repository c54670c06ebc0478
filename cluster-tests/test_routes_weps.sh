#!/usr/bin/env bash
# The host's workload routes follow its workload endpoints as they change in the replicated state,
# whoever changes them (here `tabby apply` and `tabby delete`, not the CNI plugin, which wires its
# own routes): a new endpoint gets "ADDR dev IFACE scope link proto 116", a changed one moves its
# route, a removed one loses it and the conntrack entries of its address (calico-behaviour.md 5.5),
# and endpoints of other nodes get nothing here. Then the agent restarts with an endpoint in place
# and must neither drop its routes nor stop following changes.
#
# The agent keeps this host's endpoints decoded between recomputes and changes them by the watch's
# events (agent/netsync.c), so this checks that path: puts, changes, deletes, other nodes' keys,
# and a fresh load after a restart.
source "$(dirname "$0")/lib.sh"
hosts_up 1
bootstrap_cluster 1
command -v conntrack >/dev/null || fail "no conntrack tool (apt-get install conntrack)"
in_host() {
	local i=$1
	shift
	ip netns exec "$(host_ns "$i")" "$@"
}

in_host 1 ip link add tbyw0 type veth peer name tbyp0
in_host 1 ip link set tbyw0 up
in_host 1 ip link add tbyw1 type veth peer name tbyp1
in_host 1 ip link set tbyw1 up

# wep NODE WORKLOAD IFACE ADDR...: apply a workload endpoint through agent 1.
wep() {
	local node=$1 wl=$2 ifc=$3 nets
	shift 3
	nets=$(printf '%s/32, ' "$@")
	printf 'apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: %s, orchestrator: test, node: %s}\nspec: {interfaceName: %s, ipNetworks: [%s], profiles: [calico]}\n' \
		"$wl" "$node" "$ifc" "${nets%, }" | tctl 1 apply -f - >/dev/null || fail "apply $wl on $node"
}
# routed ADDR IFACE: host 1 has our scope-link route to ADDR through IFACE.
routed() { in_host 1 ip route show "$1/32" proto 116 | matches "dev $2 scope link"; }
unrouted() { [ -z "$(in_host 1 ip route show "$1/32" proto 116)" ]; }
routes() { in_host 1 ip route show proto 116; }

wep agent1 w1 tbyw0 10.66.0.1 10.66.0.2
wep agent1 w2 tbyw1 10.66.0.3
wait_for "routes for w1 and w2" 10 eval 'routed 10.66.0.1 tbyw0 && routed 10.66.0.2 tbyw0 && routed 10.66.0.3 tbyw1'
# Another node's endpoint on an interface this host happens to have: no route here.
wep elsewhere w3 tbyw1 10.66.0.4
catch_up
sleep 0.5
unrouted 10.66.0.4 || fail "a route for another node's endpoint: $(routes)"
log "ok: this host's endpoints are routed, another node's are not"

# Changed: w1 drops 10.66.0.2 and takes 10.66.0.5; w2 moves to the other interface.
ct_n() { in_host 1 conntrack -L -s "$1" 2>/dev/null | grep -c "src=" || true; }
in_host 1 conntrack -I -s 10.66.0.2 -d 10.99.9.9 -p udp --sport 4000 --dport 53 -t 300 >/dev/null 2>&1 ||
	fail "cannot insert a conntrack entry"
[ "$(ct_n 10.66.0.2)" = 1 ] || fail "the inserted conntrack entry is not there"
wep agent1 w1 tbyw0 10.66.0.1 10.66.0.5
wep agent1 w2 tbyw0 10.66.0.3
wait_for "w1 and w2 rerouted" 10 eval 'routed 10.66.0.5 tbyw0 && unrouted 10.66.0.2 && routed 10.66.0.3 tbyw0'
routed 10.66.0.1 tbyw0 || fail "w1's unchanged address lost its route: $(routes)"
wait_for "no conntrack entry of w1's old address" 10 eval '[ "$(ct_n 10.66.0.2)" = 0 ]'
log "ok: changed endpoints move their routes; the dropped address's conntrack entry is gone"

# Removed.
tctl 1 delete wep eth0 --node agent1 --orchestrator test --workload w2 >/dev/null || fail "delete w2"
wait_for "w2's route to go" 10 unrouted 10.66.0.3
routed 10.66.0.1 tbyw0 && routed 10.66.0.5 tbyw0 || fail "w1 lost its routes with w2: $(routes)"
log "ok: a removed endpoint loses its route, the others stay"

# Restart: the restarted agent loads the endpoints afresh, keeps w1's routes, and follows changes.
stop_agent 1
routed 10.66.0.1 tbyw0 || fail "w1's route went with the agent"
start_agent 1
wait_for "agent 1 back" 20 has_leader 1
sleep 1
routed 10.66.0.1 tbyw0 && routed 10.66.0.5 tbyw0 || fail "w1's routes after the restart: $(routes)"
wep agent1 w4 tbyw1 10.66.0.6
wait_for "w4's route after the restart" 10 routed 10.66.0.6 tbyw1
tctl 1 delete wep agent1/test/w1/eth0 >/dev/null || fail "delete w1"
wait_for "w1's routes to go after the restart" 10 eval 'unrouted 10.66.0.1 && unrouted 10.66.0.5'
log "ok: after a restart the routes stayed and changes still reach the kernel"
pass
