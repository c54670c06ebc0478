#!/usr/bin/env bash
# bench/policy.sh: the policy figures of issue 4 on this machine, in a private network namespace
# (bench/policybench.c says what each figure is): compile and load time of the ruleset for 1,000
# policies and 10,000 endpoints cluster-wide with 200 on this host; the time from a changed
# policy, a new local endpoint and a new remote endpoint reaching the agent to the kernel having
# it (p50, p90, p95, p99, max over CHANGES changes each), beside the goal of 10 ms and Felix's
# quoted p90 of about 1.7 s; selector evaluations per second; peak RSS.
#
# Env: POLICIES=1000 ENDPOINTS=10000 LOCAL=200 CHANGES=200 EVALS=5000000
#      BUILD_DIR=dir  a configured release build tree to use (built here) instead of build/
#                     (which scripts/setup.sh builds)
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
if [ -n "${BUILD_DIR:-}" ]; then
	ninja -C "$BUILD_DIR" bench/policybench >/dev/null
else
	"$ROOT/scripts/setup.sh" >/dev/null
	BUILD_DIR=$ROOT/build
fi
args=(--policies "${POLICIES:-1000}" --endpoints "${ENDPOINTS:-10000}" --local "${LOCAL:-200}"
	--changes "${CHANGES:-200}" --evals "${EVALS:-5000000}")
if [ "$(id -u)" != 0 ]; then
	echo "policy.sh: not root, so no kernel loads (they need a private network namespace)"
	exec "$BUILD_DIR/bench/policybench" "${args[@]}" --no-kernel
fi
echo "policybench in a private network namespace (table inet tabby there)"
exec unshare --net "$BUILD_DIR/bench/policybench" "${args[@]}"
