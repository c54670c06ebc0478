#!/usr/bin/env bash
# Membership changes never cost the quorum (two cases a review reproduced against an earlier
# version, each of which left the cluster unable to write):
# 1. A standby that dies just after a voter is lost is not made a voter in its place: the silent
#    voter keeps its vote and the two voters left go on writing.
# 2. A removal checked when it was asked for but unsafe by the time it is carried out (here a
#    voter died in the two seconds between) is held, and the removed member keeps its vote until
#    the removal goes through; it goes once the dead voter is back.
source "$(dirname "$0")/lib.sh"
hosts_up 4
export TABBY_REPLACE_VOTER_AFTER=3
bootstrap_cluster 4

role_of() {
	status_json "$1" | python3 -c '
import json, sys
print({m["name"]: m["role"] for m in json.load(sys.stdin)["members"]}.get(sys.argv[1], ""))' "$2"
}
L=$(leader_index 1)
S="" C="" B=""
for i in 1 2 3 4; do [ "$(role_of "$L" "agent$i")" = standby ] && S=$i; done
for i in 1 2 3 4; do ((i != L && i != S)) && { [ -z "$C" ] && C=$i || B=$i; }; done
log "leader agent$L, voters agent$B and agent$C, standby agent$S"

# 1. Voter C dies; 1.5 s later, before C counts as lost, standby S dies too.
kill_agent "$C"
sleep 1.5
kill_agent "$S"
sleep 6
tctl "$L" store put after-two-deaths yes >/dev/null || fail "no write after a voter and the standby died"
[ "$(role_of "$L" "agent$C")" = voter ] || fail "agent$C lost its vote with no standby answering: $(status_json "$L")"
log "ok: a dead standby was not promoted; the voters left write"
start_agent "$C"
start_agent "$S"
wait_for "4 healthy members" 30 members_healthy "$L" 4
L=$(leader_index "$B")
for i in 1 2 3 4; do [ "$(role_of "$L" "agent$i")" = standby ] && S=$i; done
tctl "$L" cluster remove "agent$S" >/dev/null || fail "removing the standby agent$S"
wait_for "3 healthy members" 30 members_healthy "$L" 3
C="" B=""
for i in 1 2 3 4; do ((i != L && i != S)) && { [ -z "$C" ] && C=$i || B=$i; }; done

# 2. Three voters, all answering: removing B is allowed (A and C are left). C dies at once, before
#    the leader takes B out of the configuration two seconds later: that would leave A and a dead
#    C, so the leader holds the removal, and B keeps voting meanwhile.
tctl "$L" cluster remove "agent$B" >/dev/null || fail "removing agent$B"
kill_agent "$C"
wait_for "the leader to hold agent$B's removal" 20 grep -q "holding the removal of member id [0-9]*: 1 of the 2 voters left answer" "$WORK/agent$L.log"
sleep 12 # past the 10 s after which a removed member that is out of the configuration stops
agent_exited "$B" && fail "agent$B stopped while its removal was held: $(tail -n 3 "$WORK/agent$B.log")"
grep -q "it stays until the leader takes it out of the configuration" "$WORK/agent$B.log" ||
	fail "agent$B did not say why it stays"
tctl "$L" store put while-held yes >/dev/null || fail "no write while the removal is held"
log "ok: the removal is held and agent$B keeps its vote"
start_agent "$C"
wait_for "agent$B out of the configuration" 30 members_healthy "$L" 2
wait_for "the removed agent$B to stop by itself" 30 agent_exited "$B"
tctl "$C" store put after-removal yes >/dev/null || fail "no write after the removal"
pass
