#!/usr/bin/env bash
# bench/idle.sh: the latency of a write that arrives after the cluster was idle, as a container
# start on a quiet host does. Ten times: wait 1.5 s (longer than an election timeout), then one
# PUT through the leader of a three-member cluster. Prints each latency and the median. Before
# raft patch 0003 the followers dropped out of pipeline mode while idle and such a write waited
# for the next heartbeat: 40-90 ms.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
"$ROOT/scripts/setup.sh" >/dev/null
source "$ROOT/bench/lib.sh"
bench_cluster idle 27920
lat=()
for _ in $(seq 1 10); do
	sleep 1.5
	line=$("$PUTBENCH" --address "$LEADER_API" --clients 1 --total 1)
	lat+=("$(sed -n 's/.* p50=\([0-9.]*\)ms.*/\1/p' <<<"$line")")
done
printf 'write after 1.5 s idle (ms): %s\n' "${lat[*]}"
printf '%s\n' "${lat[@]}" | sort -n |
	awk '{a[NR]=$1} END {printf "median %.2f ms, max %.2f ms\n", a[int((NR+1)/2)], a[NR]}'
