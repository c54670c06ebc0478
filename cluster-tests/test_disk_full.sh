#!/usr/bin/env bash
# A member whose data directory's file system fills up says so in its log and stays up: as
# leader it hands leadership over and the cluster keeps taking writes; a member that cannot hand
# it over (a cluster of one) refuses writes with a clear error and keeps serving reads; freeing
# space brings both back without a restart, and no acknowledged write is lost. Before the state's
# disk reserve existed, the member died of SIGBUS without a word.
source "$(dirname "$0")/lib.sh"

# fill DIR: take every free block of DIR's file system.
fill() { dd if=/dev/zero of="$1/filler" bs=1M 2>/dev/null || true; sync; }

# value: an 80 KB value, random every time.
value() { head -c 60000 /dev/urandom | base64 -w0; }

hosts_up 4
# Room for what agent1 holds once it has caught up with the 48 MB of writes below: their values
# twice in the state (record and history) with its 64 MiB reserve ahead, about 146 MB, and the
# raft log with its prepared segments, about 65 MB. On 256 MiB (some 240 usable) that left 30 MB,
# and a new log segment or a renewed reserve now and then found no room (CI: "not enough space to
# allocate 8388608 bytes" two seconds after the space came back).
small_fs "$WORK/data1" 448M
bootstrap_cluster 3
[ "$(leader_index 2)" = 1 ] || fail "agent1 should lead after bootstrap"
fill "$WORK/data1"
log "agent1's (the leader's) file system is full; 600 writes of 80 KB through agent2"
for ((k = 0; k < 600; k++)); do
	tctl 2 store put "full/$k" "$(value)" >/dev/null || fail "write full/$k was refused"
done
agent_exited 1 && fail "agent1 died (exit status $(wait "${PIDS[1]}"; echo $?))"
# Its raft log runs short first (the state keeps a reserve), then perhaps the state too.
grep -q "data directory full: [0-9]* MiB free for the raft log in $WORK/data1/raft, which needs 16 MiB (No space left on device)" \
	"$WORK/agent1.log" || fail "agent1 did not log that its data directory is full"
l=$(leader_index 2)
[ -n "$l" ] && [ "$l" != 1 ] || fail "agent1 should have handed leadership over, leader is '$l'"
tctl 1 store get full/0 -o json >/dev/null || fail "agent1 stopped serving reads"
# The cluster's status names the member in trouble and why: its disk is full, and its raft log,
# which has no room for new segments, has stopped taking entries, so it falls behind.
member_error() { status_json "$1" | json "[m.get('error', '') for m in d['members'] if m['name'] == '$2'][0]"; }
reported_behind() { member_error "$1" "$2" | matches 'behind the leader for'; }
wait_for "agent1 to be reported behind the leader" 20 reported_behind 2 agent1
err=$(member_error 2 agent1)
log "cluster status on agent1: $err"
case $err in
"data directory full (No space left on device); behind the leader for "*" s: stored the log up to index "*", the leader has committed "*) ;;
*) fail "cluster status does not say what is wrong with agent1: '$err'" ;;
esac
tctl 2 cluster status | matches "^agent1: data directory full" || fail "the status table does not say what is wrong with agent1"
# (Into a variable first: grep -q would stop reading early, and pipefail would count curl's
# SIGPIPE as a failure.)
m=$(curl -s --unix-socket "$(sock 1)" http://tabby/metrics)
grep -qx 'tabby_store_disk_full 1' <<<"$m" || fail "agent1's metrics do not say its disk is full"
behind=$(curl -s --unix-socket "$(sock "$l")" http://tabby/metrics |
	sed -n 's/^tabby_raft_member_behind_seconds{member_id="1",member="agent1"} //p')
log "the leader's metrics: agent1 behind for ${behind}s"
python3 -c "import sys; sys.exit(0 if float('${behind:-0}') >= 5 else 1)" ||
	fail "the leader's metrics do not show agent1 behind (tabby_raft_member_behind_seconds '$behind')"

log "freeing space on agent1's file system"
rm -f "$WORK/data1/filler"
wait_for "agent1 to renew its reserve" 20 grep -q "data directory has space again" "$WORK/agent1.log"
wait_for "agent1 to apply every write" 60 bash -c "\"$TABBY\" store get full/599 --socket $(sock 1) -o json | grep -q full/599"
wait_for "equal state hashes" 30 hash_agrees 1
wait_for "agent1 to be healthy again" 15 members_healthy 2 3
n=$(tctl 1 store get full/ --prefix -o json | json 'len(d)')
[ "$n" = 600 ] || fail "agent1 holds $n of the 600 acknowledged writes"

# A cluster of one cannot hand leadership to anyone: it refuses writes instead.
log "a single-member cluster (agent4) whose file system fills up"
small_fs "$WORK/data4"
start_agent 4 --bootstrap
wait_for "agent4 to lead" 15 bash -c "[ \"\$(\"$TABBY\" cluster status -o json --socket $(sock 4) | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"leader\"])')\" = agent4 ]"
fill "$WORK/data4"
refusal=""
for ((k = 0; k < 600; k++)); do
	if ! out=$(tctl 4 store put "solo/$k" "$(value)" 2>&1 >/dev/null); then
		refusal=$out
		break
	fi
done
[ -n "$refusal" ] || fail "600 writes of 80 KB fitted into a full file system"
log "write solo/$k refused: $refusal"
case $refusal in
*"no space left for the replicated state on the leader's disk"*) ;;
*) fail "the refusal does not say the disk is full: $refusal" ;;
esac
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$(sock 4)" -X PUT \
	--data-binary '{"value": "x"}' -H 'Content-Type: application/json' "http://tabby/v1/kv/solo/http") || true
[ "$code" = 507 ] || fail "the API answered $code to a write on a full disk, not 507"
agent_exited 4 && fail "agent4 died"
got=$(tctl 4 store get solo/0 -o json | json 'd[0]["key"]')
[ "$got" = solo/0 ] || fail "agent4 stopped serving reads"
rm -f "$WORK/data4/filler"
wait_for "agent4 to take writes again" 20 tctl 4 store put solo/after ok
pass
