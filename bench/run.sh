#!/usr/bin/env bash
# bench/run.sh: durable writes on a three-member Tabby cluster on this machine, through the
# public API, beside etcd 3.4 measured in the same run with etcd's own benchmark tool
# (../shared/tools/etcd-bench.sh). 20,000 writes of 256-byte values at 1, 16 and 64 clients; all
# clients talk to the leader, as etcd's --target-leader does. Prints one line per configuration
# with writes/s, p50 and p99 for both and the ratio.
#
# Env: CLIENTS="1 16 64"  TOTAL=20000  VAL=256  SKIP_ETCD=1 (Tabby only)
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
TOOLS=${TOOLS:-$ROOT/../shared/tools}
CLIENTS=${CLIENTS:-"1 16 64"}
TOTAL=${TOTAL:-20000}
VAL=${VAL:-256}
"$ROOT/scripts/setup.sh" >/dev/null
source "$ROOT/bench/lib.sh"
bench_cluster b 27780
leader_api=$LEADER_API
echo "tabby: 3 members on 127.0.0.1, leader API $leader_api"

declare -A T_RPS T_P50 T_P99 E_RPS E_P50 E_P99
for c in $CLIENTS; do
	line=$("$PUTBENCH" --address "$leader_api" --clients "$c" --total "$TOTAL" --val-size "$VAL")
	echo "$line"
	T_RPS[$c]=$(sed -n 's/.* puts\/s=\([0-9.]*\).*/\1/p' <<<"$line")
	T_P50[$c]=$(sed -n 's/.* p50=\([0-9.]*\)ms.*/\1/p' <<<"$line")
	T_P99[$c]=$(sed -n 's/.* p99=\([0-9.]*\)ms.*/\1/p' <<<"$line")
done
bench_stop

if [ "${SKIP_ETCD:-0}" != 1 ]; then
	if ! command -v etcd >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq etcd-server etcd-client >/dev/null
	fi
	CLIENTS="$CLIENTS" TOTAL=$TOTAL VAL=$VAL NODES=3 bash "$TOOLS/etcd-bench.sh" >"$BENCH_WORK/etcd.out" 2>&1 || true
	grep -E "^RESULT|^etcd:|fsync" "$BENCH_WORK/etcd.out" || tail -20 "$BENCH_WORK/etcd.out"
	while read -r line; do
		c=$(sed -n 's/.* clients=\([0-9]*\).*/\1/p' <<<"$line")
		E_RPS[$c]=$(sed -n 's/.* puts\/s=\([0-9.]*\).*/\1/p' <<<"$line")
		E_P50[$c]=$(sed -n 's/.* p50=\([0-9.]*\)ms.*/\1/p' <<<"$line")
		E_P99[$c]=$(sed -n 's/.* p99=\([0-9.]*\)ms.*/\1/p' <<<"$line")
	done < <(grep "^RESULT etcd nodes=3" "$BENCH_WORK/etcd.out")
fi

echo
printf "%-8s | %-30s | %-30s | %s\n" clients "tabby writes/s  p50  p99" "etcd 3.4 writes/s  p50  p99" "ratio"
for c in $CLIENTS; do
	ratio=$(awk -v a="${T_RPS[$c]:-0}" -v b="${E_RPS[$c]:-0}" 'BEGIN{ if (b > 0) printf "%.2fx", a / b; else print "n/a" }')
	printf "%-8s | %8s/s %7sms %7sms | %8s/s %7sms %7sms | %s\n" "$c" "${T_RPS[$c]:-?}" "${T_P50[$c]:-?}" \
		"${T_P99[$c]:-?}" "${E_RPS[$c]:-n/a}" "${E_P50[$c]:-}" "${E_P99[$c]:-}" "$ratio"
done
