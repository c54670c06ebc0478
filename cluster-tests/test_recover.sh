#!/usr/bin/env bash
# Recovery from a lost quorum (docs/operations.md, "Losing quorum"). Four members: three voters
# and a standby. Two voters die at once, so no write commits. The third voter is restarted with
# --force-new-cluster and the id of the cluster it leaves: it becomes the only voter of a new
# cluster with every write it held (a key, a pool, an address), and takes new writes. Left in
# place at the next restart the flag does nothing. The standby, still in the old cluster, is
# refused until it joins again with its old name (its data moved aside); it then votes. The two
# lost voters come back on their old data: between them they still make a majority of the old
# configuration, but the recovered cluster refuses them and takes none of their writes. One of
# them joins again, the other is removed, and the three members agree on their state.
source "$(dirname "$0")/lib.sh"
hosts_up 4
export TABBY_REPLACE_VOTER_AFTER=0 # nobody's vote moves but for the recovery
bootstrap_cluster 4

role_of() {
	status_json "$1" | python3 -c '
import json, sys
print({m["name"]: m["role"] for m in json.load(sys.stdin)["members"]}.get(sys.argv[1], ""))' "$2"
}
cluster_of() { status_json "$1" | json 'd["cluster"]'; }
node_cluster() { json 'd.get("cluster", "none")' <"$WORK/data$1/node.json"; }

S=""
VOTERS=()
for i in 1 2 3 4; do
	case $(role_of 1 "agent$i") in
	standby) S=$i ;;
	voter) VOTERS+=("$i") ;;
	esac
done
[ -n "$S" ] && [ "${#VOTERS[@]}" = 3 ] || fail "expected 3 voters and a standby: $(status_json 1)"
R=${VOTERS[0]} L1=${VOTERS[1]} L2=${VOTERS[2]}
log "survivor agent$R, lost agent$L1 and agent$L2, standby agent$S"

tctl "$R" store put before yes >/dev/null || fail "put before"
tctl "$R" pool add 10.77.0.0/16 >/dev/null || fail "pool add"
IP=$(tctl "$R" ipam assign --node "agent$R" --handle survives --pool 10.77.0.0/16) || fail "ipam assign"
OLD=$(cluster_of "$R")
[ "$OLD" = "$(node_cluster "$R")" ] || fail "status and node.json disagree on the cluster id"
wait_for "agent$S to apply the writes" 10 bash -c "\"$TABBY\" store get before --socket $(sock "$S") | grep -q yes"

# Two voters lost at once: no majority, no write.
kill_agent "$L1"
kill_agent "$L2"
if tctl "$R" store put during yes --timeout 3 >/dev/null 2>&1; then fail "a write committed without a quorum"; fi
# The status still answers, with the id to leave and how far the survivor got.
[ "$(cluster_of "$R")" = "$OLD" ] || fail "no status without a quorum"
status_json "$R" | json '[m for m in d["members"] if m["name"] == "agent'"$R"'"][0]["applied_revision"]' | grep -q '^[0-9]' ||
	fail "no applied revision without a quorum: $(status_json "$R")"

# Bad uses of the flag are named, and change nothing.
stop_agent "$R"
if "$TABBY" agent --force-new-cluster xyz --data-dir "$WORK/data$R" >"$WORK/bad.out" 2>&1; then fail "took a bad cluster id"; fi
grep -q "^tabby agent: --force-new-cluster: 'xyz' is not a cluster id" "$WORK/bad.out" || fail "bad id: $(cat "$WORK/bad.out")"
if "$TABBY" agent --force-new-cluster "$OLD" --bootstrap --data-dir "$WORK/data$R" >"$WORK/bad.out" 2>&1; then fail "took --bootstrap"; fi
grep -q "excludes --bootstrap" "$WORK/bad.out" || fail "with --bootstrap: $(cat "$WORK/bad.out")"
OTHER=$(printf '%032x' 7)
if ip netns exec "$(host_ns "$R")" timeout 20 "$TABBY" agent --name "agent$R" --data-dir "$WORK/data$R" \
	--socket "$(sock "$R")" --force-new-cluster "$OTHER" >"$WORK/bad.out" 2>&1; then
	fail "recovered from a cluster it is not in"
fi
grep -q -- "--force-new-cluster $OTHER: this member is in cluster $OLD, not in $OTHER; nothing recovered" "$WORK/bad.out" ||
	fail "other cluster: $(cat "$WORK/bad.out")"
if "$TABBY" agent --force-new-cluster "$OLD" --data-dir "$WORK/empty" >"$WORK/bad.out" 2>&1; then fail "recovered an empty directory"; fi
grep -q "holds no cluster state, so there is nothing to recover" "$WORK/bad.out" || fail "empty: $(cat "$WORK/bad.out")"
[ "$(node_cluster "$R")" = "$OLD" ] || fail "a refused recovery changed node.json"

