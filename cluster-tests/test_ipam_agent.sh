#!/usr/bin/env bash
# IPAM through the agents' HTTP API on a real three-member cluster: the bootstrapping agent
# creates the default pools; an assignment made through one follower is seen through another
# member; release by handle and by address with its generation; malformed requests get a 400
# naming the field; an address outside every pool and a double assignment are refused; a pool in
# use is only removed with force; removing a member releases its addresses and affinities; the
# leak reconciler releases a CNI allocation whose network namespace is gone and nothing else;
# every replica ends with the same state hash. Last, a cluster bootstrapped with
# --no-default-pools has no pools, also after its first member restarts without the flag.
source "$(dirname "$0")/lib.sh"
# Address counts here are exact: no route dataplane, which would assign tunnel addresses for
# the IP-in-IP and VXLAN pools these tests make (test_cni_net.sh covers that).
export TABBY_NO_ROUTES=1

LIVE_NS="${PFX}live"
DEAD_NS="${PFX}dead"
trap 'ip netns del "$LIVE_NS" 2>/dev/null || true; cleanup' EXIT

hosts_up 3
start_agent 1 --bootstrap --leak-grace 2s
wait_for "a leader" 15 has_leader 1
wait_for "the join token" 10 test -s "$WORK/data1/join-token"
for i in 2 3; do
	start_agent "$i" --join "$(host_ip 1):7791" --token "$(token)" --leak-grace 2s
done
wait_for "3 healthy members" 30 members_healthy 1 3

