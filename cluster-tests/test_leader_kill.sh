#!/usr/bin/env bash
# Three agents. A client writes 2,000 keys through all three agents while the leader is killed
# with SIGKILL and later restarted. Afterwards every acknowledged write is present, with its
# value, on every member, and `tabby cluster hash` agrees. Then a member removed while it is down
# stops by itself when it comes back, saying why.
source "$(dirname "$0")/lib.sh"
hosts_up 3
bootstrap_cluster 3

TOTAL=2000
# writer I FROM TO: write keys FROM..TO-1 through agent I, retrying each until acknowledged or
# until the deadline; acknowledged keys go to acked.I.
writer() {
	local i=$1 k=$2 to=$3 deadline=$((SECONDS + 120))
	while ((k < to && SECONDS < deadline)); do
		if tctl "$i" store put "key/$k" "value-$k-$(printf 'x%.0s' {1..40})" >/dev/null 2>>"$WORK/writer$i.err"; then
			echo "key/$k" >>"$WORK/acked.$i"
			k=$((k + 1))
		else
			sleep 0.05
		fi
	done
}

per=$((TOTAL / 3))
writer 1 0 "$per" &
w1=$!
writer 2 "$per" $((2 * per)) &
w2=$!
writer 3 $((2 * per)) "$TOTAL" &
w3=$!

acked() { cat "$WORK"/acked.* 2>/dev/null | wc -l; }
enough_acked() { [ "$(acked)" -ge 500 ]; }
wait_for "500 acknowledged writes" 60 enough_acked
L=$(leader_index 1)
[ -n "$L" ] || fail "no leader before the kill"
log "killing the leader agent$L after $(acked) acknowledged writes"
kill_agent "$L"
other=$((L % 3 + 1))
wait_for "a new leader" 20 bash -c "n=\$(\"$TABBY\" cluster status -o json --socket $(sock $other) | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"leader\"] or \"\")'); [ -n \"\$n\" ] && [ \"\$n\" != agent$L ]"
log "new leader: agent$(leader_index "$other"); acknowledged so far: $(acked)"
sleep 2
log "restarting agent$L"
start_agent "$L"
wait $w1 $w2 $w3 || true
n=$(acked)
log "acknowledged writes: $n of $TOTAL"
[ "$n" -eq "$TOTAL" ] || fail "only $n of $TOTAL writes were acknowledged within the deadline"

wait_for "3 healthy members after the restart" 30 members_healthy 1 3
wait_for "equal state hashes" 30 hash_agrees 1
sort "$WORK"/acked.* >"$WORK/acked.all"
for i in 1 2 3; do
	tctl "$i" store get key/ --prefix -o json >"$WORK/dump$i.json" || fail "get from agent$i"
	python3 - "$WORK/dump$i.json" "$WORK/acked.all" "$i" <<'PY' || fail "agent$i is missing acknowledged writes"
import json, sys
kvs = {kv["key"]: kv["value"] for kv in json.load(open(sys.argv[1]))}
acked = [l.strip() for l in open(sys.argv[2]) if l.strip()]
missing = [k for k in acked if k not in kvs]
wrong = [k for k in acked if k in kvs and not kvs[k].startswith("value-%s-" % k.split("/")[1])]
if missing or wrong:
    print("agent%s: %d missing (e.g. %s), %d wrong" % (sys.argv[3], len(missing), missing[:3], len(wrong)))
    sys.exit(1)
print("agent%s holds all %d acknowledged keys" % (sys.argv[3], len(acked)), file=sys.stderr)
PY
done
tctl 1 cluster hash >&2

# Removed while down: nobody tells a non-member anything, so it asks.
L=$(leader_index 1)
V=1
[ "$V" = "$L" ] && V=2
stop_agent "$V"
tctl "$L" cluster remove "agent$V" >/dev/null || fail "cluster remove agent$V"
wait_for "agent$V out of the configuration" 30 members_healthy "$L" 2
start_agent "$V"
wait_for "the removed agent$V to stop by itself" 40 agent_exited "$V"
grep -q "this member was removed from the cluster while it was down (the leader, agent$L, has no member id" "$WORK/agent$V.log" ||
	fail "agent$V did not say why it stopped: $(tail -n 3 "$WORK/agent$V.log")"
log "ok: a member removed while it was down stops when it comes back"
pass
