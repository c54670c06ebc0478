#!/usr/bin/env bash
# A fourth agent joins a cluster whose log has been compacted, catches up by snapshot install,
# becomes a standby with a full replica, and serves local reads of everything.
source "$(dirname "$0")/lib.sh"
compacted_cluster snap
start_agent 4 --join "$(host_ip 2):7791" --token "$(token)"
wait_for "4 healthy members" 30 members_healthy 1 4
restored=$(metric 4 tabby_raft_snapshots_restored_total)
log "snapshots restored by agent4: $restored"
[ "${restored:-0}" -ge 1 ] || fail "agent4 caught up without a snapshot install"
role=$(status_json 1 | python3 -c 'import json,sys; print([m["role"] for m in json.load(sys.stdin)["members"] if m["name"]=="agent4"][0])')
[ "$role" = standby ] || fail "agent4 should be a standby, is $role"
tctl 1 store put snap/after-join yes >/dev/null
wait_for "agent4 to see a write made after it joined" 10 bash -c "\"$TABBY\" store get snap/after-join --socket $(sock 4) | grep -q yes"
n=$(tctl 4 store get snap/ --prefix -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" -eq 301 ] || fail "agent4 holds $n of 301 keys"
wait_for "equal state hashes on 4 members" 20 hash_agrees 4

# Remove the bootstrapping member, which leads: it hands leadership over, the new leader takes it
# out of the configuration, and the standby becomes the third voter.
L=$(leader_index 2)
log "removing agent$L (the leader)"
tctl 2 cluster remove "agent$L" >/dev/null || fail "cluster remove agent$L"
kept=$((L % 4 + 1))
wait_for "3 healthy members with 3 voters after the removal" 30 members_healthy "$kept" 3
status_json "$kept" | matches "\"agent$L\"" && fail "agent$L is still listed"
tctl "$kept" store put snap/after-remove yes >/dev/null || fail "write after removing the leader"
wait_for "the removed agent$L to stop by itself" 20 agent_exited "$L"
pass
