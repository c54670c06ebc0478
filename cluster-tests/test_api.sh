#!/usr/bin/env bash
# The API and the CLI against a real two-member cluster: malformed and oversized requests get a
# 4xx naming what is wrong and the agent stays up; a join with the wrong token is refused; the
# socket is mode 0660; linearizable reads through a follower; a watch from a compacted revision
# gets "compacted"; /metrics and /healthz; transactions; `tabby cluster remove`.
source "$(dirname "$0")/lib.sh"
hosts_up 3
start_agent 1 --bootstrap --history 20
wait_for "a leader" 15 has_leader 1
wait_for "the join token" 10 test -s "$WORK/data1/join-token"
start_agent 2 --join "$(host_ip 1):7791" --token "$(token)" --history 20
wait_for "2 healthy members" 30 members_healthy 1 2

api() { # api I METHOD PATH [BODY] -> prints "STATUS BODY"
	local i=$1 m=$2 p=$3
	shift 3
	curl -s -o "$WORK/body" -w '%{http_code}' --unix-socket "$(sock "$i")" -X "$m" \
		${1:+-H 'Content-Type: application/json' --data-binary "$1"} "http://tabby$p"
	echo " $(cat "$WORK/body")"
}
expect() { # expect STATUS SUBSTRING -- METHOD PATH [BODY]
	local want=$1 sub=$2
	shift 3
	local got
	got=$(api 1 "$@")
	[[ "$got" == "$want "* ]] || fail "$* -> $got (wanted $want)"
	[[ "$got" == *"$sub"* ]] || fail "$* -> $got (wanted it to mention '$sub')"
	log "ok: $1 $2 -> ${got:0:110}"
}

mode=$(stat -c %a "$(sock 1)")
[ "$mode" = 660 ] || fail "socket mode is $mode, not 660"

