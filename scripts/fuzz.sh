#!/usr/bin/env bash
# fuzz.sh [SECONDS]: build the libFuzzer targets with clang (build-fuzz/) and run each one for
# SECONDS (default 60) on its seed corpus in fuzz/corpus/<name>/. New inputs go to
# build-fuzz/corpus-<name>/; crashes are written to build-fuzz/ and fail the run.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
SECS=${1:-60}
scripts/setup.sh >/dev/null
export PKG_CONFIG_PATH="$ROOT/.deps/raft/lib/pkgconfig"
[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false \
	--buildtype=debugoptimized >/dev/null
ninja -C build-fuzz fuzz/fuzz_http fuzz/fuzz_batch fuzz/fuzz_selector fuzz/fuzz_resource fuzz/fuzz_cni fuzz/fuzz_nftnl fuzz/fuzz_domain fuzz/fuzz_guard >/dev/null
for t in http batch selector resource cni nftnl domain guard; do
	mkdir -p "build-fuzz/corpus-$t"
	echo "fuzz_$t: ${SECS}s"
	(cd build-fuzz && ./fuzz/fuzz_$t -max_total_time="$SECS" -print_final_stats=1 \
		"corpus-$t" "$ROOT/fuzz/corpus/$t" 2>&1 | grep -E "stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY" || true)
	ls build-fuzz/crash-* >/dev/null 2>&1 && { echo "fuzz_$t found a crash"; exit 1; }
done
echo "no crashes"