api() { # api I METHOD PATH [BODY] -> prints "STATUS BODY"
	local i=$1 m=$2 p=$3
	shift 3
	curl -s -o "$WORK/body.$i" -w '%{http_code}' --unix-socket "$(sock "$i")" -X "$m" \
		${1:+-H 'Content-Type: application/json' --data-binary "$1"} "http://tabby$p"
	echo " $(cat "$WORK/body.$i")"
}
expect() { # expect I STATUS SUBSTRING -- METHOD PATH [BODY]; STATUS may be a glob (4??);
	# the answer's body is left in $OUT
	local i=$1 want=$2 sub=$3
	shift 4
	local got
	got=$(api "$i" "$@")
	# shellcheck disable=SC2053
	[[ "$got" == $want" "* ]] || fail "agent$i: $* -> $got (wanted $want)"
	[[ "$got" == *"$sub"* ]] || fail "agent$i: $* -> $got (wanted it to mention '$sub')"
	log "ok: agent$i $1 $2 -> ${got:0:140}"
	OUT=${got#* }
}
# jget EXPR: evaluate a Python expression over the JSON answer d (from $OUT).
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$OUT" "$1"; }
# assigned I IP: agent I's replica holds IP as assigned.
assigned() { [[ "$(api "$1" GET "/v1/ipam/ips/$2")" == *'"assigned":true'* ]]; }
not_assigned() { [[ "$(api "$1" GET "/v1/ipam/ips/$2")" == *'"assigned":false'* ]]; }

# Default pools, replicated to every member.
v6=0
[ -e /proc/sys/net/ipv6 ] && v6=1
pools_ok() {
	local body
	body=$(api "$1" GET /v1/ippools)
	[[ "$body" == 200* && "$body" == *'"cidr":"192.168.0.0/16","block_size":26,"ipip":"never","vxlan":"never","nat_outgoing":false,"disabled":false,"removing":false,"node_selector":"all()"'* ]] || return 1
	if ((v6)); then [[ "$body" == *'"cidr":"fd80:24e2:f998:72d6::/64","block_size":122'* ]]; fi
}
for i in 1 2 3; do wait_for "the default pools on agent$i" 15 pools_ok "$i"; done
log "ok: default pools on every member"
expect 3 200 '"pools":[{"cidr":"192.168.0.0/16"' -- GET "/v1/ippools?family=4"
[ "$(jget 'len(d["pools"])')" = 1 ] || fail "family=4 listed $OUT"
expect 3 400 "query parameter family: '5'" -- GET "/v1/ippools?family=5"
expect 1 200 '"problems":[]' -- GET /v1/ipam/check

# Two followers: assign through one, see it through the other.
L=$(leader_index 1)
F=() && for i in 1 2 3; do [ "$i" != "$L" ] && F+=("$i"); done
FA=${F[0]} FB=${F[1]}
log "leader agent$L, followers agent$FA and agent$FB"
expect "$FA" 200 '"ips":[{"ip":"192.168.' -- POST /v1/ipam/assign \
	'{"node": "agent1", "handle": "h1", "attrs": {"k": "v", "team": "blue"}, "num4": 2}'
[ "$(jget 'len(d["ips"])')" = 2 ] || fail "num4 2 gave $OUT"
IP1=$(jget 'd["ips"][0]["ip"]')
IP2=$(jget 'd["ips"][1]["ip"]')
wait_for "$IP1 on agent$FB" 10 assigned "$FB" "$IP1"
expect "$FB" 200 '"handle":"h1","node":"agent1","attrs":{"k":"v","team":"blue"}' -- GET "/v1/ipam/ips/$IP1"
[ "$(jget 'd["affinity"]')" = agent1 ] || fail "the block of $IP1 is not affine to agent1: $OUT"
expect "$FB" 200 "\"ip\":\"$IP2\"" -- GET /v1/ipam/handles/h1
expect "$FB" 200 '"used":2' -- GET /v1/ipam/blocks
expect "$FB" 200 '"cidr":"192.168.0.0/16","total":"65536","in_use":2,"blocks":1' -- GET /v1/ipam/usage

# Release by handle through the other follower.
expect "$FB" 200 "\"released\":[{\"ip\":\"$IP1\"" -- POST /v1/ipam/release '{"handle": "h1"}'
[ "$(jget 'len(d["released"])')" = 2 ] || fail "release by handle: $OUT"
wait_for "$IP1 released on agent$FA" 10 not_assigned "$FA" "$IP1"
expect "$FA" 404 "not_found" -- GET /v1/ipam/handles/h1

# Explicit addresses; a second assignment of one is refused; release with a generation.
expect "$FA" 200 '"ip":"192.168.200.7"' -- POST /v1/ipam/assign '{"handle": "x1", "ips": ["192.168.200.7"]}'
GEN=$(jget 'd["ips"][0]["gen"]')
expect "$FA" 409 '"code":"in_use"' -- POST /v1/ipam/assign '{"handle": "x2", "ips": ["192.168.200.7"]}'
expect "$FA" 409 '"code":"conflict"' -- POST /v1/ipam/release "{\"ips\": [{\"ip\": \"192.168.200.7\", \"gen\": $((GEN + 1))}]}"
assigned "$FA" 192.168.200.7 || fail "a release with a stale generation freed the address"
expect "$FA" 200 '"released":[{"ip":"192.168.200.7"' -- POST /v1/ipam/release "{\"ips\": [{\"ip\": \"192.168.200.7\", \"gen\": $GEN}]}"
expect "$FA" 404 "192.168.200.7" -- POST /v1/ipam/release '{"ips": ["192.168.200.7"]}'

# Malformed requests: the field path and the value are named, nothing changes.
expect 1 400 'pools[1].cidr: ' -- POST /v1/ippools '{"pools": [{"cidr": "10.50.0.0/16"}, {"cidr": "10.0.0.0/33"}]}'
[[ "$OUT" == *'10.0.0.0/33'* ]] || fail "the bad CIDR is not named: $OUT"
expect 1 400 "pools[0].cidr: " -- POST /v1/ippools '{"pools": [{"cidr": "10.50.0.1/16"}]}'
expect 1 400 "pools[0]: unknown field 'ipipp'" -- POST /v1/ippools '{"pools": [{"cidr": "10.50.0.0/16", "ipipp": "always"}]}'
expect 1 400 'pools[0].ipip: \"sometimes\" is not never, always or cross-subnet' -- POST /v1/ippools '{"pools": [{"cidr": "10.50.0.0/16", "ipip": "sometimes"}]}'
expect 1 400 "body: unknown field 'pool'" -- POST /v1/ippools '{"pool": []}'
expect 1 400 '"code":"invalid"' -- POST /v1/ippools '{"pools": '
expect 1 400 'ips[1]: \"10.0.0.300\" is not an IP address' -- POST /v1/ipam/assign '{"handle": "x", "ips": ["192.168.0.9", "10.0.0.300"]}'
expect 1 400 "body: unknown field 'num_4'" -- POST /v1/ipam/assign '{"handle": "x", "num_4": 1}'
expect 1 400 'attrs.k: must be a string' -- POST /v1/ipam/assign '{"handle": "x", "num4": 1, "attrs": {"k": 1}}'
expect 1 400 'ips[0].gen: must be an integer' -- POST /v1/ipam/release '{"ips": [{"ip": "192.168.0.9", "gen": "x"}]}'
expect 1 400 'strict_affinity: must be true or false' -- PUT /v1/ipam/config '{"strict_affinity": "yes"}'
expect 1 400 '\"10.0.0.300\" is not an IP address' -- GET /v1/ipam/ips/10.0.0.300
expect 1 405 'DELETE is not allowed on /v1/ippools (GET, POST)' -- DELETE /v1/ippools
expect 1 404 'no such path' -- GET /v1/ipam/nothing
expect 1 200 '"pools":[' -- GET /v1/ippools
[[ "$OUT" != *10.50.0.0* ]] || fail "a refused request added a pool: $OUT"
# An address outside every pool.
expect "$FA" '4??' '172.31.0.5' -- POST /v1/ipam/assign '{"handle": "x", "ips": ["172.31.0.5"]}'
not_assigned "$FA" 172.31.0.5 || fail "172.31.0.5 was assigned"

# Configuration.
expect "$FB" 200 '"strict_affinity":true' -- PUT /v1/ipam/config '{"strict_affinity": true}'
wait_for "strict affinity on agent$FA" 10 bash -c "curl -s --unix-socket '$(sock "$FA")' http://tabby/v1/ipam/config | grep -q '\"strict_affinity\":true'"
expect "$FB" 200 '"strict_affinity":false' -- PUT /v1/ipam/config '{"strict_affinity": false}'

# A pool in use is removed only with force, and then goes with its last address.
expect "$FA" 200 '"cidr":"10.50.0.0/16","block_size":28,"ipip":"cross-subnet","vxlan":"never","nat_outgoing":true' -- \
	POST /v1/ippools '{"pools": [{"cidr": "10.50.0.0/16", "block_size": 28, "ipip": "cross-subnet", "nat_outgoing": true}]}'
expect "$FA" 200 '"ips":[{"ip":"10.50.' -- POST /v1/ipam/assign '{"node": "agent2", "handle": "p1", "num4": 3, "pools": ["10.50.0.0/16"]}'
expect "$FB" 409 '"code":"in_use"' -- POST /v1/ippools/remove '{"cidrs": ["10.50.0.0/16"]}'
[[ "$OUT" == *"3 addresses"* ]] || fail "the refusal does not give the count of addresses in use: $OUT"
expect "$FB" 200 '"removing":["10.50.0.0/16"]' -- POST /v1/ippools/remove '{"cidrs": ["10.50.0.0/16"], "force": true}'
expect "$FB" 200 '"cidr":"10.50.0.0/16","block_size":28,"ipip":"cross-subnet","vxlan":"never","nat_outgoing":true,"disabled":true,"removing":true' -- GET /v1/ippools
expect "$FB" 409 '' -- POST /v1/ipam/assign '{"node": "agent2", "handle": "p2", "num4": 1, "pools": ["10.50.0.0/16"]}'
expect "$FB" 200 '"released":[' -- POST /v1/ipam/release '{"handle": "p1"}'
expect "$FB" 200 '' -- GET /v1/ippools
[[ "$OUT" != *10.50.0.0* ]] || fail "the removing pool stayed after its last address went: $OUT"
expect "$FB" 200 '"pools":[{"cidr":"10.60.0.0/16"' -- POST /v1/ippools '{"pools": [{"cidr": "10.60.0.0/16", "disabled": true}]}'
expect "$FB" 200 '"removed":["10.60.0.0/16"],"removing":[]' -- POST /v1/ippools/remove '{"cidrs": ["10.60.0.0/16"]}'
expect "$FB" 404 '10.60.0.0/16' -- POST /v1/ippools/remove '{"cidrs": ["10.60.0.0/16"]}'

# Addresses of a node that is not a member are reported by check.
expect 1 200 '"ips":[' -- POST /v1/ipam/assign '{"node": "ghost", "handle": "g1", "num4": 1}'
expect 1 200 'is assigned to node ghost, which is not a cluster member' -- GET /v1/ipam/check
expect 1 200 '' -- POST /v1/ipam/release '{"handle": "g1"}'

# Removing a member releases its addresses and its block affinities.
expect 3 200 '"ips":[' -- POST /v1/ipam/assign '{"handle": "n3a", "num4": 3}'
N3IP=$(jget 'd["ips"][0]["ip"]')
expect 3 200 '"node":"agent3"' -- GET "/v1/ipam/ips/$N3IP"
# A CNI allocation (it names a container) whose namespace exists: without the netns attribute
# agent3's leak reconciler (grace 2s) would release it before the removal on a slow machine.
expect 3 200 '' -- POST /v1/ipam/assign '{"handle": "n3b", "num4": 1, "attrs": {"container": "c3", "netns": "/proc/1/ns/net"}}'
wait_for "agent3's addresses on agent1" 10 assigned 1 "$N3IP"
expect 1 200 '"removed":"agent3","released":4' -- DELETE /v1/cluster/members/agent3
not_assigned 1 "$N3IP" || fail "$N3IP still assigned after its node was removed"
expect 1 200 '"blocks":' -- GET /v1/ipam/blocks
[[ "$OUT" != *'"affinity":"agent3"'* ]] || fail "a block is still affine to agent3: $OUT"
expect 1 404 "no member named 'agent3'" -- DELETE /v1/cluster/members/agent3
wait_for "2 healthy members" 30 members_healthy 1 2
wait_for "the removed agent3 to stop" 20 agent_exited 3

# The leak reconciler (grace 2s) on agent2: a CNI allocation whose namespace exists stays, one
# whose namespace does not exist is released, one without a container attribute is never touched.
ip netns add "$LIVE_NS"
expect 2 200 '' -- POST /v1/ipam/assign "{\"handle\": \"cni.live\", \"num4\": 1, \"attrs\": {\"container\": \"live\", \"netns\": \"/var/run/netns/$LIVE_NS\"}}"
LIVE_IP=$(jget 'd["ips"][0]["ip"]')
expect 2 200 '' -- POST /v1/ipam/assign "{\"handle\": \"cni.dead\", \"num4\": 2, \"attrs\": {\"container\": \"dead\", \"netns\": \"/var/run/netns/$DEAD_NS\"}}"
DEAD_IP=$(jget 'd["ips"][1]["ip"]')
expect 2 200 '' -- POST /v1/ipam/assign '{"handle": "operator", "num4": 1, "attrs": {"netns": "/nonexistent"}}'
OP_IP=$(jget 'd["ips"][0]["ip"]')
expect 2 200 '' -- POST /v1/ipam/assign '{"node": "ghost2", "handle": "cni.other", "num4": 1, "attrs": {"container": "elsewhere", "netns": "/nonexistent"}}'
OTHER_IP=$(jget 'd["ips"][0]["ip"]')
# A CNI allocation that names no namespace (an IPAM plugin run without CNI_NETNS) cannot be
# judged: it stays, and the check says so.
expect 2 200 '' -- POST /v1/ipam/assign '{"handle": "cni.nons", "num4": 1, "attrs": {"container": "nons"}}'
NONS_IP=$(jget 'd["ips"][0]["ip"]')
wait_for "the dead handle to be released" 15 not_assigned 2 "$DEAD_IP"
expect 2 404 '' -- GET /v1/ipam/handles/cni.dead
sleep 3 # more than the grace period again: nothing else goes
assigned 2 "$LIVE_IP" || fail "the allocation of a live namespace was released"
assigned 2 "$OP_IP" || fail "an allocation without a container attribute was released"
assigned 2 "$OTHER_IP" || fail "agent2 released another node's allocation"
assigned 2 "$NONS_IP" || fail "an allocation that names no network namespace was released"
expect 2 200 'handle cni.nons on this host ('"$NONS_IP"') belongs to container nons, which has no network namespace recorded: never released automatically' -- GET /v1/ipam/check
expect 2 200 '' -- POST /v1/ipam/release '{"handle": "cni.nons"}'
grep -q "leak reconciler: released .* of handle cni.dead" "$WORK/agent2.log" || fail "no log line for the release"
curl -s --unix-socket "$(sock 2)" http://tabby/metrics | matches -x 'tabby_ipam_leaks_released_total 1' ||
	fail "metrics: $(curl -s --unix-socket "$(sock 2)" http://tabby/metrics | grep leaks)"
log "ok: the leak reconciler released only the dead handle"
# When the namespace goes, its handle follows.
ip netns del "$LIVE_NS"
wait_for "the live handle to be released once its namespace is gone" 15 not_assigned 2 "$LIVE_IP"
assigned 2 "$OTHER_IP" || fail "another node's allocation was released"

# Every replica applied the same commands to the same state.
# (A follower may answer before it applied the HASH entry: ask again.)
hashes_agree() {
	api 1 POST /v1/cluster/hash | python3 -c '
import json, sys
status, body = sys.stdin.read().split(" ", 1)
hs = [m.get("hash") for m in json.loads(body)["members"]]
sys.exit(0 if status == "200" and len(hs) == 2 and None not in hs and len(set(hs)) == 1 else 1)'
}
wait_for "equal state hashes on both members" 20 hashes_agree
log "ok: both members have the same state hash"

# --no-default-pools: none at bootstrap, and none after the first member restarts without it.
host_add 4
start_agent 4 --bootstrap --no-default-pools
wait_for "agent4 to initialise IPAM" 15 grep -q "IPAM initialised: without default pools" "$WORK/agent4.log"
expect 4 200 '{"pools":[],"items":[]}' -- GET /v1/ippools
kill_agent 4
start_agent 4
inits() { [ "$(grep -c 'IPAM initialised' "$WORK/agent4.log")" -ge "$1" ]; }
wait_for "agent4 to initialise IPAM again" 15 inits 2
expect 4 200 '{"pools":[],"items":[]}' -- GET /v1/ippools
pass
