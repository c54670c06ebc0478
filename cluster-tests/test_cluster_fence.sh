#!/usr/bin/env bash
# A member left over from an old cluster must not take over a new cluster built on the same
# addresses. Three hosts form a cluster (its last term raised by a leader restart, and some
# writes). All stop; hosts 2 and 3 are wiped and build a new cluster, and the old member on host 1
# comes back with its longer log from a later term. Raft alone would let it win the next election
# (its log is more up to date) and overwrite the new cluster's log. Each cluster has its own id,
# carried by every raft connection and member-to-member request: the new members refuse the old
# one, say so in their logs and metrics, and keep their data through the election the test forces
# by killing the new leader. A member-to-member request naming another cluster gets a 403.
# Members whose node.json has no id (data from before ids) still form their cluster.
source "$(dirname "$0")/lib.sh"
# Snapshots every few entries, so that the old member restarts with its cluster's member list
# (a restarted member applies nothing past its snapshot until a leader tells it the commit).
export TABBY_SNAPSHOT_THRESHOLD=16 TABBY_SNAPSHOT_TRAILING=8
hosts_up 3
bootstrap_cluster 3

cluster_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("cluster",""))' "$WORK/data$1/node.json"; }
old_id=$(cluster_of 1)
[[ "$old_id" =~ ^[0-9a-f]{32}$ ]] || fail "node.json of agent1 has no cluster id: '$old_id'"
for i in 2 3; do
	[ "$(cluster_of "$i")" = "$old_id" ] || fail "agent$i's cluster id $(cluster_of "$i") is not agent1's $old_id"
done
tctl 1 cluster status | grep -q "^cluster:  $old_id\$" || fail "cluster status does not show the cluster id"

# A later term on the old cluster: restart its leader.
kill_agent 1
wait_for "a new leader in the old cluster" 20 has_leader 2
start_agent 1
wait_for "3 healthy members again" 30 members_healthy 2 3
for k in $(seq 1 30); do
	tctl 2 store put "old/$k" "old cluster" >/dev/null || fail "old cluster write $k"
done
has_key() { tctl "$1" store get "$2" -o json | grep -q '"key"'; }
wait_for "agent1 to have the old writes" 20 has_key 1 old/30
for i in 1 2 3; do stop_agent "$i"; done
log "old cluster $old_id stopped"

# A new cluster on hosts 2 and 3, on the same addresses.
rm -rf "$WORK/data2" "$WORK/data3"
start_agent 2 --bootstrap
wait_for "a leader in the new cluster" 15 has_leader 2
wait_for "the new join token" 10 test -s "$WORK/data2/join-token"
start_agent 3 --join "$(host_ip 2):7791" --token "$(tr -d '\n' <"$WORK/data2/join-token")"
wait_for "2 healthy members in the new cluster" 30 members_healthy 2 2
new_id=$(cluster_of 2)
[[ "$new_id" =~ ^[0-9a-f]{32}$ ]] && [ "$new_id" != "$old_id" ] || fail "new cluster id '$new_id' (old $old_id)"
[ "$(cluster_of 3)" = "$new_id" ] || fail "the joiner did not take the new cluster's id: $(cluster_of 3)"
tctl 2 store put new/key "new cluster" >/dev/null || fail "new cluster write"
wait_for "agent3 to have the new write" 10 has_key 3 new/key

# The old member returns, and the new leader goes away so that an election happens.
start_agent 1
wait_for "a new member to refuse the old one" 20 bash -c "grep -q 'refused a raft connection from server 1 at $(host_ip 1):7790: it is in cluster $old_id' $WORK/agent2.log $WORK/agent3.log"
L=$(leader_index 3)
[ -n "$L" ] || fail "no leader in the new cluster"
other=$((L == 2 ? 3 : 2))
log "killing the new cluster's leader agent$L; agent$other stays with the old agent1 knocking"
kill_agent "$L"
sleep 4
start_agent "$L"
wait_for "2 healthy members in the new cluster after the election" 30 members_healthy "$other" 2

for i in 2 3; do
	v=$(tctl "$i" store get new/key -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["value"])') ||
		fail "agent$i lost the new cluster's key"
	[ "$v" = "new cluster" ] || fail "agent$i has new/key = '$v'"
	n=$(tctl "$i" store get old/ --prefix -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
	[ "$n" = 0 ] || fail "agent$i holds $n of the old cluster's keys"
	[ "$(cluster_of "$i")" = "$new_id" ] || fail "agent$i's node.json changed cluster"
done
status_json 2 | python3 -c '
import json, sys
d = json.load(sys.stdin)
names = sorted(m["name"] for m in d["members"])
sys.exit(0 if names == ["agent2", "agent3"] and d["cluster"] == sys.argv[1] else 1)' "$new_id" ||
	fail "the new cluster's view changed: $(status_json 2)"
ip netns exec "$(host_ns 2)" curl -sf "http://$(host_ip 2):7791/metrics" |
	grep -Eq '^tabby_raft_refused_connections_total [1-9]' ||
	ip netns exec "$(host_ns 3)" curl -sf "http://$(host_ip 3):7791/metrics" |
	grep -Eq '^tabby_raft_refused_connections_total [1-9]' ||
	fail "no refused connection counted in the metrics"
has_leader 1 && fail "the old member found a leader: $(status_json 1)"
# Leaderless, the old member asks the others whether it was removed; their answer is another
# cluster's and settles nothing.
wait_for "the old member to see that its peers answer for another cluster" 30 \
	grep -q "whether this member was removed, but it is in cluster $new_id, not this member's $old_id" "$WORK/agent1.log"
agent_exited 1 && fail "the old member stopped: $(tail -n 1 "$WORK/agent1.log")"

# Member-to-member requests carry the cluster id too.
code() { ip netns exec "$(host_ns 1)" curl -s -o "$WORK/internal.out" -w '%{http_code}' "$@" "http://$(host_ip 2):7791/v1/internal/status"; }
c=$(code -H "Tabby-Cluster: $old_id")
[ "$c" = 403 ] && grep -q other_cluster "$WORK/internal.out" || fail "another cluster's internal request got $c: $(cat "$WORK/internal.out")"
c=$(code)
[ "$c" = 403 ] || fail "an internal request without a cluster id got $c"
c=$(code -H "Tabby-Cluster: $new_id")
[ "$c" = 200 ] || fail "this cluster's internal request got $c: $(cat "$WORK/internal.out")"
log "new cluster $new_id kept its data beside the old cluster's member"

# Data from before cluster ids: node.json without one. Such members speak raft's plain protocol
# with each other, keep their data and say what they lack.
for i in 1 2 3; do stop_agent "$i"; done
for i in 2 3; do
	python3 -c 'import json,sys; p=sys.argv[1]; d=json.load(open(p)); d.pop("cluster"); json.dump(d, open(p, "w"))' "$WORK/data$i/node.json"
	start_agent "$i"
done
wait_for "2 healthy members without a cluster id" 30 members_healthy 2 2
tctl 2 cluster status | grep -q "^cluster:  none" || fail "cluster status without an id: $(tctl 2 cluster status)"
grep -q "node.json has no cluster id (its data predates them)" "$WORK/agent3.log" || fail "agent3 did not say it has no cluster id"
tctl 2 store put new/after "without id" >/dev/null || fail "write without a cluster id"
wait_for "agent3 to have the write without an id" 10 has_key 3 new/after
has_key 3 new/key || fail "agent3 lost new/key after dropping the id"
pass
