#!/usr/bin/env bash
# bench/snapshot.sh: what snapshot tuning does to durable writes. One client writes 20,000
# 256-byte values through the leader of a three-member cluster, twice: with raft's library
# defaults (a snapshot every 1,024 entries, 128 kept) and with Tabby's (16,384 and 8,192).
# Prints writes/s, p99 and the worst write of each, and how many snapshots the leader took.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
"$ROOT/scripts/setup.sh" >/dev/null
TABBY=$ROOT/build/tabby
TOTAL=${TOTAL:-20000}
WORK=$(mktemp -d /tmp/tabby-snapbench.XXXXXX)
PIDS=()
stop() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	PIDS=()
}
trap 'stop; rm -rf "$WORK"' EXIT

run() { # run THRESHOLD TRAILING LABEL PORT_BASE
	local dir=$WORK/${3// /-} threshold=$1 trailing=$2 base=$4
	start() { # start I [flags...]
		local i=$1
		shift
		TABBY_SNAPSHOT_THRESHOLD=$threshold TABBY_SNAPSHOT_TRAILING=$trailing "$TABBY" agent \
			--name "s$i" --data-dir "$dir/d$i" --socket "$dir/s$i.sock" \
			--peer-address "127.0.0.1:$((base + 2 * i))" \
			--api-address "127.0.0.1:$((base + 1 + 2 * i))" "$@" >>"$dir/agent$i.log" 2>&1 &
		PIDS+=($!)
		disown $!
		for _ in $(seq 1 100); do [ -S "$dir/s$i.sock" ] && return 0; sleep 0.1; done
	}
	mkdir -p "$dir"
	start 1 --bootstrap
	for _ in $(seq 1 100); do [ -s "$dir/d1/join-token" ] && break; sleep 0.1; done
	for i in 2 3; do start "$i" --join "127.0.0.1:$((base + 3))" --token "$(cat "$dir/d1/join-token")"; done
	for _ in $(seq 1 300); do
		"$TABBY" cluster status -o json --socket "$dir/s1.sock" 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["leader"]=="s1" and all(m["healthy"] and m["role"]=="voter" for m in d["members"]) and len(d["members"])==3 else 1)' 2>/dev/null && break
		sleep 0.1
	done
	line=$("$ROOT/build/bench/putbench" --address "127.0.0.1:$((base + 3))" --clients 1 --total "$TOTAL")
	snaps=$(curl -s --unix-socket "$dir/s1.sock" http://x/metrics | awk '/^tabby_raft_snapshots_total/{print $2}')
	printf "%-28s %s snapshots=%s\n" "$3 ($1/$2):" "$(sed 's/RESULT tabby //' <<<"$line")" "$snaps"
	stop
}
run 1024 128 "library default" 27880
run 16384 8192 "tabby default" 27900
