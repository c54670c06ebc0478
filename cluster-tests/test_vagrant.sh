#!/usr/bin/env bash
# The Vagrantfile that brings the three-host cluster up on virtual machines is valid (vagrant
# validate needs no virtualisation; bringing the VMs up does, which CI does not have).
set -euo pipefail
cd "$(dirname "$0")"
command -v vagrant >/dev/null || { echo "[test_vagrant] FAIL: vagrant is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
trap 'rm -rf .vagrant' EXIT
out=$(vagrant validate 2>&1) || { echo "$out" >&2; echo "[test_vagrant] FAIL: vagrant validate" >&2; exit 1; }
echo "$out"
for f in vagrant/provision.sh vagrant/smoke.sh cni-lib.sh; do
	bash -n "$f" || { echo "[test_vagrant] FAIL: $f does not parse" >&2; exit 1; }
done
echo "[test_vagrant] PASS"
