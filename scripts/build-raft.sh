#!/usr/bin/env bash
# build-raft.sh PREFIX
#
# Builds libraft from Debian's own source package (raft 0.22.1-1, trixie) into
# PREFIX as a static library with the in-memory test fixture and without lz4,
# then applies deps/raft-patches/*.patch (in name order) on top of Debian's
# patches. Tabby links this build instead of bookworm's libraft 0.15.0, which
# commits entries from earlier terms by counting replicas (see docs/raft.md).
#
# The source is fetched with apt's own machinery (scripts/lib-debsrc.sh), using a
# private apt state directory so the system's apt configuration and lists are
# left untouched.
#
# Cached: PREFIX/.stamp holds a hash of the pinned version, the patches and this
# script; when it matches, nothing is done.
#
# Env: NO_APT_INSTALL=1   fail instead of installing missing build packages
#      RAFT_JOBS=N        parallel make jobs (default 2)
# Result: PREFIX/lib/libraft.a, PREFIX/include/raft.h, PREFIX/include/raft/,
#         PREFIX/lib/pkgconfig/raft.pc
set -euo pipefail

RAFT_SRC_VERSION=0.22.1-1
RAFT_UPSTREAM_VERSION=${RAFT_SRC_VERSION%-*}
RAFT_SUITE=trixie
BUILD_PACKAGES=(dpkg-dev autoconf automake libtool pkg-config libuv1-dev make gcc patch)

die() {
	echo "build-raft.sh: $*" >&2
	exit 1
}

source "$(dirname "$(readlink -f "$0")")/lib-debsrc.sh"
debsrc_start "$@" # SCRIPT, ROOT, PREFIX
PATCH_DIR=$ROOT/deps/raft-patches

patches=()
if [ -d "$PATCH_DIR" ]; then
	while IFS= read -r -d '' p; do
		patches+=("$p")
	done < <(find "$PATCH_DIR" -maxdepth 1 -type f -name '*.patch' -print0 | sort -z)
fi

# The stamp covers everything that determines the result, so editing a patch or
# this script triggers a rebuild.
stamp=$({
	echo "raft $RAFT_SRC_VERSION $RAFT_SUITE"
	cat "$SCRIPT" "$ROOT/scripts/lib-debsrc.sh"
	for p in ${patches[@]+"${patches[@]}"}; do
		echo "patch $(basename "$p")"
		cat "$p"
	done
} | sha256sum | cut -d' ' -f1)

if debsrc_cached "$PREFIX" "$stamp" lib/libraft.a lib/pkgconfig/raft.pc; then
	echo "raft $RAFT_SRC_VERSION already built in $PREFIX"
	exit 0
fi

debsrc_need "${BUILD_PACKAGES[@]}" || die "the build packages are missing"

TMP=$(mktemp -d /tmp/build-raft.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

SRC=$TMP/raft-$RAFT_UPSTREAM_VERSION
debsrc_unpack "$RAFT_SUITE" "$TMP" raft "$RAFT_SRC_VERSION" "$SRC" ||
	die "cannot fetch and unpack Debian's raft $RAFT_SRC_VERSION"

for p in ${patches[@]+"${patches[@]}"}; do
	echo "applying $(basename "$p")"
	patch -d "$SRC" -p1 --forward --batch <"$p" || die "patch $p does not apply"
done

echo "building raft $RAFT_SRC_VERSION"
# Static only, so the binary does not depend on a libraft soname that would
# clash with bookworm's libraft2; --with-pic keeps it linkable into shared
# objects and PIE executables. The commands are chained with && because errexit
# does not apply inside a subshell that is the left side of ||.
(cd "$SRC" && autoreconf -i &&
	./configure --prefix="$PREFIX" --disable-shared --enable-static --with-pic \
		--enable-uv --enable-fixture --without-lz4 &&
	make -j"${RAFT_JOBS:-2}") >"$TMP/build.log" 2>&1 || {
	tail -n 60 "$TMP/build.log" >&2
	die "building raft failed (last lines of the build log above)"
}

# Replace a previous build of ours; the check above guarantees PREFIX holds
# nothing else.
find "$PREFIX" -mindepth 1 -delete
(cd "$SRC" && make install) >"$TMP/install.log" 2>&1 || {
	tail -n 30 "$TMP/install.log" >&2
	die "make install into $PREFIX failed"
}
rm -f "$PREFIX/lib/libraft.la"
echo "$stamp" >"$PREFIX/.stamp"
echo "raft $RAFT_SRC_VERSION installed in $PREFIX"
