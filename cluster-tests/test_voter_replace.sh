#!/usr/bin/env bash
# A voter that goes away is replaced by a standby, so a cluster of four hosts survives two hosts
# lost one after the other, which three fixed voters would not (two of three gone is no
# majority). Then: the lost members come back as standbys and the roles stay put; a fifth member
# makes five voters; removing it goes back to three; with replacement off a silent voter keeps
# its vote; and a removal that would leave too few voters answering is refused.
source "$(dirname "$0")/lib.sh"
hosts_up 5
# Bad settings are named.
for bad in "--replace-voter-after 1x" "--replace-voter-after -3" "--replace-voter-after 1s"; do
	if "$TABBY" agent $bad --data-dir "$WORK/bad" >"$WORK/bad.out" 2>&1; then fail "agent took $bad"; fi
	grep -Eq "^tabby agent: --replace-voter-after: ('.*' is not 0, never or a duration|1000 ms is less than twice the election timeout \(2000 ms\))" "$WORK/bad.out" ||
		fail "agent $bad: $(cat "$WORK/bad.out")"
done
if TABBY_ELECTION_TIMEOUT=10 "$TABBY" agent --data-dir "$WORK/bad" >"$WORK/bad.out" 2>&1; then fail "agent took a 10 ms election timeout"; fi
grep -q "TABBY_ELECTION_TIMEOUT: '10' is not a number of milliseconds between 50 and 60000" "$WORK/bad.out" ||
	fail "TABBY_ELECTION_TIMEOUT=10: $(cat "$WORK/bad.out")"
[ ! -e "$WORK/bad" ] || fail "an agent with bad flags made its data directory"
export TABBY_REPLACE_VOTER_AFTER=3
bootstrap_cluster 4

# role_of I NAME: NAME's role as agent I sees it.
role_of() {
	status_json "$1" | python3 -c '
import json, sys
print({m["name"]: m["role"] for m in json.load(sys.stdin)["members"]}.get(sys.argv[1], ""))' "$2"
}
# roles_are I "agentA=role ...": agent I sees (at least) these roles, under a leader.
roles_are() {
	local i=$1 kv
	has_leader "$i" || return 1
	for kv in $2; do
		[ "$(role_of "$i" "${kv%=*}")" = "${kv#*=}" ] || return 1
	done
}

L=$(leader_index 1)
S=""
for i in 1 2 3 4; do [ "$(role_of 1 "agent$i")" = standby ] && S=$i; done
[ -n "$S" ] || fail "no standby among 4 members"
log "leader agent$L, standby agent$S"

# 1. The leader dies. A new leader is elected among the two voters left and, once the old leader
#    has been silent for 3 s, demotes the old leader and then promotes the standby.
kill_agent "$L"
for i in 1 2 3 4; do ((i != L && i != S)) && O=$i; done
wait_for "agent$S to vote in place of agent$L" 30 roles_are "$O" "agent$S=voter agent$L=standby"
grep -hq "agent$L (id [0-9]*) becomes standby: silent for [0-9]* s; agent$S (id [0-9]*), a standby that answers, votes in its place next" "$WORK"/agent*.log ||
	fail "no member logged why agent$L was demoted"
grep -hq "agent$S (id [0-9]*) becomes voter: the cluster has fewer voters than it wants" "$WORK"/agent*.log ||
	fail "no member logged why agent$S became a voter"

# 2. A second original voter dies: the two voters left (one of them the promoted standby) are
#    still a majority of three, so writes go on.
L2=$(leader_index "$O")
V=""
for i in 1 2 3 4; do ((i != L && i != S && i != L2)) && V=$i; done
[ -n "$V" ] || fail "no third voter"
log "now leader agent$L2; killing voter agent$V too"
kill_agent "$V"
ok=$(( L2 == S ? O : S ))
# The leader's metrics show the dead voter's silence.
silent_over() {
	curl -s --unix-socket "$(sock "$L2")" http://x/metrics |
		awk -v m="member=\"agent$1\"}" '$1 ~ /^tabby_raft_member_silent_seconds/ && index($1, m) { found = $2 > 1 } END { exit !found }'
}
wait_for "agent$L2's metrics to show agent$V silent" 10 silent_over "$V"
silent_over "$ok" && fail "agent$ok, which answers, shows as silent"
tctl "$L2" store put after-two-losses yes >/dev/null || fail "no write after losing two of four hosts"
wait_for "agent$ok to apply the write" 10 bash -c "\"$TABBY\" store get after-two-losses --socket $(sock "$ok") | grep -q yes"

