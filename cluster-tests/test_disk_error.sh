#!/usr/bin/env bash
# A member whose raft log cannot be written although its file system shows room: its raft
# directory is on a thin-provisioned volume in miniature (see thin_fs; the state's directory stays
# on a healthy disk). When the pool is exhausted, the member's next log writes fail with ENOSPC
# from below the file system, which statvfs() cannot see.
#
# The leader in that state says so, hands leadership over and stays up; the cluster keeps taking
# writes; the cluster's status and the member's metrics name the trouble; once the pool has room
# again the member's log writes work again without a restart and no acknowledged write is lost.
# A single-member cluster refuses writes with a clear error instead and serves reads.
#
# raft 0.22.1 retried a failed log write on the wrong timer and crashed 5 s later (patch 0010).
source "$(dirname "$0")/lib.sh"

# thin_fs I: agent I's raft directory is a fresh 96 MiB ext4 file system on a thin volume in
# miniature: a loop device (direct I/O) over a sparse file in a pool, $WORK/poolI, a 160 MiB ext4
# file system of its own. Every block of the volume is written once, so that what mkfs made
# (journal, inode tables) is provisioned (mkfs "zeroes" by punching holes); then fstrim hands the
# free blocks back to the pool through the loop device's discard, as on a thin volume. With
# direct I/O, a write that needs a block the pool has no more of fails whole, as a thin volume's
# does; through the page cache, a write half on provisioned blocks was reported done and its
# other half lost.
thin_fs() {
	local dir=$WORK/data$1/raft pool=$WORK/pool$1 dev
	mkdir -p "$dir" "$pool"
	truncate -s 160M "$pool.img"
	mkfs.ext4 -q -F -m 0 "$pool.img" || fail "mkfs.ext4 $pool.img"
	mount -o loop "$pool.img" "$pool" || fail "mount -o loop $pool.img"
	MOUNTS+=("$pool")
	truncate -s 96M "$pool/img"
	mkfs.ext4 -q -F -b 4096 "$pool/img" || fail "mkfs.ext4 $pool/img"
	dd if="$pool/img" of="$pool/img" bs=1M conv=notrunc 2>/dev/null || fail "cannot provision $pool/img"
	dev=$(losetup -f --show --direct-io=on "$pool/img") || fail "losetup $pool/img"
	MOUNTS+=("$dev")
	LOOPDEV[$1]=$dev
	mount "$dev" "$dir" || fail "mount $dev"
	MOUNTS+=("$dir")
	rmdir "$dir/lost+found"
	fstrim "$dir" || fail "fstrim $dir"
}

# remount_raft I: agent I's (stopped) raft directory is mounted again, as after a reboot: what
# agent I reads next comes from its disk, not from the page cache. A write whose write-back
# failed stays in the page cache, where it reads back whole, until the pages are dropped.
remount_raft() {
	umount "$WORK/data$1/raft" || fail "umount $WORK/data$1/raft"
	mount "${LOOPDEV[$1]}" "$WORK/data$1/raft" || fail "mount ${LOOPDEV[$1]}"
}

# tear_metadata I: of agent I's two raft metadata files (term and vote, stored in turn and
# overwritten in place), the one the next store goes to reads back zeros: what a store that failed
# on the disk (as the phase above provokes), or that a crash cut short, can leave.
tear_metadata() {
	python3 - "$WORK/data$1/raft" <<'PY' || fail "cannot tear agent$1's metadata"
import os, struct, sys
d = sys.argv[1]
vers = {}
for n in (1, 2):
    with open(f"{d}/metadata{n}", "rb") as f:
        vers[n] = struct.unpack("<4Q", f.read(32))[1]
older = min(vers, key=vers.get)
with open(f"{d}/metadata{older}", "r+b") as f:
    f.write(bytes(32))
    os.fsync(f.fileno())
print(f"metadata{older} (version {vers[older]}) zeroed; metadata{3 - older} holds version {vers[3 - older]}",
      file=sys.stderr)
PY
}

# fill_pool I: take every free block of agent I's pool.
fill_pool() {
	dd if=/dev/zero of="$WORK/pool$1/filler" bs=1M 2>/dev/null || true
	dd if=/dev/zero of="$WORK/pool$1/filler2" bs=1k 2>/dev/null || true
}
free_pool() { rm -f "$WORK/pool$1/filler" "$WORK/pool$1/filler2"; }

