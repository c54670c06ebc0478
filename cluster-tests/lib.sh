# Shared helpers for the cluster tests: "hosts" are network namespaces joined by a bridge that
# lives in its own namespace, so nothing touches the machine's own network. Agents listen on
# their host's address; operators talk to them over each agent's unix socket.
#
# Every test sources this file, calls hosts_up N, and gets everything torn down on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TABBY=${TABBY:-$ROOT/build/tabby}
T=$(basename "$0" .sh)
ID=${TABBY_TEST_ID:-$$}
PFX="tt${ID: -5}"                # namespace/interface prefix, short for IFNAMSIZ
NET=10.213.$((ID % 200 + 20))   # a /24 inside our own namespaces
NET6=fd00:0:$(printf %x $((ID % 65536)))   # and a /64 beside it, for IPv6 between hosts
WORK=$(mktemp -d "/tmp/tabby-$T.XXXXXX")
SW="${PFX}sw"
declare -a PIDS=()
NHOSTS=0

log() { echo "[$T] $*" >&2; }
# matches ARGS...: grep -q ARGS on standard input, read to its end first. "producer | grep -q"
# fails at random under pipefail: grep exits at the first match, and a producer still writing
# (curl, tctl) then dies of SIGPIPE or a write error, which becomes the pipeline's status.
matches() {
	local input
	input=$(cat)
	grep -q "$@" <<<"$input"
}
fail() {
	log "FAIL: $*"
	for f in "$WORK"/agent*.log; do
		[ -f "$f" ] && { echo "--- $f (last 30 lines)" >&2; tail -n 30 "$f" >&2; }
	done
	# A small file system of the test's (small_fs): what filled it.
	local m
	for m in ${MOUNTS[@]+"${MOUNTS[@]}"}; do
		[ -d "$m" ] && mountpoint -q "$m" || continue
		echo "--- $m: $(df -k --output=used,avail "$m" | tail -1 | awk '{print $1 " KiB used, " $2 " KiB free"}'); its largest files (KiB):" >&2
		du -ak "$m" 2>/dev/null | sort -rn | head -12 >&2
	done
	exit 1
}

