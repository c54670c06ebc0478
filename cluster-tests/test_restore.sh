#!/usr/bin/env bash
# Restoring from a backup (docs/operations.md, "Restoring from a backup"). A three-member cluster
# with a key, a pool, a policy and a container is backed up; then a key is written and the policy
# deleted by mistake, and the whole cluster stops. Bad restores are refused with the reason and
# change nothing: with --bootstrap, onto a member's data, from a damaged file, as a member the
# backup does not have, onto another member's address. A replacement host (host 4, new
# addresses) restores as agent1: a new cluster with agent1 as its only voter at its new address,
# holding exactly the backup (the key written after it is gone, the policy is back, the container
# keeps its address), the backup's join token, and writes. Left in place, the flag does nothing
# at the next start. agent2 joins again in place, catches up by the restored snapshot and checks
# its container; agent3, gone for good, is removed and its address released; the members agree.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cni-lib.sh"
hosts_up 4
export TABBY_REPLACE_VOTER_AFTER=0
bootstrap_cluster 3
cni_setup

web_policy "$WORK/policy.yaml"
ok 1 apply -f "$WORK/policy.yaml" >/dev/null
ok 1 store put before kept >/dev/null
ok 1 pool add 10.77.0.0/16 >/dev/null
IP3=$(tctl 3 ipam assign --node agent3 --handle on-agent3 --pool 10.77.0.0/16) || fail "ipam assign"
cnt_new a
cnt_add 2 a calico-net-1
IP_A=$(cnt_ip a)
[ -n "$IP_A" ] || fail "container a has no address"
catch_up
OLD=$(status_json 1 | json 'd["cluster"]')
TOKEN=$(token)
ok 2 backup save "$WORK/backup" >/dev/null
"$TABBY" backup status "$WORK/backup" -o json >"$WORK/status.json" || fail "backup status"
B_REV=$(json 'd["revision"]' <"$WORK/status.json")
[ "$(json '" ".join("%s=%d" % (m["name"], m["id"]) for m in d["members"])' <"$WORK/status.json")" = "agent1=1 agent2=2 agent3=3" ] ||
	fail "backup status lists members $(json 'd["members"]' <"$WORK/status.json")"
"$TABBY" backup status "$WORK/backup" | grep -q "^  agent3  *id 3, peer $(host_ip 3):7790, api $(host_ip 3):7791$" ||
	fail "backup status (text) does not list agent3: $("$TABBY" backup status "$WORK/backup")"

# After the backup: a write, and a policy deleted by mistake. Then the cluster stops.
ok 1 store put after lost >/dev/null
ok 1 delete policy web-from-lb >/dev/null
for i in 1 2 3; do stop_agent "$i"; done
# The first member said once that it made the default pools.
[ "$(grep -c "IPAM initialised: made 2 default pools" "$WORK/agent1.log")" = 1 ] ||
	fail "agent1 did not log the default pools once: $(grep "IPAM initialised" "$WORK/agent1.log")"

