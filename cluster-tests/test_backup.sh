#!/usr/bin/env bash
# `tabby backup save FILE` writes a consistent copy of the whole replicated state, taken on any
# member after every write acknowledged before it, while writes go on; `tabby backup status FILE`
# checks it without an agent and reports what it holds. The state hash it reports is the one
# `tabby cluster hash` gives at the same revision, and the records it counts are the cluster's:
# pools, blocks, the container's address and endpoint, the policy. A damaged, cut or foreign file
# is refused with the reason; a backup is refused over TCP (it holds the join token) and never
# leaves a half-written file behind.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cni-lib.sh"
hosts_up 3
bootstrap_cluster 3
cni_setup

web_policy "$WORK/policy.yaml"
ok 1 apply -f "$WORK/policy.yaml" >/dev/null
for k in 1 2 3 4 5; do ok 2 store put "backup/k$k" "value $k" >/dev/null; done
cnt_new a
cnt_add 2 a calico-net-1
catch_up

# A follower's backup holds every write acknowledged anywhere before it.
F=1
[ "$(leader_index 1)" = 1 ] && F=2
ok 3 store put backup/last "written through agent3" >/dev/null
out=$(ok "$F" backup save "$WORK/b1")
rev=$(status_json 1 | json 'd["revision"]')
[[ "$out" =~ ^saved\ revision\ $rev\ of\ cluster\ [0-9a-f]{32}\ from\ member\ agent$F\ to\ $WORK/b1\ \([0-9]+\ bytes\)$ ]] ||
	fail "save on agent$F said: $out"
[ "$(stat -c %a "$WORK/b1")" = 600 ] || fail "the backup's mode is $(stat -c %a "$WORK/b1"), not 600"
ls "$WORK"/b1.tmp-* >/dev/null 2>&1 && fail "save left a temporary file"

st=$("$TABBY" backup status "$WORK/b1" -o json) || fail "backup status of a good backup failed"
b_rev=$(echo "$st" | json 'd["revision"]')
[ "$b_rev" = "$rev" ] || fail "the backup is at revision $b_rev, the cluster was at $rev"
# No write since, so `cluster hash` hashes the same revision.
h=$(ok 1 cluster hash -o json | json 'd["members"][0]["hash"]')
b_hash=$(echo "$st" | json 'd["hash"]')
[ "$h" = "$b_hash" ] || fail "the backup's state hash $b_hash is not the cluster's $h at revision $rev"
log "ok: the backup's hash $b_hash is the cluster's at revision $rev"
groups=$(echo "$st" | json '" ".join("%s=%d" % kv for kv in sorted(d["domain_records"].items()))')
for want in "res/policies=1" "res/workloadendpoints=1" "ipam/pool=2"; do
	[[ " $groups " == *" $want "* ]] || fail "the backup's records lack $want: $groups"
done
[ "$(echo "$st" | json 'd["user_keys"]')" = 6 ] || fail "the backup does not hold the 6 user keys: $st"
log "ok: the backup holds $groups and 6 user keys"
out=$("$TABBY" backup status "$WORK/b1") || fail "backup status (text) failed"
[ "$(echo "$out" | head -1)" = "$WORK/b1: a Tabby backup, intact; its state restores" ] ||
	fail "backup status said: $out"

# Taken while writes go on: it is whole, at a revision between the ones around it.
( for k in $(seq 1 300); do tctl 2 store put "busy/$k" x >/dev/null 2>&1 || exit 1; done ) &
writer=$!
sleep 0.3
before=$(status_json 1 | json 'd["revision"]')
ok 1 backup save "$WORK/b2" >/dev/null
after=$(status_json 1 | json 'd["revision"]')
wait "$writer" || fail "the writes during the backup failed"
b2_rev=$("$TABBY" backup status "$WORK/b2" -o json | json 'd["revision"]') ||
	fail "backup status of the backup taken during writes failed"
[ "$b2_rev" -ge "$before" ] && [ "$b2_rev" -le "$after" ] ||
	fail "the backup taken between revisions $before and $after is at $b2_rev"
log "ok: a backup taken during writes is at revision $b2_rev (between $before and $after)"