# The recovery.
start_agent "$R" --force-new-cluster "$OLD"
wait_for "agent$R to lead alone" 15 has_leader "$R"
NEW=$(cluster_of "$R")
[ -n "$NEW" ] && [ "$NEW" != "$OLD" ] || fail "the recovered cluster kept id $OLD"
[ "$(node_cluster "$R")" = "$NEW" ] || fail "node.json does not hold the new id"
grep -q "recovered from a lost quorum: member agent$R (id [0-9]*) is the only voter of the new cluster $NEW .* it left cluster $OLD" \
	"$WORK/agent$R.log" || fail "no recovery line in agent$R's log"
[ "$(role_of "$R" "agent$R")" = voter ] || fail "agent$R is not a voter"
tctl "$R" store get before | grep -q yes || fail "the recovered cluster lost a key"
tctl "$R" ipam show --ip "$IP" -o json | grep -q '"survives"' || fail "the recovered cluster lost $IP: $(tctl "$R" ipam show --ip "$IP" -o json)"
tctl "$R" store put after yes >/dev/null || fail "no write after the recovery"

# The flag left in place: nothing happens again.
stop_agent "$R"
start_agent "$R" --force-new-cluster "$OLD"
wait_for "agent$R to lead again" 15 has_leader "$R"
grep -q -- "--force-new-cluster $OLD: this member left that cluster at an earlier start and is in cluster $NEW; not recovering again" \
	"$WORK/agent$R.log" || fail "the repeated flag was not noted"
[ "$(cluster_of "$R")" = "$NEW" ] || fail "the repeated flag changed the cluster id"
tctl "$R" store get after | grep -q yes || fail "lost a write across the restart"

# The standby is still in the old cluster: it refuses the recovered leader, which adds it back
# as the member it has a record of.
wait_for "agent$S to refuse agent$R" 20 grep -q "refused a raft connection from server [0-9]* at $(host_ip "$R"):7790: it is in cluster $NEW" \
	"$WORK/agent$S.log"
status_json "$R" | json '[m.get("error", "") for m in d["members"] if m["name"] == "agent'"$S"'"][0]' |
	grep -q "this member is in cluster $OLD; the request came from cluster $NEW" ||
	fail "the status does not say agent$S is in the old cluster: $(status_json "$R")"
# It joins again: the same name and addresses, its old data moved aside.
stop_agent "$S"
mv "$WORK/data$S/raft" "$WORK/data$S/raft.old"
rm -rf "$WORK/data$S/state"
start_agent "$S" --join "$(host_ip "$R"):7791" --token "$(token)"
[ "$(node_cluster "$S")" = "$NEW" ] || fail "agent$S did not take the new cluster id"
wait_for "agent$S to vote in the recovered cluster" 60 bash -c "[ \"\$(\"$TABBY\" cluster status -o json --socket $(sock "$R") | python3 -c 'import json,sys; print({m[\"name\"]: (m[\"role\"], m[\"healthy\"]) for m in json.load(sys.stdin)[\"members\"]}.get(\"agent$S\"))')\" = \"('voter', True)\" ]"
wait_for "agent$S to hold the writes" 10 bash -c "\"$TABBY\" store get after --socket $(sock "$S") | grep -q yes"

# The lost voters come back on their old data and make a majority of the old configuration.
start_agent "$L1"
start_agent "$L2"
wait_for "the old cluster to elect a leader" 20 has_leader "$L1"
tctl "$L1" store put split old >/dev/null || fail "the old cluster's members took no write"
tctl "$R" store put after2 yes >/dev/null || fail "no write in the recovered cluster beside the old one"
sleep 1
for i in "$R" "$S"; do
	"$TABBY" store get split --socket "$(sock "$i")" | grep -q old && fail "agent$i took the old cluster's write"
done
"$TABBY" store get after2 --socket "$(sock "$L1")" | grep -q yes && fail "the old cluster took the recovered cluster's write"
refused_total=$(metric "$R" tabby_raft_refused_connections_total)
[ "${refused_total:-0}" != 0 ] || fail "agent$R counts no refused connections"
[ "$(leader_index "$R")" = "$R" ] || [ "$(leader_index "$R")" = "$S" ] || fail "the recovered cluster lost its leader: $(status_json "$R")"

# One lost voter joins again; the other is removed.
stop_agent "$L1"
stop_agent "$L2"
mv "$WORK/data$L1/raft" "$WORK/data$L1/raft.old"
rm -rf "$WORK/data$L1/state"
start_agent "$L1" --join "$(host_ip "$R"):7791" --token "$(token)"
tctl "$R" cluster remove "agent$L2" >/dev/null || fail "cluster remove agent$L2"
wait_for "3 healthy members" 60 members_healthy "$R" 3
for i in "$R" "$S" "$L1"; do [ "$(role_of "$R" "agent$i")" = voter ] || fail "agent$i is not a voter: $(status_json "$R")"; done
wait_for "equal state hashes" 20 hash_agrees "$R"
"$TABBY" store get split --socket "$(sock "$L1")" | grep -q old && fail "agent$L1 kept the old cluster's write"
tctl "$L1" ipam show --ip "$IP" -o json | grep -q '"survives"' || fail "agent$L1 does not see $IP"
pass