MOUNTS=() # file systems (and loop devices, /dev/loop*) to undo at exit, in the order made
cleanup() {
	# A frozen file system first: an agent blocked on it would not die of SIGKILL until it thaws.
	for m in ${MOUNTS[@]+"${MOUNTS[@]}"}; do fsfreeze -u "$m" 2>/dev/null || true; done
	for i in "${!PIDS[@]}"; do
		kill -9 "${PIDS[$i]}" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	# The agents' files kept the mounts busy until now. Last made, first undone: a file system
	# may live on a loop device whose file lives on another mount.
	for ((k = ${#MOUNTS[@]} - 1; k >= 0; k--)); do
		m=${MOUNTS[$k]}
		case $m in
		/dev/loop*) losetup -d "$m" 2>/dev/null || true ;;
		*)
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
			rm -f "$m.img"
			;;
		esac
	done
	for ((i = 1; i <= NHOSTS; i++)); do ip netns del "${PFX}h$i" 2>/dev/null || true; done
	ip netns del "$SW" 2>/dev/null || true
	[ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# small_fs DIR [SIZE]: a fresh ext4 file system of SIZE (truncate's units, default 256M) mounted at
# DIR (a data directory whose disk a test can fill or freeze); cleanup unmounts it.
small_fs() {
	mkdir -p "$1"
	truncate -s "${2:-256M}" "$1.img"
	mkfs.ext4 -q -F "$1.img" || fail "mkfs.ext4 $1.img"
	mount -o loop "$1.img" "$1" || fail "mount -o loop $1.img"
	MOUNTS+=("$1")
}

host_ns() { echo "${PFX}h$1"; }
host_ip() { echo "$NET.$(($1 + 10))"; }
host_ip6() { echo "$NET6::$(($1 + 10))"; }
sock() { echo "$WORK/agent$1.sock"; }

# hosts_up N: N hosts on one bridge.
hosts_up() {
	ip netns add "$SW"
	ip -n "$SW" link add br0 type bridge
	ip -n "$SW" link set br0 up
	for ((i = 1; i <= $1; i++)); do host_add "$i"; done
}

host_add() {
	local i=$1 ns
	ns=$(host_ns "$i")
	ip netns add "$ns"
	ip link add "${PFX}v$i" type veth peer name "${PFX}p$i"
	ip link set "${PFX}v$i" netns "$ns"
	ip link set "${PFX}p$i" netns "$SW"
	ip -n "$SW" link set "${PFX}p$i" master br0 up
	ip -n "$ns" link set "${PFX}v$i" name eth0
	ip -n "$ns" addr add "$(host_ip "$i")/24" dev eth0
	# nodad: usable at once, so an agent started next finds it as its node's IPv6 address.
	ip -n "$ns" addr add "$(host_ip6 "$i")/64" dev eth0 nodad
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	((NHOSTS < i)) && NHOSTS=$i
	return 0
}

# start_agent I [extra flags...]: start (or restart) agent I in host I.
start_agent() {
	local i=$1
	shift
	mkdir -p "$WORK/data$i"
	ip netns exec "$(host_ns "$i")" env TABBY_ELECTION_TIMEOUT="${ELECTION_MS:-400}" \
		"$TABBY" agent --name "agent$i" --data-dir "$WORK/data$i" --socket "$(sock "$i")" \
		--peer-address "$(host_ip "$i"):7790" --api-address "$(host_ip "$i"):7791" "$@" \
		>>"$WORK/agent$i.log" 2>&1 &
	PIDS[$i]=$!
	# An agent that exits instead fails the test at once, with its exit status and last log line
	# (CI shows only part of the logs dumped below).
	local end=$((SECONDS + 10)) rc=0
	until [ -S "$(sock "$i")" ]; do
		if agent_exited "$i"; then
			wait "${PIDS[$i]}" || rc=$?
			fail "agent$i exited with status $rc before its socket appeared: $(tail -n 1 "$WORK/agent$i.log")"
		fi
		((SECONDS < end)) || fail "timed out after 10s waiting for agent$i socket"
		sleep 0.1
	done
}

kill_agent() { kill -9 "${PIDS[$1]}" 2>/dev/null || true; wait "${PIDS[$1]}" 2>/dev/null || true; rm -f "$(sock "$1")"; }
stop_agent() { kill -TERM "${PIDS[$1]}" 2>/dev/null || true; wait "${PIDS[$1]}" 2>/dev/null || true; }

agent_exited() { ! kill -0 "${PIDS[$1]}" 2>/dev/null; }

token() { tr -d '\n' <"$WORK/data1/join-token"; }

# tctl I ARGS...: the CLI against agent I.
tctl() {
	local i=$1
	shift
	"$TABBY" "$@" --socket "$(sock "$i")"
}

# wait_for WHAT SECONDS CMD...: poll until CMD succeeds.
wait_for() {
	local what=$1 secs=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || fail "timed out after ${secs}s waiting for $what"
		sleep 0.1
	done
}

status_json() { tctl "$1" cluster status -o json 2>/dev/null; }

# leader_index I: the number of the agent that leads, as agent I sees it.
leader_index() {
	local l
	l=$(status_json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["leader"] or "")')
	[ -n "$l" ] && echo "${l#agent}"
}

has_leader() { [ -n "$(leader_index "$1")" ]; }

# members_healthy I N: agent I sees N members, all healthy, with the right number of voters
# (3, or 5 from 5 members on).
members_healthy() {
	status_json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin); n = int(sys.argv[1])
ms = d["members"]
ok = len(ms) == n and all(m["healthy"] for m in ms) and d["leader"]
voters = sum(m["role"] == "voter" for m in ms)
ok = ok and voters == (5 if n >= 5 else min(3, n)) and all(m["role"] in ("voter", "standby") for m in ms)
sys.exit(0 if ok else 1)' "$2"
}

# bootstrap_cluster N: agent 1 bootstraps, agents 2..N join; waits until all are healthy.
bootstrap_cluster() {
	local n=$1 i
	start_agent 1 --bootstrap
	wait_for "a leader" 15 has_leader 1
	wait_for "the join token" 10 test -s "$WORK/data1/join-token"
	for ((i = 2; i <= n; i++)); do
		start_agent "$i" --join "$(host_ip 1):7791" --token "$(token)"
	done
	wait_for "$n healthy members" 30 members_healthy 1 "$n"
}

hash_agrees() { tctl "$1" cluster hash >/dev/null 2>&1; }

# metric I NAME: agent I's value of the unlabelled metric NAME ("" when it has none).
metric() { curl -s --unix-socket "$(sock "$1")" http://x/metrics | awk -v m="$2" '$1 == m { print $2 }'; }

# compacted_cluster PREFIX: four hosts, three members with a small snapshot threshold, and 300
# keys PREFIX/0 to PREFIX/299 written through all three, so that agent1 has taken a snapshot
# and compacted its log: a fourth agent that joins needs an install.
compacted_cluster() {
	local k taken
	hosts_up 4
	export TABBY_SNAPSHOT_THRESHOLD=64 TABBY_SNAPSHOT_TRAILING=16
	bootstrap_cluster 3
	for ((k = 0; k < 300; k++)); do
		tctl $((k % 3 + 1)) store put "$1/$k" "v$k" >/dev/null || fail "put $1/$k"
	done
	taken=$(metric 1 tabby_raft_snapshots_total)
	log "snapshots taken by agent1: $taken"
	[ "${taken:-0}" -ge 1 ] || fail "no snapshot was taken; a join would not need a snapshot install"
}

pass() { log "PASS"; exit 0; }

# --- Helpers for tests that drive the tabby CLI ---------------------------------------------

# refused I STATUS SUBSTRING ARGS...: `tabby ARGS` against agent I exits STATUS, prints nothing
# on stdout and exactly one line on stderr, which mentions SUBSTRING (a command-line mistake
# may add the pointer to --help).
refused() {
	local i=$1 want=$2 sub=$3 rc=0
	shift 3
	tctl "$i" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
	[ "$rc" = "$want" ] || fail "tabby $* exited $rc, not $want: $(cat "$WORK/err")"
	[ ! -s "$WORK/out" ] || fail "tabby $* printed on stdout: $(cat "$WORK/out")"
	[ "$(grep -vc "^Run '.* --help' for usage.$" "$WORK/err")" = 1 ] || fail "tabby $* did not say one line: $(cat "$WORK/err")"
	grep -qF -- "$sub" "$WORK/err" || fail "tabby $*: '$(cat "$WORK/err")' does not mention '$sub'"
	log "ok: $* -> $rc: $(cat "$WORK/err")"
}

# ok I ARGS...: `tabby ARGS` against agent I succeeds, with nothing on stderr; prints its stdout.
# Called in $(...), where its fail cannot end the test, it also leaves a note for same().
ok() {
	local i=$1
	shift
	if ! tctl "$i" "$@" >"$WORK/out" 2>"$WORK/err" || [ -s "$WORK/err" ]; then
		echo "tabby $*: $(cat "$WORK/err")" >>"$WORK/failed"
		fail "tabby $* failed: $(cat "$WORK/err")"
	fi
	cat "$WORK/out"
}

# same WHAT GOT WANT: the texts are equal (and no ok in GOT failed), else fail showing both.
same() {
	[ ! -s "$WORK/failed" ] || fail "$1: $(cat "$WORK/failed")"
	[ "$2" = "$3" ] || fail "$1:"$'\n'"--- got:"$'\n'"$2"$'\n'"--- wanted:"$'\n'"$3"
	log "ok: $1"
}

# Reads are served by the member asked, from its own replica: before reading on one member what
# was written through another, wait until every member has applied everything.
caught_up() {
	status_json 1 | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if len({m["applied_revision"] for m in d["members"]}) == 1 else 1)'
}
catch_up() { wait_for "every member to apply the same revision" 10 caught_up; }

# json EXPR: evaluate a Python expression over the JSON on stdin (bound to d).
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