# 3. Both come back: the old leader as a standby, the voter still a voter; nothing churns.
healthy_member() {
	status_json "$1" | python3 -c '
import json, sys
sys.exit(0 if any(m["name"] == sys.argv[1] and m["healthy"] for m in json.load(sys.stdin)["members"]) else 1)' "$2"
}
# The voter first: were the old leader back first, answering, it would replace the voter that
# is still away (as it should).
start_agent "$V"
wait_for "agent$V to answer" 30 healthy_member "$ok" "agent$V"
start_agent "$L"
wait_for "4 healthy members again" 30 members_healthy "$ok" 4
roles_are "$ok" "agent$L=standby agent$V=voter agent$S=voter" || fail "roles changed after the return: $(status_json "$ok")"
wait_for "equal state hashes on 4 members" 20 hash_agrees "$ok"

# 4. A fifth member: five voters. Removing it: three again.
start_agent 5 --join "$(host_ip "$ok"):7791" --token "$(token)"
wait_for "5 healthy members with 5 voters" 60 members_healthy "$ok" 5
tctl "$ok" cluster remove agent5 >/dev/null || fail "cluster remove agent5"
wait_for "4 healthy members with 3 voters after the removal" 30 members_healthy "$ok" 4
grep -hq "becomes standby: the cluster has more voters than it wants" "$WORK"/agent*.log ||
	fail "no member logged a demotion for the smaller cluster"

# 5. Switched off (0), a silent voter keeps its vote.
for i in 1 2 3 4; do stop_agent "$i"; done
# A restart with another address than the member was made with is refused, naming both.
if ip netns exec "$(host_ns 1)" timeout 20 "$TABBY" agent --name agent1 --data-dir "$WORK/data1" \
	--socket "$(sock 1)" --peer-address "$(host_ip 1):7790" --api-address "$(host_ip 1):7799" \
	>"$WORK/moved.log" 2>&1; then
	fail "agent1 restarted with another API address"
fi
grep -q -- "--api-address $(host_ip 1):7799 differs from this member's $(host_ip 1):7791, which $WORK/data1/node.json records" "$WORK/moved.log" ||
	fail "moved address: $(cat "$WORK/moved.log")"
export TABBY_REPLACE_VOTER_AFTER=0s
for i in 1 2 3 4; do start_agent "$i"; done
wait_for "4 healthy members after a restart" 30 members_healthy "$ok" 4
grep -q "voters are replaced only by hand" "$WORK/agent1.log" || fail "agent1 did not take 0s as never"
L3=$(leader_index "$ok")
for i in 1 2 3 4; do ((i != L3)) && [ "$(role_of "$ok" "agent$i")" = voter ] && V3=$i; done
kill_agent "$V3"
sleep 6
[ "$(role_of "$L3" "agent$V3")" = voter ] || fail "agent$V3 lost its vote with replacement switched off"

# 6. With a voter down and no standby that answers, removing a live voter would leave one of two
#    voters answering: refused, naming the silent one, also when asked through a follower (which
#    passes it on to the leader). Removing the silent voter goes through.
for i in 1 2 3 4; do ((i != L3 && i != V3)) && [ "$(role_of "$L3" "agent$i")" = standby ] && S3=$i; done
for i in 1 2 3 4; do ((i != L3 && i != V3 && i != S3)) && X=$i; done
kill_agent "$S3"
sleep 4 # the standby silent past the 3 s after which it no longer counts as answering
for via in "$L3" "$X"; do
	if tctl "$via" cluster remove "agent$X" >"$WORK/rm.out" 2>&1; then fail "removing agent$X through agent$via was not refused"; fi
	matches "removing agent$X would leave 1 of 2 voters answering the leader, not a majority" <"$WORK/rm.out" ||
		fail "removal through agent$via: $(cat "$WORK/rm.out")"
	matches "Bring back agent$V3 (silent for [0-9]* s), or remove it first" <"$WORK/rm.out" ||
		fail "the refusal does not name agent$V3: $(cat "$WORK/rm.out")"
done
status_json "$L3" | matches "\"agent$X\"" || fail "agent$X was removed"
tctl "$X" cluster remove "agent$V3" >/dev/null || fail "removing the silent agent$V3 through agent$X"
tctl "$L3" cluster remove "agent$S3" >/dev/null || fail "removing the silent standby agent$S3"
wait_for "2 healthy members" 30 members_healthy "$L3" 2
tctl "$X" store put after-removals yes >/dev/null || fail "no write after the removals"
pass
