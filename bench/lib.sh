# Shared by the benchmarks: a Tabby cluster on 127.0.0.1 (three members unless BENCH_MEMBERS says
# otherwise), cleaned up on exit.
#
#   source bench/lib.sh
#   bench_cluster NAME BASEPORT [agent flags...]   # member i: peer BASE+2i, API BASE+1+2i
#   BENCH_MEMBERS=1 bench_cluster ...                # a cluster of one member (default 3)
#   ... "$LEADER_API" ...                           # member 1 bootstraps and leads
#   bench_stop                                      # kill the members (also done on exit)
#
# Environment variables set before bench_cluster (TABBY_SNAPSHOT_THRESHOLD, ...) reach the agents.
# TABBY_BIN runs another tabby binary (an A/B against an earlier build); BENCH_TMP puts the data
# directories elsewhere than /tmp (/dev/shm: the same path without the disk).
#
# The members run with --no-routes --no-policy: these benchmarks measure the store and IPAM, and
# the three members share this machine's own network namespace, where a dataplane would program
# this machine's routes and nftables for three hosts at once (and leave them behind).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TABBY=${TABBY_BIN:-$ROOT/build/tabby}
PUTBENCH=$ROOT/build/bench/putbench
BENCH_WORK=$(mktemp -d ${BENCH_TMP:-/tmp}/tabby-bench.XXXXXX)
BENCH_PIDS=()

bench_stop() {
	for p in "${BENCH_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	BENCH_PIDS=()
	# The members' LMDB maps leave up to hundreds of MB of dirty pages that the kernel writes
	# back within the next 30 s: the next configuration measured would pay for them.
	sync
}
trap 'bench_stop; [ "${KEEP:-0}" = 1 ] || rm -rf "$BENCH_WORK"' EXIT

bench_cluster() {
	local name=$1 base=$2 dir i n=${BENCH_MEMBERS:-3}
	shift 2
	dir=$BENCH_WORK/$name
	mkdir -p "$dir"
	for ((i = 1; i <= n; i++)); do
		local how=(--bootstrap)
		if [ "$i" != 1 ]; then
			for _ in $(seq 1 100); do [ -s "$dir/d1/join-token" ] && break; sleep 0.1; done
			how=(--join "127.0.0.1:$((base + 3))" --token "$(cat "$dir/d1/join-token")")
		fi
		"$TABBY" agent --name "$name$i" --data-dir "$dir/d$i" --socket "$dir/s$i.sock" \
			--peer-address "127.0.0.1:$((base + 2 * i))" \
			--api-address "127.0.0.1:$((base + 1 + 2 * i))" --no-routes --no-policy \
			"${how[@]}" "$@" \
			>>"$dir/agent$i.log" 2>&1 &
		BENCH_PIDS+=($!)
		disown $! # no "Killed" notices when the cluster is torn down
		for _ in $(seq 1 100); do [ -S "$dir/s$i.sock" ] && break; sleep 0.1; done
	done
	for _ in $(seq 1 300); do
		"$TABBY" cluster status -o json --socket "$dir/s1.sock" 2>/dev/null |
			python3 -c 'import json, sys
d = json.load(sys.stdin)
ok = d["leader"] == sys.argv[1] + "1" and len(d["members"]) == int(sys.argv[2])
sys.exit(0 if ok and all(m["healthy"] and m["role"] == "voter" for m in d["members"]) else 1)' "$name" "$n" &&
			break
		sleep 0.1
	done
	LEADER_API=127.0.0.1:$((base + 3))
	BENCH_DIR=$dir
}

