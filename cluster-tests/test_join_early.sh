#!/usr/bin/env bash
# A member that joins the moment the first member's join-token file appears gets in at once.
#
# The first member used to write the file as soon as it listened, while the record that holds the
# token was committed only at its first reconcile after its election: up to a second later. A
# joiner inside that window was refused as if its token were wrong, and gave up (the benchmarks'
# clusters failed to form about one time in eight). Now the file appears only once the record is
# applied. Three rounds, each joining the instant the file exists: every join must succeed on
# its first attempt, neither refused nor told to retry. (Against the old agent about one run in
# three failed: the window is not always hit.)
source "$(dirname "$0")/lib.sh"
hosts_up 2
for round in 1 2 3; do
	start_agent 1 --bootstrap
	wait_for "the join token (round $round)" 10 test -s "$WORK/data1/join-token"
	start_agent 2 --join "$(host_ip 1):7791" --token "$(token)"
	wait_for "2 healthy members (round $round)" 30 members_healthy 1 2
	if grep -q "retrying\|refused the join" "$WORK/agent2.log"; then
		fail "round $round: the join did not go through at once: $(cat "$WORK/agent2.log")"
	fi
	log "ok: round $round joined on the first attempt"
	kill_agent 2
	kill_agent 1
	rm -rf "$WORK/data1" "$WORK/data2"
	: >"$WORK/agent1.log"
	: >"$WORK/agent2.log"
done
pass
