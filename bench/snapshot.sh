#!/usr/bin/env bash
# bench/snapshot.sh: what snapshot tuning does to durable writes. One client writes 20,000
# 256-byte values through the leader of a three-member cluster, twice: with raft's library
# defaults (a snapshot every 1,024 entries, 128 kept) and with Tabby's (16,384, and the
# threshold and a quarter kept: 20,480 on the leader, member 1; 0 below means that default).
# Prints writes/s, p99 and the worst write of each, how many writes took over 10 ms (a stall:
# a one-client write normally takes well under 1 ms) and how many snapshots the leader took.
#
# Env: TOTAL=20000  VAL=256 (value bytes; 4096 makes a 160 MB state and a new log segment about
# every second on each member, which shows what writing snapshot files and segments costs)
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
TOTAL=${TOTAL:-20000}
VAL=${VAL:-256}
"$ROOT/scripts/setup.sh" >/dev/null
source "$ROOT/bench/lib.sh"

run() { # run THRESHOLD TRAILING NAME LABEL PORT_BASE
	TABBY_SNAPSHOT_THRESHOLD=$1 TABBY_SNAPSHOT_TRAILING=$2 bench_cluster "$3" "$5"
	local line snaps stalls
	line=$("$PUTBENCH" --address "$LEADER_API" --clients 1 --total "$TOTAL" --val-size "$VAL" \
		--trace "$BENCH_WORK/$3.trace")
	stalls=$(awk '$1 > 10 {n++} END {print n + 0}' "$BENCH_WORK/$3.trace")
	snaps=$(curl -s --unix-socket "$BENCH_DIR/s1.sock" http://x/metrics |
		awk '/^tabby_raft_snapshots_total/{print $2}')
	printf "%-28s %s over10ms=%s snapshots=%s\n" "$4 ($1/$2):" "$(sed 's/RESULT tabby //' <<<"$line")" \
		"$stalls" "$snaps"
	bench_stop
}
run 1024 128 lib "library default" 27880
run 16384 0 tab "tabby default" 27900