# bench_etcd: etcd 3.4's own benchmark tool (../shared/tools/etcd-bench.sh) on a three-member etcd
# cluster at each of $CLIENTS, $TOTAL puts of $VAL bytes; fills the associative arrays E_RPS,
# E_P50, E_P99 (declared by the caller) by client count. Skipped with SKIP_ETCD=1.
bench_etcd() {
	[ "${SKIP_ETCD:-0}" = 1 ] && return 0
	E_RPS=() E_P50=() E_P99=() # a run that fails leaves no figure of an earlier one
	if ! command -v etcd >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq etcd-server etcd-client >/dev/null
	fi
	CLIENTS="$CLIENTS" TOTAL=$TOTAL VAL=$VAL NODES=3 bash "${TOOLS:-$ROOT/../shared/tools}/etcd-bench.sh" \
		>"$BENCH_WORK/etcd.out" 2>&1 || true
	grep -E "^RESULT|^etcd:|fsync" "$BENCH_WORK/etcd.out" || tail -20 "$BENCH_WORK/etcd.out"
	local line c
	while read -r line; do
		c=$(sed -n 's/.* clients=\([0-9]*\).*/\1/p' <<<"$line")
		E_RPS[$c]=$(sed -n 's/.* puts\/s=\([0-9.]*\).*/\1/p' <<<"$line")
		E_P50[$c]=$(sed -n 's/.* p50=\([0-9.]*\)ms.*/\1/p' <<<"$line")
		E_P99[$c]=$(sed -n 's/.* p99=\([0-9.]*\)ms.*/\1/p' <<<"$line")
	done < <(grep "^RESULT etcd nodes=3" "$BENCH_WORK/etcd.out")
}

# Rounds: this machine's speed drifts by tens of percent over minutes (other tenants share its
# disk and CPUs), so a benchmark alternates the two sides ROUNDS times and reports, per side and
# client count, the round with the median rate: a drift then moves both sides alike instead of
# deciding the ratio. bench_round_keep remembers a round's T_* and E_* figures; bench_round_median
# sets T_* and E_* to each side's median round.
declare -A BR_T BR_E
bench_round_keep() {
	local c
	for c in $CLIENTS; do
		BR_T[$c]+="${T_RPS[$c]:-0} ${T_P50[$c]:-?} ${T_P99[$c]:-?};"
		[ -z "${E_RPS[$c]:-}" ] || BR_E[$c]+="${E_RPS[$c]} ${E_P50[$c]} ${E_P99[$c]};"
	done
}
bench_median_of() { # "rate p50 p99;..." -> the entry with the median rate (the lower one of two)
	tr ';' '\n' <<<"$1" | awk 'NF' | sort -n -k1,1 | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}'
}
bench_round_median() {
	local c
	for c in $CLIENTS; do
		read -r "T_RPS[$c]" "T_P50[$c]" "T_P99[$c]" <<<"$(bench_median_of "${BR_T[$c]}")"
		[ -z "${BR_E[$c]:-}" ] ||
			read -r "E_RPS[$c]" "E_P50[$c]" "E_P99[$c]" <<<"$(bench_median_of "${BR_E[$c]}")"
	done
}

# bench_table TABBY_HEADER: Tabby's figures (T_RPS, T_P50, T_P99) beside etcd's, one line per
# client count, with the ratio of the rates.
bench_table() {
	local c ratio
	echo
	printf "%-8s | %-32s | %-30s | %s\n" clients "$1" "etcd 3.4 puts/s  p50  p99" "ratio"
	for c in $CLIENTS; do
		ratio=$(awk -v a="${T_RPS[$c]:-0}" -v b="${E_RPS[$c]:-0}" 'BEGIN{ if (b > 0) printf "%.2fx", a / b; else print "n/a" }')
		printf "%-8s | %8s/s %7sms %7sms   | %8s/s %7sms %7sms | %s\n" "$c" "${T_RPS[$c]:-?}" "${T_P50[$c]:-?}" \
			"${T_P99[$c]:-?}" "${E_RPS[$c]:-n/a}" "${E_P50[$c]:-}" "${E_P99[$c]:-}" "$ratio"
	done
	[ "${ROUNDS:-1}" -le 1 ] || echo "(each side: its round with the median rate of $ROUNDS; the sides ran alternately)"
}
