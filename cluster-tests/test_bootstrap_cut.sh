#!/usr/bin/env bash
# A first member killed right after it started, before its first records (its member record and
# the join token) were committed, comes back without flags, writes them and publishes a token
# that a second member joins with, and without the default pools its --no-default-pools declined.
# And a first member whose token was committed but whose
# join-token file is gone publishes the same token again when it restarts.
#
# The window: the agent saves its identity (node.json) and listens before its first election,
# which takes up to an election timeout; the records follow the election. Killed inside it, the
# member used to restart as a cluster nobody could join (no token anywhere). The kill lands as
# soon as the agent listens, with an election timeout of a second. A round that missed the window
# is run again: the token file was there already, or the restart found the token's record (the
# kill came after its commit, before the file was written, which the second part below covers).
source "$(dirname "$0")/lib.sh"
hosts_up 2
hit=0
for round in 1 2 3 4 5; do
	rm -rf "$WORK/data1"
	: >"$WORK/agent1.log"
	# a long election timeout: the records come a second after the agent listens
	ELECTION_MS=1000 start_agent 1 --bootstrap --no-default-pools
	kill_agent 1
	[ -s "$WORK/data1/node.json" ] || fail "the agent listened before it saved node.json"
	if [ -e "$WORK/data1/join-token" ]; then
		log "round $round: the records were in before the kill; again"
		continue
	fi
	start_agent 1
	wait_for "the join token after the restart" 15 test -s "$WORK/data1/join-token"
	if grep -q "bootstrap was cut short" "$WORK/agent1.log"; then
		hit=1
		break
	fi
	log "round $round: the token's record was committed before the kill, only its file missing; again"
	kill_agent 1
done
[ "$hit" = 1 ] || fail "five rounds never killed the first member inside the window: $(cat "$WORK/agent1.log")"
log "killed the first member before its records were written; restarted, it wrote them"
wait_for "IPAM to be initialised" 15 grep -q "IPAM initialised" "$WORK/agent1.log"
grep -q "IPAM initialised: without default pools" "$WORK/agent1.log" ||
	fail "the repaired bootstrap made default pools: $(grep 'IPAM initialised' "$WORK/agent1.log")"
pools=$(curl -s --unix-socket "$(sock 1)" http://tabby/v1/ippools)
[ "$pools" = '{"pools":[],"items":[]}' ] || fail "pools after the repaired bootstrap: $pools"
log "ok: the repaired bootstrap kept --no-default-pools"
first=$(token)
kill_agent 1
rm -f "$WORK/data1/join-token"
start_agent 1
wait_for "the join token published again" 15 test -s "$WORK/data1/join-token"
[ "$(token)" = "$first" ] || fail "the token changed: $first, then $(token)"
log "ok: a missing join-token file is written again, with the same token"

start_agent 2 --join "$(host_ip 1):7791" --token "$(token)"
wait_for "2 healthy members" 30 members_healthy 1 2
log "ok: a second member joined with the token written after the restart"
pass