refused_start() { # refused_start HOST SUBSTRING ARGS...: the agent exits non-zero, saying SUBSTRING
	local h=$1 sub=$2 rc=0
	shift 2
	ip netns exec "$(host_ns "$h")" timeout 20 "$TABBY" agent --socket "$WORK/refused.sock" "$@" \
		>"$WORK/refused.out" 2>&1 || rc=$?
	[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "agent $* exited $rc: $(cat "$WORK/refused.out")"
	grep -qF -- "$sub" "$WORK/refused.out" || fail "agent $*: '$(cat "$WORK/refused.out")' does not mention '$sub'"
	log "ok: refused: $(grep -F -- "$sub" "$WORK/refused.out" | head -1)"
}
NEW_ADDR=(--peer-address "$(host_ip 4):7790" --api-address "$(host_ip 4):7791")
refused_start 4 "--restore starts a new cluster from a backup and excludes --bootstrap" \
	--data-dir "$WORK/data4" --restore "$WORK/backup" --bootstrap
cp "$WORK/data1/node.json" "$WORK/node1.before"
refused_start 1 "already holds the state of member agent1 in cluster $OLD, and a restore starts a member from an empty data directory" \
	--name agent1 --data-dir "$WORK/data1" --restore "$WORK/backup"
cmp -s "$WORK/data1/node.json" "$WORK/node1.before" || fail "a refused restore changed agent1's node.json"
size=$(stat -c %s "$WORK/backup")
cp "$WORK/backup" "$WORK/damaged"
printf '\xff' | dd of="$WORK/damaged" bs=1 seek=$((size / 2)) conv=notrunc status=none
refused_start 4 "$WORK/damaged: its state fails its checksum: the file is damaged" \
	--name agent1 --data-dir "$WORK/data4" --restore "$WORK/damaged" "${NEW_ADDR[@]}"
refused_start 4 "the backup has no member named 'nobody'; its members are agent1, agent2, agent3" \
	--name nobody --data-dir "$WORK/data4" --restore "$WORK/backup" "${NEW_ADDR[@]}"
refused_start 4 "--peer-address $(host_ip 2):7790 is an address of member agent2 in the backup" \
	--name agent1 --data-dir "$WORK/data4" --restore "$WORK/backup" --peer-address "$(host_ip 2):7790"
[ ! -e "$WORK/data4/raft" ] || fail "a refused restore left raft state in $WORK/data4: $(ls "$WORK/data4/raft")"

# The restore, on a replacement host: agent1 at host 4's addresses.
start_agent 4 --name agent1 --restore "$WORK/backup"
wait_for "the restored member to lead" 15 has_leader 4
NEW=$(status_json 4 | json 'd["cluster"]')
[ -n "$NEW" ] && [ "$NEW" != "$OLD" ] || fail "the restored cluster has id '$NEW' (the backup's is $OLD)"
grep -q "restored from $WORK/backup: the state of cluster $OLD at revision $B_REV, taken on member agent2 at .* This member, agent1 (id 1), is the only voter of the new cluster $NEW, at revision $((B_REV + 1))" \
	"$WORK/agent4.log" || fail "no restore line in the log: $(grep -i restor "$WORK/agent4.log")"
grep -q "restore: member agent1 moves from peer-address $(host_ip 1):7790 to $(host_ip 4):7790" "$WORK/agent4.log" ||
	fail "the address change is not logged"
json 'd["restored_from"]["cluster"], d["restored_from"]["revision"], d["cluster"]' <"$WORK/data4/node.json" |
	grep -qx "$OLD $B_REV $NEW" || fail "node.json: $(cat "$WORK/data4/node.json")"
status_json 4 | json '[(m["role"], m["peer_address"], m["api_address"]) for m in d["members"] if m["name"] == "agent1"][0]' |
	grep -qF "('voter', '$(host_ip 4):7790', '$(host_ip 4):7791')" || fail "agent1's record: $(status_json 4)"
getv() { tctl "$1" store get "$2" -o json | json '" ".join(kv["value"] for kv in d)'; }
[ "$(getv 4 before)" = kept ] || fail "the restored cluster lost a key written before the backup"
[ -z "$(getv 4 after)" ] || fail "the restored cluster holds a key written after the backup"
tctl 4 get policy web-from-lb -o json >/dev/null || fail "the policy deleted after the backup is not back"
tctl 4 ipam show --ip "$IP_A" -o json | grep -q calico-net-1 || fail "container a's address $IP_A is gone: $(tctl 4 ipam show --ip "$IP_A" -o json)"
wait_for "the join token file" 10 test -s "$WORK/data4/join-token"
[ "$(tr -d '\n' <"$WORK/data4/join-token")" = "$TOKEN" ] || fail "the restored member publishes another join token"
ok 4 store put restored yes >/dev/null
log "ok: cluster $NEW restored from revision $B_REV of $OLD on host 4"

# The flag left in place does nothing at the next start.
stop_agent 4
start_agent 4 --name agent1 --restore "$WORK/backup"
wait_for "the restored member to lead again" 15 has_leader 4
grep -q -- "--restore $WORK/backup: this member was restored from that backup (cluster $OLD, revision $B_REV) at an earlier start and is in cluster $NEW; not restoring again" \
	"$WORK/agent4.log" || fail "the repeated flag was not noted"
[ "$(getv 4 restored)" = yes ] || fail "a write was lost across the restart"

# agent2 joins again in place (its data moved aside) and gets the state by snapshot; its
# container is wired as the state says.
mv "$WORK/data2/raft" "$WORK/data2/raft.old"
rm -rf "$WORK/data2/state"
start_agent 2 --join "$(host_ip 4):7791" --token "$TOKEN"
wait_for "agent2 to hold the restored state" 30 bash -c "\"$TABBY\" store get restored --socket $(sock 2) | grep -q yes"
[ "$(json 'd["cluster"]' <"$WORK/data2/node.json")" = "$NEW" ] || fail "agent2 did not take the new cluster id"
wait_for "container a to check out" 20 cnt_check 2 a calico-net-1
# agent3 is gone for good: removed, and its address released.
ok 4 cluster remove agent3 >/dev/null
if tctl 4 ipam show --ip "$IP3" -o json 2>/dev/null | grep -q on-agent3; then fail "agent3's address $IP3 was not released"; fi
wait_for "2 healthy members" 30 members_healthy 4 2
wait_for "equal state hashes" 20 hash_agrees 4
# The restored agent1 (id 1) asks for the default pools at each start, as every first member
# does; the state machine finds them settled since the backup's cluster began, and nothing is said.
! grep "IPAM initialised" "$WORK/agent4.log" || fail "the restored member says it initialised IPAM"
pass
