#!/usr/bin/env bash
# A leader told to stop (SIGTERM) hands leadership to another voter before it exits: the moment
# its process is gone, the other members already follow a new leader and take writes. Without
# the handover they would still follow the dead leader until an election timeout passed without
# its heartbeats, and every write in the cluster would wait for that and for the election.
# A stopped follower stops at once. The old leader comes back as a follower and converges.
source "$(dirname "$0")/lib.sh"
hosts_up 3
bootstrap_cluster 3
for ((k = 0; k < 20; k++)); do tctl 1 store put "h/$k" before >/dev/null || fail "put h/$k"; done

for round in 1 2; do
	L=$(leader_index 1)
	[ -n "$L" ] || fail "no leader"
	log "round $round: stopping agent$L, the leader"
	stop_agent "$L"
	# Straight after its exit, before any election timeout could have passed: the others follow
	# a leader that is not the stopped one.
	for i in 1 2 3; do
		[ "$i" = "$L" ] && continue
		got=$(leader_index "$i")
		[ -n "$got" ] && [ "$got" != "$L" ] ||
			fail "round $round: agent$i follows '${got:+agent$got}' right after agent$L stopped: no handover"
	done
	grep -q "stopping: handing leadership to agent" "$WORK/agent$L.log" ||
		fail "agent$L did not say it handed over: $(tail -n 3 "$WORK/agent$L.log")"
	grep -q "leads now; stopping" "$WORK/agent$L.log" ||
		fail "agent$L did not see the handover through: $(tail -n 3 "$WORK/agent$L.log")"
	for i in 1 2 3; do
		[ "$i" = "$L" ] && continue
		timeout 10 "$TABBY" store put "h/r$round/$i" after --socket "$(sock "$i")" >/dev/null ||
			fail "round $round: a write through agent$i failed after the handover"
	done
	log "ok: round $round: the others had a new leader the moment agent$L exited"
	start_agent "$L"
	wait_for "agent$L back and 3 healthy members" 30 members_healthy "$L" 3
done

# A follower has nothing to hand over: it stops at once.
L=$(leader_index 1)
F=$((L % 3 + 1))
: >"$WORK/agent$F.log"
stop_agent "$F"
grep -q "stopping$" "$WORK/agent$F.log" || fail "follower agent$F: $(tail -n 3 "$WORK/agent$F.log")"
! grep -q "handing leadership" "$WORK/agent$F.log" || fail "follower agent$F tried to hand over leadership"
start_agent "$F"
wait_for "3 healthy members" 30 members_healthy 1 3
catch_up
wait_for "the members' hashes to agree" 20 hash_agrees 1
pass
