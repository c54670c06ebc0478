#!/usr/bin/env bash
# A held removal does not block the removals after it. Three voters, all answering: removing X
# is allowed (the leader and Y are left). Y dies at once, before the leader takes X out of the
# configuration two seconds later: that would leave the leader and a dead Y, so X's removal is
# held. The operator then removes the dead Y, as the refusal of an unsafe removal advises. Y goes
# first although X comes before it in raft's configuration, and then X's removal is safe and
# goes too: the leader is left alone, and writes.
source "$(dirname "$0")/lib.sh"
hosts_up 3
bootstrap_cluster 3
L=$(leader_index 1)
X="" Y=""
# Agents joined in their order, so raft's configuration lists X before Y.
for i in 1 2 3; do ((i != L)) && { [ -z "$X" ] && X=$i || Y=$i; }; done
log "leader agent$L; removing agent$X, then agent$Y dies"
tctl "$L" cluster remove "agent$X" >/dev/null || fail "removing agent$X"
kill_agent "$Y"
wait_for "the leader to hold agent$X's removal" 20 grep -q "holding the removal of member id" "$WORK/agent$L.log"
agent_exited "$X" && fail "agent$X stopped while its removal was held"
tctl "$L" cluster remove "agent$Y" >/dev/null || fail "removing the dead agent$Y"
wait_for "agent$Y out of the configuration" 30 grep -q "removing member id [0-9]* ($(host_ip "$Y"):7790)" "$WORK/agent$L.log"
wait_for "agent$X out of the configuration" 30 grep -q "removing member id [0-9]* ($(host_ip "$X"):7790)" "$WORK/agent$L.log"
members_healthy "$L" 1 || fail "the leader is not left alone and healthy: $(status_json "$L")"
wait_for "the removed agent$X to stop by itself" 30 agent_exited "$X"
tctl "$L" store put after-removals yes >/dev/null || fail "no write on the leader left alone"
pass