# exhaust I: the pool under agent I's raft directory runs out. The blocks of its open segments
# past what is written are first handed back to the pool (as a thin volume's discard would; raft
# writes zeros over a segment when it creates it, which provisions it), so the member's next log
# write needs a block the pool no longer has.
exhaust() {
	python3 - "$WORK/data$1/raft" "$WORK/pool$1/img" <<'PY' || fail "cannot unprovision agent$1's open segments"
import os, re, subprocess, sys
d, img = sys.argv[1], sys.argv[2]
n = 0
for f in sorted(os.listdir(d)):
    if not f.startswith("open-"):
        continue
    p = d + "/" + f
    # Read past the page cache: raft writes its log with direct I/O.
    data = subprocess.run(["dd", "if=" + p, "iflag=direct", "bs=1M", "status=none"],
                          capture_output=True, check=True).stdout
    last = 0  # the last block that holds entries: it stays, as a discard would leave it
    for b in range(len(data) // 4096):
        if data[b * 4096:(b + 1) * 4096].strip(b"\0"):
            last = b
    out = subprocess.run(["filefrag", "-v", "-b4096", p], capture_output=True, text=True,
                         check=True).stdout
    for m in re.finditer(r"^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):", out, re.M):
        lo, hi, plo = int(m[1]), int(m[2]), int(m[3])
        s = max(lo, last + 1)
        if s <= hi:
            subprocess.run(["fallocate", "-p", "-o", str((plo + s - lo) * 4096), "-l",
                            str((hi - s + 1) * 4096), img], check=True)
            n += 1
if n == 0:
    sys.exit("no open segment extents found")
PY
	fill_pool "$1"
}

# led_by I J: agent I sees agent J lead; led_by_other_than I J: some other agent than J.
led_by() { [ "$(leader_index "$1")" = "$2" ]; }
led_by_other_than() {
	local l
	l=$(leader_index "$1") && [ "$l" != "$2" ]
}
# holds I KEY: agent I's replica has KEY.
holds() { [[ "$(tctl "$1" store get "$2" -o json)" == *"\"$2\""* ]]; }

declare -a LOOPDEV=()
hosts_up 4
thin_fs 1
bootstrap_cluster 3
[ "$(leader_index 2)" = 1 ] || fail "agent1 should lead after bootstrap"
for ((k = 0; k < 50; k++)); do tctl 1 store put "before/$k" "v$k" >/dev/null || fail "before/$k"; done

exhaust 1
start=$SECONDS
log "the pool under agent1's (the leader's) data directory is exhausted; 100 writes through agent2"
for ((k = 0; k < 100; k++)); do
	timeout 20 "$TABBY" store put "during/$k" "v$k" --socket "$(sock 2)" >/dev/null ||
		fail "write during/$k through agent2 failed or hung while agent1's log could not be written"
done
log "ok: 100 writes through agent2 in $((SECONDS - start)) s"
wait_for "agent1 to say its raft log cannot be written" 10 grep -q \
	"data directory failing: the raft log in $WORK/data1/raft cannot be written: write failed: No space left on device" \
	"$WORK/agent1.log"
log "ok: $(grep -o 'data directory failing: .*written: [^;]*' "$WORK/agent1.log" | head -n 1)"
wait_for "another member to lead" 10 led_by_other_than 2 1
log "ok: agent$(leader_index 2) leads"
# raft retries the failed write every 5 s: agent1 must outlive a few retries.
sleep $((start + 12 > SECONDS ? start + 12 - SECONDS : 0))
agent_exited 1 && fail "agent1 died while its log writes failed (exit status $(wait "${PIDS[1]}"; echo $?))"
err=$(status_json 2 | json "[m.get('error', '') for m in d['members'] if m['name'] == 'agent1'][0]")
log "cluster status on agent1: $err"
# The leader's log write fails first; the term it then takes from the new leader cannot be
# stored either (its metadata file needs a new block), and that is reported first.
case $err in
"raft log cannot be written (write failed: No space left on device)"* | \
	"raft log cannot be written (persist metadata"[12]": fsync: no space left on device)"*) ;;
