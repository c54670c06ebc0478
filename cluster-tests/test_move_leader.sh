#!/usr/bin/env bash
# `tabby cluster move-leader [NAME]` hands the lead to a voter: asked on any member (a follower
# passes it on to the leader), it answers once the named voter leads, and every member follows
# it. Without a name the leader picks a voter that answers. A standby, a member that does not
# exist and a voter that does not answer are refused with the reason, the lead unmoved; the
# leader itself "leads already". Writes go on throughout.
source "$(dirname "$0")/lib.sh"
# A killed voter below must stay one while the refusal is checked.
export TABBY_REPLACE_VOTER_AFTER=never
hosts_up 4
bootstrap_cluster 4

roles() { status_json 1 | json '" ".join(m["name"] + "=" + m["role"] for m in d["members"])'; }
role_of() { status_json 1 | json "[m['role'] for m in d['members'] if m['name'] == 'agent$1'][0]"; }
S=""
for i in 1 2 3 4; do [ "$(role_of "$i")" = standby ] && S=$i; done
[ -n "$S" ] || fail "no standby among 4 members: $(roles)"
L=$(leader_index 1)
[ -n "$L" ] || fail "no leader"
V=""
for i in 1 2 3 4; do [ "$i" != "$L" ] && [ "$i" != "$S" ] && V=$i && break; done
log "leader agent$L, standby agent$S, moving the lead to voter agent$V, asked on the standby"

# follows_all I: every member that runs follows agent I.
follows_all() {
	local i
	for i in 1 2 3 4; do
		agent_exited "$i" && continue
		[ "$(leader_index "$i")" = "$1" ] || return 1
	done
}

out=$(ok "$S" cluster move-leader "agent$V")
same "move-leader agent$V asked on the standby" "$out" "agent$V leads now (was agent$L)"
wait_for "every member to follow agent$V" 10 follows_all "$V"
ok "$S" store put moved/1 v >/dev/null

out=$(ok "$V" cluster move-leader "agent$V")
same "move-leader to the leader itself" "$out" "agent$V leads already"
out=$(ok "$V" cluster move-leader -o json)
N=$(json 'd["leader"]' <<<"$out")
N=${N#agent}
[ "$N" != "$V" ] && [ "$N" != "$S" ] || fail "move-leader without a name gave the lead to agent$N: $out"
[ "$(json 'd["previous"]' <<<"$out")" = "agent$V" ] || fail "previous leader: $out"
wait_for "every member to follow agent$N" 10 follows_all "$N"
log "ok: without a name the lead went to voter agent$N"

refused "$L" 1 "agent$S is a standby: only a voter can lead" cluster move-leader "agent$S"
refused "$L" 1 "no member is named 'nosuch'" cluster move-leader nosuch
refused "$L" 2 "takes at most one member name" cluster move-leader a b
[ "$(leader_index 1)" = "$N" ] || fail "a refused move changed the leader"

# A voter that does not answer cannot take the lead.
K=""
for i in 1 2 3 4; do [ "$i" != "$N" ] && [ "$i" != "$S" ] && K=$i && break; done
kill_agent "$K"
sleep 1 # past an election timeout (400 ms), after which the leader counts it silent
A=$S
refused "$A" 1 "agent$K has not answered the leader for" cluster move-leader "agent$K"
ok "$A" store put moved/2 v >/dev/null
[ "$(leader_index "$A")" = "$N" ] || fail "the refused move to a dead voter changed the leader"

start_agent "$K"
wait_for "4 healthy members" 30 members_healthy 1 4
catch_up
wait_for "the members' hashes to agree" 20 hash_agrees 1
pass
