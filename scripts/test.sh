#!/usr/bin/env bash
# test.sh: every test. Installs what it needs (scripts/setup.sh), runs the unit tests under
# AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/), then the cluster tests against
# the optimized build (build/), and ends with the line "N passed, N failed".
# Unit test cases are counted one by one (cmocka's counts); each cluster test counts as one.
set -uo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
if [ "$(id -u)" != 0 ]; then
	echo "test.sh: run as root (it installs packages; cluster tests use network namespaces)" >&2
	echo "0 passed, 1 failed"
	exit 2
fi

if ! scripts/setup.sh; then
	echo "test.sh: setup failed"
	echo "0 passed, 1 failed"
	exit 1
fi

passed=0
failed=0

echo "== unit tests (ASan + UBSan)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
meson test -C build-asan --suite unit --print-errorlogs --no-rebuild >build-asan/unit.out 2>&1
unit_rc=$?
cat build-asan/unit.out | grep -E "^ *[0-9]+/[0-9]+ " || true
# Per executable: cmocka's "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)"; an executable
# that failed without a cmocka summary (a sanitizer abort) counts as one failure.
log=build-asan/meson-logs/testlog.txt
read -r p f < <(python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
passed = failed = 0
for block in re.split(r"\n(?===+ \d+/\d+ =+)", text):
    m = re.search(r"^test:\s+(\S+)", block, re.M)
    if not m:
        continue
    res = re.search(r"^result:\s+(.*)$", block, re.M)
    ok = res is not None and ("exit status 0" in res.group(1) or res.group(1).startswith("OK"))
    ps = sum(int(x) for x in re.findall(r"\[  PASSED  \] (\d+) test", block))
    fs = sum(int(x) for x in re.findall(r"\[  FAILED  \] (\d+) test", block))
    passed += ps
    failed += fs
    if not ok and fs == 0:
        failed += 1
print(passed, failed)
PY
)
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-1}))
if [ $unit_rc -ne 0 ]; then
	echo "unit tests failed; see build-asan/meson-logs/testlog.txt"
	grep -E "FAIL|ERROR|runtime error|AddressSanitizer" build-asan/unit.out | head -40
fi

echo "== cluster tests"
for t in cluster-tests/test_*.sh; do
	start=$SECONDS
	if timeout 600 bash "$t" >"build/$(basename "$t" .sh).log" 2>&1; then
		echo "PASS $t ($((SECONDS - start))s)"
		passed=$((passed + 1))
	else
		echo "FAIL $t ($((SECONDS - start))s)"
		tail -n 60 "build/$(basename "$t" .sh).log"
		failed=$((failed + 1))
	fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
