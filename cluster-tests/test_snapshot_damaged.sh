#!/usr/bin/env bash
# The leader's latest snapshot rots on its disk (a byte of its data file flips; raft checksums
# only the metadata file). A fourth agent that joins needs that snapshot: the leader finds it
# damaged before sending it, logs so, takes a new one and sends that. The new member catches up
# and every member keeps running with the same state. (Before, the damaged file went to the new
# member, which stopped on it; every member that fell behind or joined would have.)
source "$(dirname "$0")/lib.sh"
compacted_cluster rot
L=$(leader_index 1)
[ "$(metric "$L" tabby_raft_snapshots_total)" -ge 1 ] || fail "agent$L took no snapshot"
[ "$(metric "$L" tabby_raft_snapshots_damaged_total)" = 0 ] || fail "damage counted before any"

# Flip the middle byte of every snapshot data file the leader has.
n=0
for f in "$WORK/data$L"/raft/snapshot-*; do
	case $f in *.meta) continue ;; esac
	python3 - "$f" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    size = os.fstat(f.fileno()).st_size
    f.seek(size // 2)
    b = f.read(1)[0] ^ 0x5A
    f.seek(size // 2)
    f.write(bytes([b]))
PY
	n=$((n + 1))
done
[ "$n" -ge 1 ] || fail "agent$L has no snapshot file to damage"
log "damaged $n snapshot file(s) of agent$L, the leader"

start_agent 4 --join "$(host_ip "$L"):7791" --token "$(token)"
installed() { agent_exited 4 || [ "$(metric 4 tabby_raft_snapshots_restored_total)" -ge 1 ] 2>/dev/null; }
wait_for "agent4 to install the leader's new snapshot" 30 installed
agent_exited 4 && fail "agent4 stopped: $(grep -h fatal "$WORK/agent4.log" | head -1)"
wait_for "4 healthy members" 30 members_healthy 1 4
[ "$(metric "$L" tabby_raft_snapshots_damaged_total)" -ge 1 ] || fail "agent$L did not count the damage"
grep -q "error: the latest snapshot in $WORK/data$L/raft is damaged" "$WORK/agent$L.log" ||
	fail "agent$L did not log the damage"
grep -q "fatal" "$WORK"/agent*.log && fail "a member stopped: $(grep -h fatal "$WORK"/agent*.log | head -1)"
for i in 1 2 3 4; do agent_exited "$i" && fail "agent$i exited"; done
n=$(tctl 4 store get rot/ --prefix -o json | json 'len(d)')
[ "$n" -eq 300 ] || fail "agent4 holds $n of 300 keys"
tctl "$L" store put rot/after yes >/dev/null || fail "write after the install"
wait_for "equal state hashes on 4 members" 20 hash_agrees 4
pass
