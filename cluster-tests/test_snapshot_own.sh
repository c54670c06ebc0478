#!/usr/bin/env bash
# A member's own latest snapshot rots on its disk while it is down (a byte of its data file
# flips; raft checksums only the metadata file). With the default trailing the log reaches back
# to the snapshot before it, so the member starts from that one and the log after it, which
# hold the same state: it says so in its log and /metrics, takes a new snapshot, and holds every
# key; the members agree. (Before, it restored the damaged file and did not start, and the way
# back was to move raft/ aside and join again.) A member whose snapshots are all damaged is
# refused at start with a message naming the newest and the data directory, and its files are
# left as they were.
source "$(dirname "$0")/lib.sh"
hosts_up 3
# A small threshold and the default trailing (the threshold and a quarter).
export TABBY_SNAPSHOT_THRESHOLD=64
bootstrap_cluster 3
for ((k = 0; k < 400; k++)); do
	tctl $((k % 3 + 1)) store put "own/$k" "v$k" >/dev/null || fail "put own/$k"
done
catch_up
M=2
[ "$(metric $M tabby_raft_snapshots_total)" -ge 2 ] ||
	fail "agent$M took $(metric $M tabby_raft_snapshots_total) snapshots, not two or more"

# damage I [all]: flip the middle byte of agent I's newest snapshot data file (all: of every one);
# prints the newest's name.
damage() {
	python3 - "$WORK/data$1/raft" "${2:-newest}" <<'PY'
import os, re, sys
d, which = sys.argv[1], sys.argv[2]
snaps = sorted((int(m.group(1)), int(m.group(2)), n) for n in os.listdir(d)
               for m in [re.fullmatch(r"snapshot-(\d+)-(\d+)-(\d+)", n)] if m)
for _, _, name in snaps if which == "all" else snaps[-1:]:
    with open(os.path.join(d, name), "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(size // 2)
        b = f.read(1)[0] ^ 0x5A
        f.seek(size // 2)
        f.write(bytes([b]))
print(snaps[-1][2])
PY
}

stop_agent $M
name=$(damage $M)
log "damaged $name of agent$M"
start_agent $M
wait_for "agent$M to say it started from the snapshot before" 15 \
	grep -q "error: the latest snapshot in $WORK/data$M/raft, $name, cannot be used (its data fails its checksum: it is damaged): this member started from the snapshot before it" "$WORK/agent$M.log"
wait_for "3 healthy members" 30 members_healthy 1 3
[ "$(metric $M tabby_raft_snapshots_damaged_total)" = 1 ] || fail "agent$M did not count the damage"
n=$(tctl $M store get own/ --prefix -o json | json 'len(d)')
[ "$n" -eq 400 ] || fail "agent$M holds $n of 400 keys"
tctl 1 store put own/after yes >/dev/null || fail "write after the restart"
snapped() { [ "$(metric $M tabby_raft_snapshots_total)" -ge 1 ]; }
wait_for "agent$M to take a new snapshot" 15 snapped
wait_for "equal state hashes" 20 hash_agrees 1
grep -q "fatal" "$WORK"/agent*.log && fail "a member stopped: $(grep -h fatal "$WORK"/agent*.log | head -1)"

# A member with no snapshot to fall back on: every snapshot of agent3 damaged. (Whether a log
# that raft compacted reaches back to the older snapshot depends on where its segments happened
# to end, so that refusal is tested on one member's store, test_own_snapshot_damaged.) Its start
# is refused, naming the newest snapshot, and its raft directory is left as it was.
stop_agent 3
name=$(damage 3 all)
(cd "$WORK/data3/raft" && ls -l --time-style=+%s.%N | sha256sum) >"$WORK/before"
rc=0
ip netns exec "$(host_ns 3)" timeout 20 "$TABBY" agent --name agent3 --data-dir "$WORK/data3" \
	--socket "$WORK/refused.sock" --peer-address "$(host_ip 3):7790" \
	--api-address "$(host_ip 3):7791" >"$WORK/refused.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "agent3 exited $rc: $(cat "$WORK/refused.out")"
grep -q "$WORK/data3/raft: .*snapshot $name cannot be used (its data fails its checksum: it is damaged), nor can any older one (the oldest: its data fails its checksum: it is damaged)" \
	"$WORK/refused.out" || fail "agent3 said: $(cat "$WORK/refused.out")"
log "ok: refused: $(grep -o "snapshot $name cannot be used.*" "$WORK/refused.out" | head -1)"
(cd "$WORK/data3/raft" && ls -l --time-style=+%s.%N | sha256sum) | cmp -s - "$WORK/before" ||
	fail "the refused start changed agent3's raft directory"
pass