# Over standard output, then checked from standard input.
tctl 1 backup save - >"$WORK/b3" 2>"$WORK/err" || fail "backup save - failed: $(cat "$WORK/err")"
grep -q "^saved revision" "$WORK/err" || fail "backup save - did not report on stderr: $(cat "$WORK/err")"
"$TABBY" backup status - <"$WORK/b3" >/dev/null || fail "backup status - failed"

# Refused: over TCP, a damaged file, a cut file, a file that is no backup.
api=$(host_ip 1):7791
ip netns exec "$(host_ns 2)" "$TABBY" backup save "$WORK/b4" --address "$api" >"$WORK/out" 2>"$WORK/err" && fail "a backup over TCP was served"
grep -q "backups are served only on the agent's unix socket" "$WORK/err" || fail "TCP refusal: $(cat "$WORK/err")"
[ ! -e "$WORK/b4" ] || fail "a refused save wrote its file"
log "ok: over TCP: $(cat "$WORK/err")"

status_refused() {
	local file=$1 sub=$2 rc=0
	"$TABBY" backup status "$file" >"$WORK/out" 2>"$WORK/err" || rc=$?
	[ "$rc" = 1 ] || fail "backup status of $file exited $rc: $(cat "$WORK/out" "$WORK/err")"
	grep -qF -- "$sub" "$WORK/err" || fail "backup status of $file: '$(cat "$WORK/err")' does not mention '$sub'"
	log "ok: $(cat "$WORK/err")"
}
size=$(stat -c %s "$WORK/b1")
cp "$WORK/b1" "$WORK/damaged"
printf '\xff' | dd of="$WORK/damaged" bs=1 seek=$((size / 2)) conv=notrunc status=none
status_refused "$WORK/damaged" "its state fails its checksum: the file is damaged"
head -c $((size - 100)) "$WORK/b1" >"$WORK/cut"
status_refused "$WORK/cut" "it is not a Tabby backup"
status_refused "$WORK/policy.yaml" "it is not a Tabby backup"
status_refused "$WORK/nonexistent" "cannot open $WORK/nonexistent: No such file or directory"

# A save that cannot write (a full file system) leaves the old file as it was.
mkdir -p "$WORK/full"
mount -t tmpfs -o size=16k tmpfs "$WORK/full" || fail "cannot mount a tmpfs"
MOUNTS+=("$WORK/full")
echo "an older backup" >"$WORK/full/keep"
rc=0
tctl 1 backup save "$WORK/full/keep" >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" = 1 ] || fail "a save onto a full file system exited $rc"
grep -q "No space left on device (the file is unchanged)" "$WORK/err" || fail "full: $(cat "$WORK/err")"
[ "$(cat "$WORK/full/keep")" = "an older backup" ] || fail "a failed save changed the file"
[ "$(ls "$WORK/full")" = keep ] || fail "a failed save left files behind: $(ls "$WORK/full")"
log "ok: $(cat "$WORK/err")"

members_healthy 1 3 || fail "the cluster is not healthy after the backups"

# Without a quorum a linearizable backup cannot be proven up to date and is refused; a
# serializable one is the member's replica as it is, for the operator about to recover.
ok 1 store put backup/final "before the quorum went" >/dev/null
catch_up
applied=$(status_json 1 | json '[m["applied_revision"] for m in d["members"] if m["name"] == "agent1"][0]')
stop_agent 2
stop_agent 3
rc=0
tctl 1 backup save "$WORK/b5" >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" = 1 ] && [ ! -e "$WORK/b5" ] || fail "a linearizable backup without a quorum exited $rc: $(cat "$WORK/out" "$WORK/err")"
grep -q "cannot take a linearizable backup: no leader confirmed this member's state (that needs a quorum); --consistency serializable" "$WORK/err" ||
	fail "without a quorum: $(cat "$WORK/err")"
log "ok: without a quorum: $(cat "$WORK/err")"
ok 1 backup save "$WORK/b5" --consistency serializable >/dev/null
b5_rev=$("$TABBY" backup status "$WORK/b5" -o json | json 'd["revision"]') || fail "status of the serializable backup"
[ "$b5_rev" = "$applied" ] || fail "the serializable backup is at revision $b5_rev, agent1 had applied $applied"
log "ok: a serializable backup without a quorum holds revision $b5_rev"
pass
