# Shared by the benchmarks: a three-member Tabby cluster on 127.0.0.1, cleaned up on exit.
#
#   source bench/lib.sh
#   bench_cluster NAME BASEPORT [agent flags...]   # member i: peer BASE+2i, API BASE+1+2i
#   ... "$LEADER_API" ...                           # member 1 bootstraps and leads
#   bench_stop                                      # kill the members (also done on exit)
#
# Environment variables set before bench_cluster (TABBY_SNAPSHOT_THRESHOLD, ...) reach the agents.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TABBY=$ROOT/build/tabby
PUTBENCH=$ROOT/build/bench/putbench
BENCH_WORK=$(mktemp -d /tmp/tabby-bench.XXXXXX)
BENCH_PIDS=()

bench_stop() {
	for p in "${BENCH_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	BENCH_PIDS=()
}
trap 'bench_stop; [ "${KEEP:-0}" = 1 ] || rm -rf "$BENCH_WORK"' EXIT

bench_cluster() {
	local name=$1 base=$2 dir i
	shift 2
	dir=$BENCH_WORK/$name
	mkdir -p "$dir"
	for i in 1 2 3; do
		local how=(--bootstrap)
		if [ "$i" != 1 ]; then
			for _ in $(seq 1 100); do [ -s "$dir/d1/join-token" ] && break; sleep 0.1; done
			how=(--join "127.0.0.1:$((base + 3))" --token "$(cat "$dir/d1/join-token")")
		fi
		"$TABBY" agent --name "$name$i" --data-dir "$dir/d$i" --socket "$dir/s$i.sock" \
			--peer-address "127.0.0.1:$((base + 2 * i))" \
			--api-address "127.0.0.1:$((base + 1 + 2 * i))" "${how[@]}" "$@" \
			>>"$dir/agent$i.log" 2>&1 &
		BENCH_PIDS+=($!)
		disown $! # no "Killed" notices when the cluster is torn down
		for _ in $(seq 1 100); do [ -S "$dir/s$i.sock" ] && break; sleep 0.1; done
	done
	for _ in $(seq 1 300); do
		"$TABBY" cluster status -o json --socket "$dir/s1.sock" 2>/dev/null |
			python3 -c 'import json, sys
d = json.load(sys.stdin)
ok = d["leader"] == sys.argv[1] + "1" and len(d["members"]) == 3
sys.exit(0 if ok and all(m["healthy"] and m["role"] == "voter" for m in d["members"]) else 1)' "$name" &&
			break
		sleep 0.1
	done
	LEADER_API=127.0.0.1:$((base + 3))
	BENCH_DIR=$dir
}