expect 400 "line 1" -- PUT /v1/kv/a '{"value": '
expect 400 "unknown field 'valu'" -- PUT /v1/kv/a '{"valu": "x"}'
expect 400 'must be a string' -- PUT /v1/kv/a '{"value": 5}'
expect 400 "prefix" -- PUT /v1/kv/a?prefix=1 '{"value": "x"}'
expect 400 "not valid UTF-8" -- GET /v1/kv/%ff
# A malformed query parameter is refused, not read as absent (an exact-key delete, a
# serializable read, a watch from now).
expect 400 "query parameter 'prefix=1%' has a broken %-escape" -- DELETE "/v1/kv/pfx/?prefix=1%"
expect 400 "query parameter 'consistency=linearizable%00' has a broken %-escape or an encoded NUL" -- GET "/v1/kv/a?consistency=linearizable%00"
expect 400 "limit" -- GET "/v1/kv/a?limit=-1"
expect 400 "consistency" -- GET "/v1/kv/a?consistency=strong"
expect 400 "compare[0].result" -- POST /v1/txn '{"compare": [{"key": "a", "target": "version", "result": "~", "value": 1}]}'
expect 400 "unknown operation 'upsert'" -- POST /v1/txn '{"success": [{"upsert": {"key": "a"}}]}'
expect 404 "no such path" -- GET /v1/nothing
expect 405 "not allowed" -- POST /v1/kv/a '{"value": "x"}'
# A delete reference is checked before it costs a raft entry; a message that quotes a value cut
# inside a character still names the field.
expect 400 "resource #1: unknown kind: kind 'frob'" -- POST /v1/resources '{"op": "delete", "resources": [{"kind": "frob", "key": "x"}]}'
e100=$(printf '\303\251%.0s' {1..100})
expect 400 '?... is not a valid name' -- POST /v1/resources "{\"op\": \"create\", \"resources\": [{\"apiVersion\": \"v1\", \"kind\": \"profile\", \"metadata\": {\"name\": \"ab$e100\"}}]}"
big=$(head -c 5000000 /dev/zero | tr '\0' a)
printf '{"value": "%s"}' "$big" >"$WORK/big.json"
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$(sock 1)" -X PUT -H 'Content-Type: application/json' --data-binary @"$WORK/big.json" http://tabby/v1/kv/big)
[ "$code" = 413 ] || fail "a 5 MB body got $code, not 413"
log "ok: 5 MB body -> 413"
# A body at the limit, and a key near its own, through the follower: its forward to the leader
# carries more than the body did, and must fit the leader's forward limit.
[ "$(leader_index 2)" = 1 ] || fail "agent1 does not lead"
head -c $((4 * 1024 * 1024 - 13)) /dev/zero | tr '\0' b | { printf '{"value": "'; cat; printf '"}'; } >"$WORK/big.json"
[ "$(stat -c %s "$WORK/big.json")" = $((4 * 1024 * 1024)) ] || fail "the test body is not 4 MiB"
code=$(curl -s -o "$WORK/body" -w '%{http_code}' --unix-socket "$(sock 2)" -X PUT -H 'Content-Type: application/json' --data-binary @"$WORK/big.json" "http://tabby/v1/kv/$(printf 'k%.0s' {1..500})")
[ "$code" = 200 ] || fail "a 4 MiB body through the follower got $code: $(head -c 300 "$WORK/body")"
log "ok: a 4 MiB body with a 500-byte key through the follower -> 200"
# Resources grow when normalized (defaults filled in): a body under the limit whose command
# would not be is refused at once, on every member, naming it (through a follower the leader
# refused the forward as malformed).
python3 -c '
import json
sel = "a == \"" + "x" * 330 + "\""
rs = [{"apiVersion": "v1", "kind": "policy", "metadata": {"name": "p%05d" % i}, "spec": {"selector": sel}} for i in range(9400)]
print(json.dumps({"op": "apply", "resources": rs}, separators=(",", ":")))' >"$WORK/grow.json"
[ "$(stat -c %s "$WORK/grow.json")" -lt $((4 * 1024 * 1024)) ] || fail "the test body is not under 4 MiB"
for i in 1 2; do
	code=$(curl -s -o "$WORK/body" -w '%{http_code}' --unix-socket "$(sock $i)" -X POST -H 'Content-Type: application/json' --data-binary @"$WORK/grow.json" http://tabby/v1/resources)
	[ "$code" = 413 ] && grep -q "bytes once normalized, more than the 4194304 one command may carry" "$WORK/body" ||
		fail "resources that grow past the limit, through agent$i: $code $(head -c 300 "$WORK/body")"
done
log "ok: resources that grow past 4 MiB when normalized -> 413 on leader and follower"
printf 'GARBAGE\r\n\r\n' | timeout 2 socat - UNIX-CONNECT:"$(sock 1)" >/dev/null 2>&1 || true
expect 200 '"status":"ok"' -- GET /healthz

# Conditional writes and transactions.
rev=$(api 1 PUT /v1/kv/cas '{"value": "1"}' | sed 's/.*"revision":\([0-9]*\).*/\1/')
expect 409 "mod revision is $rev" -- PUT /v1/kv/cas "{\"value\": \"2\", \"prev_revision\": $((rev - 1))}"
expect 200 '"revision"' -- PUT /v1/kv/cas "{\"value\": \"2\", \"prev_revision\": $rev}"
expect 200 '"succeeded":true' -- POST /v1/txn '{"compare": [{"key": "cas", "target": "value", "result": "=", "value": "2"}], "success": [{"put": {"key": "cas", "value": "3"}}, {"get": {"key": "cas"}}]}'
expect 200 '"succeeded":false' -- POST /v1/txn '{"compare": [{"key": "cas", "target": "value", "result": "=", "value": "2"}], "success": [{"put": {"key": "cas", "value": "4"}}], "failure": [{"get": {"key": "cas"}}]}'
[ "$(tctl 1 store get cas -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["value"])')" = 3 ] || fail "txn result"

# Linearizable read through the follower sees a write made through the leader.
tctl 1 store put lin yes >/dev/null
out=$(tctl 2 store get lin --consistency linearizable -o json)
[[ "$out" == *yes* ]] || fail "linearizable read on the follower: $out"
log "ok: linearizable read through the follower"

# History is 20 revisions: a watch from revision 1 is compacted.
for ((k = 0; k < 60; k++)); do tctl 1 store put "h/$k" x >/dev/null; done
if out=$(timeout 5 "$TABBY" store watch h/ --prefix --rev 1 --socket "$(sock 1)" 2>&1); then
	fail "a watch from a compacted revision succeeded: $out"
fi
[[ "$out" == *compact* ]] || fail "compacted watch message: $out"
log "ok: compacted watch -> $out"
# A watch from a recent revision replays history, then live events.
cur=$(api 1 GET /v1/kv/h/59 | sed 's/.*"mod_revision":\([0-9]*\).*/\1/')
timeout 3 "$TABBY" store watch h/ --prefix --rev "$cur" -o json --socket "$(sock 2)" >"$WORK/watch.out" 2>&1 &
watcher=$!
sleep 0.5
tctl 1 store put h/live y >/dev/null
wait "$watcher" || true
grep -q '"h/59"' "$WORK/watch.out" || fail "watch did not replay h/59: $(cat "$WORK/watch.out")"
grep -q '"h/live"' "$WORK/watch.out" || fail "watch did not see the live event: $(cat "$WORK/watch.out")"
log "ok: watch replays history and streams live events"

# Metrics.
m=$(curl -s --unix-socket "$(sock 1)" http://tabby/metrics)
for name in tabby_raft_term tabby_raft_commit_index tabby_raft_applied_index 'tabby_raft_role{role="leader"} 1' tabby_apply_latency_seconds_bucket 'tabby_http_requests_total{code="4xx"}' 'tabby_store_disk_full 0' 'tabby_event_loop_stalls_total 0' 'tabby_raft_member_behind_seconds{member_id="2",member="agent2"} 0' 'tabby_raft_member_match_index{member_id="2",member="agent2"} ' 'tabby_raft_member_silent_seconds{member_id="2",member="agent2"} 0.'; do
	grep -qF "$name" <<<"$m" || fail "metrics lack $name"
done
log "ok: metrics"

# A join with the wrong token is refused, and the joining agent says why.
mkdir -p "$WORK/data3"
if ip netns exec "$(host_ns 3)" timeout 20 "$TABBY" agent --name agent3 --data-dir "$WORK/data3" \
	--socket "$(sock 3)" --peer-address "$(host_ip 3):7790" --api-address "$(host_ip 3):7791" \
	--join "$(host_ip 1):7791" --token wrong >"$WORK/agent3.log" 2>&1; then
	fail "an agent with the wrong token joined"
fi
grep -q "refused the join: the join token is not this cluster's" "$WORK/agent3.log" || fail "wrong-token message: $(cat "$WORK/agent3.log")"
log "ok: wrong token refused"

# must_not_start WHAT NAME DATA SOCKET PEER_PORT API_PORT [FLAGS...]: an agent in host 1 that
# must exit by itself (within 20 s) and say in its log, $WORK/refused.log, why.
must_not_start() {
	local what=$1 name=$2 data=$3 socket=$4 peer=$5 api=$6
	shift 6
	mkdir -p "$data"
	if ip netns exec "$(host_ns 1)" timeout 20 "$TABBY" agent --name "$name" --data-dir "$data" \
		--socket "$socket" --peer-address "$(host_ip 1):$peer" --api-address "$(host_ip 1):$api" "$@" \
		>"$WORK/refused.log" 2>&1; then
		fail "an agent started $what"
	fi
}

# A second agent on agent1's data directory refuses to start before it touches anything, and
# one given agent1's socket leaves that socket alone: agent1 keeps every acknowledged write.
for k in 1 2 3 4 5; do tctl 1 store put "dd/$k" "v$k" >/dev/null || fail "put dd/$k"; done
must_not_start "on agent1's data directory" agent1 "$WORK/data1" "$WORK/second.sock" 7792 7793
grep -q "another agent is running on $WORK/data1" "$WORK/refused.log" || fail "second agent: $(cat "$WORK/refused.log")"
must_not_start "on agent1's socket" other "$WORK/data-other" "$(sock 1)" 7792 7793 --bootstrap
grep -q "cannot listen on $(sock 1): address already in use" "$WORK/refused.log" || fail "second agent: $(cat "$WORK/refused.log")"
[ "$(tctl 1 store get dd/ --prefix | grep -c '^dd/')" = 5 ] || fail "agent1 lost writes: $(tctl 1 store get dd/ --prefix)"
log "ok: a second agent on the same data directory or socket is refused, and the first keeps its writes"
# A busy peer port is named, with raft's reason (its message was empty).
must_not_start "on a busy peer port" busy "$WORK/data-busy" "$WORK/busy.sock" 7790 7797 --bootstrap
grep -q "cannot start raft (peer address $(host_ip 1):7790): ." "$WORK/refused.log" || fail "busy peer port: $(cat "$WORK/refused.log")"
# Addresses other hosts must reach: no 0.0.0.0, and IPv4 for raft.
for bad in "0.0.0.0:7790" "[::1]:7790"; do
	if "$TABBY" agent --name x --data-dir "$WORK/data-x" --peer-address "$bad" >"$WORK/x.log" 2>&1; then
		fail "--peer-address $bad accepted"
	fi
	grep -qF "peer-address: '$bad' is not IPv4:PORT" "$WORK/x.log" || fail "--peer-address $bad: $(cat "$WORK/x.log")"
done
expect 400 "peer_address 'not an address' is not IPv4:PORT" -- POST /v1/cluster/join "{\"name\": \"bad\", \"peer_address\": \"not an address\", \"api_address\": \"$(host_ip 3):7796\", \"token\": \"$(token)\"}"
expect 400 "api_address '0.0.0.0:7791' is not IP:PORT" -- POST /v1/cluster/join "{\"name\": \"bad\", \"peer_address\": \"$(host_ip 3):7790\", \"api_address\": \"0.0.0.0:7791\", \"token\": \"$(token)\"}"
log "ok: a busy peer port is named; unusable addresses are refused"

# The CLI names unknown commands and flags.
if "$TABBY" frobnicate >"$WORK/cli.out" 2>&1; then fail "unknown command accepted"; fi
grep -q "unknown command 'frobnicate'" "$WORK/cli.out" || fail "unknown command message: $(cat "$WORK/cli.out")"
if "$TABBY" store get a --bogus >"$WORK/cli.out" 2>&1; then fail "unknown flag accepted"; fi
grep -q "unknown flag '--bogus'" "$WORK/cli.out" || fail "unknown flag message: $(cat "$WORK/cli.out")"

# Remove a member: the cluster goes back to one member.
tctl 1 cluster remove agent2 >/dev/null || fail "cluster remove"
wait_for "agent2 to leave the configuration" 20 members_healthy 1 1
status_json 1 | matches agent2 && fail "agent2 still listed"
tctl 1 store put after-remove ok >/dev/null || fail "write after removing a member"
wait_for "the removed agent2 to stop by itself" 20 agent_exited 2
grep -q "this member was removed from the cluster" "$WORK/agent2.log" || fail "agent2 did not say why it stopped"
expect 404 "no member named 'agent2'" -- DELETE /v1/cluster/members/agent2
# A name longer than any member's is refused whole, not cut to a name that may exist.
expect 400 "is not a member name (1-100 bytes of UTF-8" -- DELETE "/v1/cluster/members/$(printf 'a%.0s' {1..140})"
expect 400 "'??x' is not a member name (1-100 bytes of UTF-8" -- DELETE "/v1/cluster/members/%ff%fex"
must_not_start "with a name that is not UTF-8" $'ab\xffc' "$WORK/data-utf8" "$WORK/utf8.sock" 7792 7793 --bootstrap
grep -q "is not a valid member name (1-100 bytes of UTF-8, no '/' or control characters)" "$WORK/refused.log" || fail "non-UTF-8 name: $(cat "$WORK/refused.log")"

# A member whose join succeeded but whose agent never started (it cannot catch up) does not hold
# up the members that join after it; the operator removes it.
expect 200 '"id":' -- POST /v1/cluster/join "{\"name\": \"ghost\", \"peer_address\": \"$(host_ip 3):7795\", \"api_address\": \"$(host_ip 3):7796\", \"token\": \"$(token)\"}"
rm -rf "$WORK/data3"
start_agent 3 --join "$(host_ip 1):7791" --token "$(token)"
agent3_voter() {
	status_json 1 | python3 -c '
import json, sys
ms = {m["name"]: m for m in json.load(sys.stdin)["members"]}
sys.exit(0 if ms.get("agent3", {}).get("role") == "voter" and ms["agent3"].get("healthy") else 1)'
}
wait_for "agent3 to become a voter past the stuck ghost" 60 agent3_voter
# The ghost, which never answered, was never made a voter: it waits as an unhealthy standby.
status_json 1 | python3 -c '
import json, sys
ms = {m["name"]: m for m in json.load(sys.stdin)["members"]}
sys.exit(0 if ms["ghost"]["role"] == "standby" and not ms["ghost"]["healthy"] else 1)' ||
	fail "the ghost should be an unhealthy standby: $(status_json 1)"
tctl 1 cluster remove ghost >/dev/null || fail "cluster remove ghost"
wait_for "2 healthy members" 30 members_healthy 1 2
log "ok: a member that never caught up holds up no later join, and goes with cluster remove"
pass
