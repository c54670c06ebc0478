#!/usr/bin/env bash
# bench/idle.sh: the latency of a write that arrives after the cluster was idle, as a container
# start on a quiet host does. Ten times: wait 1.5 s (longer than an election timeout), then one
# PUT through the leader of a three-member cluster. Prints each latency and the median. Before
# raft patch 0003 the followers dropped out of pipeline mode while idle and such a write waited
# for the next heartbeat: 40-90 ms.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
"$ROOT/scripts/setup.sh" >/dev/null
TABBY=$ROOT/build/tabby
WORK=$(mktemp -d /tmp/tabby-idlebench.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
start() {
	local i=$1
	shift
	"$TABBY" agent --name "i$i" --data-dir "$WORK/d$i" --socket "$WORK/s$i.sock" \
		--peer-address "127.0.0.1:$((27920 + 2 * i))" --api-address "127.0.0.1:$((27921 + 2 * i))" \
		"$@" >>"$WORK/agent$i.log" 2>&1 &
	PIDS+=($!)
	disown $!
	for _ in $(seq 1 100); do [ -S "$WORK/s$i.sock" ] && return 0; sleep 0.1; done
}
start 1 --bootstrap
for _ in $(seq 1 100); do [ -s "$WORK/d1/join-token" ] && break; sleep 0.1; done
for i in 2 3; do start "$i" --join 127.0.0.1:27923 --token "$(cat "$WORK/d1/join-token")"; done
for _ in $(seq 1 300); do
	"$TABBY" cluster status -o json --socket "$WORK/s1.sock" 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["leader"]=="i1" and len(d["members"])==3 and all(m["healthy"] and m["role"]=="voter" for m in d["members"]) else 1)' 2>/dev/null && break
	sleep 0.1
done
lat=()
for r in $(seq 1 10); do
	sleep 1.5
	line=$("$ROOT/build/bench/putbench" --address 127.0.0.1:27923 --clients 1 --total 1)
	lat+=("$(sed -n 's/.* p50=\([0-9.]*\)ms.*/\1/p' <<<"$line")")
done
printf 'write after 1.5 s idle (ms): %s\n' "${lat[*]}"
printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.2f ms, max %.2f ms\n", a[int((NR+1)/2)], a[NR]}'
