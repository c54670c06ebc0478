#!/usr/bin/env bash
# build-musl-deps.sh PREFIX
#
# Builds the two libraries the CNI plugin links, jansson and http-parser, from Debian's own source
# packages (the bookworm versions whose -dev packages the rest of Tabby compiles against) with
# musl-gcc, as static archives in PREFIX. The plugin is then linked statically against musl instead
# of glibc (cni/meson.build, docs/cni.md say why: a runtime starts the plugin for every call, and
# glibc's start-up asks the CPU about its caches and features with some thirty CPUID instructions,
# each of which leaves a virtual machine for the hypervisor; musl asks nothing).
#
# The sources are fetched with apt's own machinery (scripts/lib-debsrc.sh) with a private apt state
# directory, so the system's apt configuration and lists are left untouched.
#
# Cached: PREFIX/.stamp holds a hash of the pinned versions and the scripts; when it matches,
# nothing is done.
#
# Env: NO_APT_INSTALL=1  fail instead of installing missing build packages
# Result: PREFIX/lib/libjansson.a, PREFIX/lib/libhttp_parser.a, PREFIX/include/jansson.h,
#         PREFIX/include/jansson_config.h, PREFIX/include/http_parser.h
set -euo pipefail

SUITE=bookworm
JANSSON_VERSION=2.14-2
HTTP_PARSER_VERSION=2.9.4-5
BUILD_PACKAGES=(musl-tools dpkg-dev autoconf automake libtool make patch)

die() {
	echo "build-musl-deps.sh: $*" >&2
	exit 1
}

source "$(dirname "$(readlink -f "$0")")/lib-debsrc.sh"
debsrc_start "$@" # SCRIPT, ROOT, PREFIX

stamp=$({
	echo "jansson $JANSSON_VERSION http-parser $HTTP_PARSER_VERSION $SUITE"
	cat "$SCRIPT" "$ROOT/scripts/lib-debsrc.sh"
} | sha256sum | cut -d' ' -f1)
if debsrc_cached "$PREFIX" "$stamp" lib/libjansson.a lib/libhttp_parser.a; then
	echo "jansson and http-parser for musl already built in $PREFIX"
	exit 0
fi

debsrc_need "${BUILD_PACKAGES[@]}" || die "the build packages are missing"
command -v musl-gcc >/dev/null || die "musl-gcc not found (package musl-tools)"

TMP=$(mktemp -d /tmp/build-musl-deps.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
debsrc_unpack "$SUITE" "$TMP" jansson "$JANSSON_VERSION" "$TMP/jansson" ||
	die "cannot fetch and unpack Debian's jansson $JANSSON_VERSION"
debsrc_unpack "$SUITE" "$TMP" http-parser "$HTTP_PARSER_VERSION" "$TMP/http-parser" ||
	die "cannot fetch and unpack Debian's http-parser $HTTP_PARSER_VERSION"

OUT=$TMP/out
mkdir -p "$OUT/lib" "$OUT/include"
# -O2 and the stack protector, as Debian builds them (and HTTP_PARSER_STRICT=0, as Debian's
# library target does); no PIC, since the plugin is linked as a plain static executable. Chained with && because errexit does not apply inside a subshell on
# the left of ||.
CFLAGS="-O2 -fstack-protector-strong"
echo "building jansson $JANSSON_VERSION with musl"
(cd "$TMP/jansson" && autoreconf -i &&
	./configure CC=musl-gcc CFLAGS="$CFLAGS" --prefix="$OUT" --disable-shared --enable-static &&
	make -j2 && make install) >"$TMP/jansson.log" 2>&1 || {
	tail -n 40 "$TMP/jansson.log" >&2
	die "building jansson failed (last lines of its log above)"
}
echo "building http-parser $HTTP_PARSER_VERSION with musl"
(cd "$TMP/http-parser" &&
	musl-gcc $CFLAGS -DHTTP_PARSER_STRICT=0 -c http_parser.c -o http_parser.o &&
	ar rcs "$OUT/lib/libhttp_parser.a" http_parser.o &&
	cp http_parser.h "$OUT/include/") >"$TMP/http-parser.log" 2>&1 || {
	cat "$TMP/http-parser.log" >&2
	die "building http-parser failed"
}

# Replace a previous build of ours; the check above guarantees PREFIX holds nothing else.
find "$PREFIX" -mindepth 1 -delete
mkdir -p "$PREFIX/lib" "$PREFIX/include"
cp "$OUT/lib/libjansson.a" "$OUT/lib/libhttp_parser.a" "$PREFIX/lib/"
cp "$OUT/include/jansson.h" "$OUT/include/jansson_config.h" "$OUT/include/http_parser.h" \
	"$PREFIX/include/"
echo "$stamp" >"$PREFIX/.stamp"
echo "jansson $JANSSON_VERSION and http-parser $HTTP_PARSER_VERSION for musl installed in $PREFIX"
