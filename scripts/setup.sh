#!/usr/bin/env bash
# setup.sh: install the Debian packages Tabby needs, build raft from Debian's source package
# (scripts/build-raft.sh, cached in .deps/raft) and the CNI plugin's two libraries for musl
# (scripts/build-musl-deps.sh, cached in .deps/musl), and configure + build two trees:
#   build/       optimized, for the agent, the cluster tests, the demo and the benchmarks
#   build-asan/  with AddressSanitizer and UndefinedBehaviorSanitizer, for the unit tests
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"

PACKAGES=(meson ninja-build pkg-config gcc clang make libuv1-dev liblmdb-dev libjansson-dev
	libnl-3-dev libnl-route-3-dev libnftables-dev libnftnl-dev libmnl-dev libyaml-dev libhttp-parser-dev
	libcmocka-dev nettle-dev nftables iproute2 curl ca-certificates dpkg-dev autoconf automake libtool
	patch debian-archive-keyring socat iputils-ping
	libnl-nf-3-dev containernetworking-plugins conntrack golang-go golang-github-appc-cni-dev
	vagrant vagrant-libvirt musl-tools)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/build-raft.sh "$ROOT/.deps/raft"
# jansson and http-parser for musl, which the CNI plugin links (cni/meson.build says why).
scripts/build-musl-deps.sh "$ROOT/.deps/musl"

# cnitool, the reference CNI runtime the CNI tests and bench/cni.sh drive the plugin with: built
# once, offline from Debian's packaged sources, by the shared tool beside the repository.
if [ ! -x .deps/bin/cnitool ]; then
	if [ -x "$ROOT/../shared/tools/build-cnitool.sh" ]; then
		if ! out=$("$ROOT/../shared/tools/build-cnitool.sh" "$ROOT/.deps/bin" 2>&1); then
			echo "$out" >&2
			echo "setup: building cnitool failed; the CNI tests will fail" >&2
		fi
	else
		echo "setup: no ../shared/tools/build-cnitool.sh, so no cnitool: the CNI tests will fail" >&2
	fi
fi
export PKG_CONFIG_PATH="$ROOT/.deps/raft/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

if [ ! -f build/build.ninja ]; then
	meson setup build --buildtype=release -Db_ndebug=false -Dcni_libc=musl >/dev/null
fi
if [ ! -f build-asan/build.ninja ]; then
	meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false >/dev/null
fi
# Quiet when all is well; the compiler's words when it is not.
for dir in build build-asan; do
	if ! out=$(ninja -C "$dir" 2>&1); then
		echo "$out" | grep -v '^\[' >&2
		echo "setup: the build in $dir failed" >&2
		exit 1
	fi
done
echo "setup: built build/tabby and build-asan/"
