#!/usr/bin/env bash
# bench/ipam.sh: IPAM assignments on a three-member Tabby cluster on this machine, through the
# public API (POST /v1/ipam/assign, one IPv4 address per request, each with its own handle),
# beside etcd 3.4's raw put rate at the same concurrency measured in the same run with etcd's own
# benchmark tool (../shared/tools/etcd-bench.sh). Calico's IPAM needs at least two
# compare-and-swap writes to etcd per assignment (block, handle), so raw puts are a generous
# anchor. Clients are spread over the three members, each assigning for its own member's node, as
# the CNI plugin on each host would.
#
# Then: the time and memory to fill a /16 pool completely (65,536 addresses) through the three
# hosts, 64 clients, until the pool is exhausted; `tabby ipam check` must be clean afterwards.
#
# Both sides run ROUNDS times, alternately (tabby, etcd, tabby, ...); each prints the round with
# its median rate (bench/lib.sh says why).
#
# Env: CLIENTS="1 16 64"  TOTAL=20000  ROUNDS=3  SKIP_ETCD=1 (Tabby only)  SKIP_FILL=1
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
TOOLS=${TOOLS:-$ROOT/../shared/tools}
CLIENTS=${CLIENTS:-"1 16 64"}
TOTAL=${TOTAL:-20000}
ROUNDS=${ROUNDS:-3}
VAL=256 # the anchor's puts carry 256-byte values, as in bench/run.sh
"$ROOT/scripts/setup.sh" >/dev/null
source "$ROOT/bench/lib.sh"

api() { # api SOCKET METHOD PATH [BODY]
	curl -sS --fail-with-body --unix-socket "$1" -X "$2" "http://tabby$3" \
		${4:+-H 'Content-Type: application/json' -d "$4"}
}

assign_args() { # the three members' API addresses, each with its own node name
	local name=$1 base=$2 i
	for i in 1 2 3; do
		printf -- '--address 127.0.0.1:%d --node %s%d ' "$((base + 1 + 2 * i))" "$name" "$i"
	done
}

declare -A T_RPS T_P50 T_P99 E_RPS E_P50 E_P99
for ((round = 1; round <= ROUNDS; round++)); do
	# A fresh cluster per round, as etcd-bench.sh starts a fresh etcd cluster; a large pool so
	# that no run comes near exhaustion.
	base=$((27700 + 40 * round))
	bench_cluster "a$round" "$base" --no-default-pools
	api "$BENCH_DIR/s1.sock" POST /v1/ippools '{"pools": [{"cidr": "10.0.0.0/8"}]}' >/dev/null
	echo "round $round of $ROUNDS: tabby, 3 members on 127.0.0.1, pool 10.0.0.0/8 (/26 blocks)"
	for c in $CLIENTS; do
		# shellcheck disable=SC2046 # the addresses and nodes are words
		line=$("$PUTBENCH" --mode assign $(assign_args "a$round" "$base") --clients "$c" --total "$TOTAL")
		echo "$line"
		T_RPS[$c]=$(sed -n 's/.* assigns\/s=\([0-9.]*\).*/\1/p' <<<"$line")
		T_P50[$c]=$(sed -n 's/.* p50=\([0-9.]*\)ms.*/\1/p' <<<"$line")
		T_P99[$c]=$(sed -n 's/.* p99=\([0-9.]*\)ms.*/\1/p' <<<"$line")
	done
	"$TABBY" ipam check --socket "$BENCH_DIR/s1.sock" >"$BENCH_WORK/check-a.out" 2>&1 ||
		{ echo "ipam check after the runs:"; cat "$BENCH_WORK/check-a.out"; exit 1; }
	bench_stop
	bench_etcd
	bench_round_keep
done
bench_round_median
bench_table "tabby assigns/s  p50  p99"

[ "${SKIP_FILL:-0}" = 1 ] && exit 0
echo
bench_cluster f 27980 --no-default-pools
api "$BENCH_DIR/s1.sock" POST /v1/ippools '{"pools": [{"cidr": "10.64.0.0/16"}]}' >/dev/null
t0=$(date +%s.%N)
# shellcheck disable=SC2046
line=$("$PUTBENCH" --mode assign $(assign_args f 27980) --clients 64 --total 70000 --until-full)
t1=$(date +%s.%N)
echo "$line"
assigned=$(sed -n 's/.* assigns=\([0-9]*\).*/\1/p' <<<"$line")
rss=""
for p in "${BENCH_PIDS[@]}"; do
	rss+="$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$p/status")MiB "
done
state=$(du -sm "$BENCH_DIR"/d1/state 2>/dev/null | cut -f1)
raft=$(du -sm "$BENCH_DIR"/d1/raft 2>/dev/null | cut -f1)
check=ok
"$TABBY" ipam check --socket "$BENCH_DIR/s1.sock" >"$BENCH_WORK/check-f.out" 2>&1 || check="FAILED: $(head -3 "$BENCH_WORK/check-f.out")"
printf "fill 10.64.0.0/16 through 3 hosts, 64 clients: %s of 65536 assigned in %.1f s; peak RSS per agent %s; LMDB %s MiB, raft log %s MiB on member 1; ipam check %s\n" \
	"$assigned" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" "$rss" "$state" "$raft" "$check"
[ "$assigned" = 65536 ] && [ "$check" = ok ]
