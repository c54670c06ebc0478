# lib-debsrc.sh: fetch Debian source packages without touching the system's apt configuration.
# Sourced by build-raft.sh and build-musl-deps.sh.
#
#   debsrc_start "$@"
#   debsrc_unpack SUITE WORKDIR PKG VERSION DEST
#
# Downloads PKG=VERSION from SUITE's Sources index into WORKDIR/apt and unpacks it into DEST with
# dpkg-source, which also applies Debian's own patch series. apt runs with a private state
# directory (lists, cache, source list) under WORKDIR: it checks the signed Sources index against
# the Debian archive keyring and the downloaded files against the checksums in that index, exactly
# as `apt-get source` does, but the host's sources.list, lists and cache stay as they were.
# Returns non-zero with a message on standard error when any step fails.

# debsrc_start "$@": the common start of a build script called as `SCRIPT PREFIX`: checks that
# there is exactly one argument, creates PREFIX if needed and sets SCRIPT (this script's absolute
# path), ROOT (the source tree) and PREFIX (absolute). Exits the script with status 1 and a message
# naming it otherwise.
debsrc_start() {
	local me
	me=$(basename "$0")
	if [ $# -ne 1 ]; then
		echo "$me: usage: $0 PREFIX" >&2
		exit 1
	fi
	SCRIPT=$(readlink -f "$0")
	ROOT=$(cd "$(dirname "$SCRIPT")/.." && pwd)
	if ! mkdir -p "$1"; then
		echo "$me: cannot create $1" >&2
		exit 1
	fi
	PREFIX=$(cd "$1" && pwd)
}

debsrc_unpack() {
	local suite=$1 work=$2 pkg=$3 version=$4 dest=$5
	local a=$work/apt
	[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || {
		echo "debsrc: /usr/share/keyrings/debian-archive-keyring.gpg missing (package debian-archive-keyring)" >&2
		return 1
	}
	mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/src" || return 1
	cat >"$a/src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	local apto=(-o Dir::Etc::SourceList="$a/src.sources" -o Dir::Etc::SourceParts=/nonexistent
		-o Dir::State::Lists="$a/lists" -o Dir::Cache="$a/cache"
		-o APT::Sandbox::User=root -o Acquire::Languages=none)
	# One index download per WORKDIR, however many packages come from it.
	if [ ! -f "$a/.updated-$suite" ]; then
		apt-get "${apto[@]}" -qq update || {
			echo "debsrc: apt-get update of the $suite Sources index failed" >&2
			return 1
		}
		touch "$a/.updated-$suite"
	fi
	echo "fetching Debian source package $pkg=$version ($suite)"
	(cd "$a/src" && apt-get "${apto[@]}" -qq source --download-only "$pkg=$version") || {
		echo "debsrc: apt-get source $pkg=$version failed" >&2
		return 1
	}
	dpkg-source -x "$a/src/${pkg}_$version.dsc" "$dest" >"$work/dpkg-source-$pkg.log" 2>&1 || {
		cat "$work/dpkg-source-$pkg.log" >&2
		echo "debsrc: dpkg-source -x ${pkg}_$version.dsc failed" >&2
		return 1
	}
}

#   debsrc_need PKG...
#
# Installs those of the Debian packages PKG that are missing (NO_APT_INSTALL=1: fails instead).
debsrc_need() {
	local missing=() pkg
	for pkg in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
			missing+=("$pkg")
		fi
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	if [ "${NO_APT_INSTALL:-0}" = 1 ]; then
		echo "debsrc: missing build packages: ${missing[*]}" >&2
		return 1
	fi
	echo "installing build packages: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
		--no-install-recommends "${missing[@]}" || {
		echo "debsrc: apt-get install ${missing[*]} failed" >&2
		return 1
	}
}

#   debsrc_cached PREFIX STAMP FILE...
#
# Whether PREFIX holds a finished build with this STAMP (a hash of everything that determines the
# result, kept in PREFIX/.stamp) and all of FILE... (paths under PREFIX): 0 when it does, 1 when it
# must be built. When PREFIX holds something else, which is never overwritten, it says so and exits
# the script with status 1.
debsrc_cached() {
	local prefix=$1 stamp=$2 f
	shift 2
	if [ -f "$prefix/.stamp" ] && [ "$(cat "$prefix/.stamp")" = "$stamp" ]; then
		for f in "$@"; do
			[ -f "$prefix/$f" ] || return 1
		done
		return 0
	fi
	if [ -n "$(ls -A "$prefix")" ] && [ ! -f "$prefix/.stamp" ]; then
		echo "debsrc: $prefix is not empty and holds no previous build (.stamp); refusing to overwrite it" >&2
		exit 1
	fi
	return 1
}