*) fail "cluster status does not say what is wrong with agent1: '$err'" ;;
esac
m=$(curl -s --unix-socket "$(sock 1)" http://tabby/metrics)
grep -qx 'tabby_raft_log_write_failing 1' <<<"$m" || fail "agent1's metrics do not say its log writes fail"
grep -qx 'tabby_store_disk_full 0' <<<"$m" || fail "agent1's metrics call its disk full"
tctl 1 store get before/0 -o json >/dev/null || fail "agent1 stopped serving reads"

log "the pool has room again"
free_pool 1
wait_for "agent1 to say its log writes work again" 20 grep -q \
	"raft log writes work again: $WORK/data1/raft" "$WORK/agent1.log"
wait_for "agent1 to apply every write" 30 holds 1 during/99
# Until agent1 has stored the term it took while the pool was exhausted, it sends raft nothing
# (patch 0017): the leader sees it healthy only once a retry of that store has worked.
wait_for "3 healthy members" 30 members_healthy 2 3
wait_for "equal state hashes" 30 hash_agrees 1
for p in before during; do
	n=$(tctl 1 store get "$p/" --prefix -o json | json 'len(d)')
	want=$([ $p = before ] && echo 50 || echo 100)
	[ "$n" = "$want" ] || fail "agent1 holds $n of the $want $p/ writes"
done
m=$(curl -s --unix-socket "$(sock 1)" http://tabby/metrics)
grep -qx 'tabby_raft_log_write_failing 0' <<<"$m" || fail "agent1's metrics still say its log writes fail"
agent_exited 1 && fail "agent1 exited"
log "ok: agent1 holds every write and agrees with the others"

# Stopped while raft waits to retry a failed write, agent1 shuts down cleanly; started again once
# the pool has room (and its file system mounted again, as after a reboot), it loads the log it
# wrote around both failures and catches up. Its metadata file that the failed store of the phase
# above left reading zeros, had raft not stored it again once it could, would stop it here: so
# the next store's file is torn on purpose, and agent1 must load the other.
exhaust 1
v=$(head -c 1500 /dev/urandom | base64 -w0) # 20 of them fill more than a block of the log
for ((k = 0; k < 20; k++)); do tctl 2 store put "again/$k" "$v" >/dev/null || fail "again/$k"; done
wait_for "agent1 to say again that its raft log cannot be written" 10 bash -c \
	"[ \$(grep -c 'data directory failing: the raft log in $WORK/data1/raft' $WORK/agent1.log) = 2 ]"
kill -TERM "${PIDS[1]}"
rc=0
wait "${PIDS[1]}" || rc=$?
[ "$rc" = 0 ] || fail "agent1, stopped while its log writes failed, exited with status $rc"
free_pool 1
tear_metadata 1
remount_raft 1
start_agent 1
wait_for "3 healthy members after agent1's restart" 30 members_healthy 2 3
wait_for "equal state hashes after agent1's restart" 30 hash_agrees 1
n=$(tctl 1 store get "again/" --prefix -o json | json 'len(d)')
[ "$n" = 20 ] || fail "agent1 holds $n of the 20 again/ writes after its restart"
log "ok: agent1, stopped while its log writes failed, restarted on its log and caught up"

# A cluster of one has nobody to hand the lead to: it refuses writes, and says why. Here the pool
# runs out while the member can still write its open segment; the trouble shows when raft must
# write out its next segment and cannot. When the pool has room again, creating the segment must
# work (0.22.1 with Tabby's zero-filling left the half-made file behind, and every retry failed).
log "a single-member cluster (agent4) whose pool runs out; writes of 80 KB until one is refused"
thin_fs 4
start_agent 4 --bootstrap
wait_for "agent4 to lead" 15 led_by 4 4
fill_pool 4
refusal="" acked=0
for ((k = 0; k < 400; k++)); do
	head -c 60000 /dev/urandom | base64 -w0 >"$WORK/value"
	if ! out=$(timeout 30 "$TABBY" store put "solo/$k" "$(cat "$WORK/value")" --socket "$(sock 4)" 2>&1 >/dev/null); then
		refusal=$out
		break
	fi
	acked=$((k + 1))
done
[ -n "$refusal" ] || fail "agent4 took 400 writes of 80 KB on an exhausted pool"
log "write solo/$k refused after $acked: $refusal"
case $refusal in
*"the leader cannot write its raft log to its disk"*) ;;
*) fail "the refusal does not say that the raft log cannot be written: $refusal" ;;
esac
grep -qi "data directory failing: the raft log in $WORK/data4/raft cannot be written: .*no space left on device" \
	"$WORK/agent4.log" || fail "agent4 did not log that its raft log cannot be written"
log "ok: $(grep -o 'data directory failing: .*written: [^;]*' "$WORK/agent4.log" | tail -n 1)"
code=$(curl -s -o "$WORK/body" -w '%{http_code}' --unix-socket "$(sock 4)" -X PUT \
	--data-binary '{"value": "x"}' -H 'Content-Type: application/json' "http://tabby/v1/kv/solo/http") || true
[ "$code" = 507 ] || fail "the API answered $code to a write that cannot reach the log, not 507"
grep -q '"code": *"disk_failure"' "$WORK/body" || fail "the API's error is not disk_failure: $(cat "$WORK/body")"
got=$(tctl 4 store get solo/0 -o json | json 'd[0]["key"]')
[ "$got" = solo/0 ] || fail "agent4 stopped serving reads"
agent_exited 4 && fail "agent4 died"
free_pool 4
wait_for "agent4 to say its log writes work again" 20 grep -q "raft log writes work again: $WORK/data4/raft" "$WORK/agent4.log"
wait_for "agent4 to take writes again" 30 tctl 4 store put solo/after ok
stop_agent 4
start_agent 4
wait_for "agent4 to lead after its restart" 15 tctl 4 store put solo/restarted ok
n=$(tctl 4 store get solo/ --prefix -o json | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["key"].split("/")[1].isdigit()))')
# The write refused was never applied; one that timed out may have been.
((n >= acked && n <= acked + 1)) || fail "agent4 holds $n of the $acked acknowledged writes after a restart"
log "ok: agent4 holds its $acked acknowledged writes after a restart"
pass
