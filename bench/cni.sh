#!/usr/bin/env bash
# bench/cni.sh: CNI ADD and DEL latency of Tabby's plugin on a three-member cluster, beside the
# reference bridge + host-local plugins driven the same way in the same run, and the time to
# start many containers across the three hosts.
#
# The hosts are network namespaces on a bridge, as in the cluster tests (cluster-tests/lib.sh),
# so nothing touches this machine's own network. Both plugins are driven the same way inside
# host 1, on the same container namespaces, by two runtimes in turn: Tabby's plugin with the seeds'
# calico config (replicated allocation, endpoint, profile, veth, routes, policy), the reference
# with bridge + host-local (cniVersion 1.0.0, a local file per address).
#
#   cnitool    libcni 1.1.2, what containerd, cri-o and podman use: each figure is the wall clock
#              of one whole cnitool process (the method of ../shared/tools/cni-addel-bench.sh),
#              a Go program whose own start and result cache cost several milliseconds: its
#              threads used 3.1 ms of CPU per call with Tabby's plugin and 2.6 ms with one that
#              does nothing (scheduler accounting, 200 calls each). While the plugin runs it
#              mostly sleeps: 0.39 ms of CPU during Tabby's plugin's 2.8 ms, of which its runtime
#              monitor (Go 1.19's sysmon) about 0.1 ms
#   mesos      bench/cni_exec.c, which runs the plugin as Mesos's CNI isolator does: a plain
#              child process with the CNI variables, the configuration with the task's
#              NetworkInfo on stdin; each figure is one plugin process, fork to exit
#
#   sequential   N cycles of ADD then DEL on one container; Tabby's also through host 2, a
#                follower's host
#   parallel     PAR workers, each on its own container, N cycles in all
#   start        START containers, spread over the three hosts, ADDed by PAR workers: the time
#                until every ADD returned, and until the last one answers a ping from host 3
#                (the routes reached the other hosts). The namespaces exist before the clock
#                starts, as a runtime makes them before it calls CNI.
#
# Prints p50 and p99 per figure with the ratio Tabby / reference (the goal: ADD p50 at most
# 0.33, sequential and parallel), and the start time beside Calico's published 322 s for 1,000 pods
# on 10 nodes. It also prints the whole machine's CPU per ADD+DEL with each plugin, sequential and
# parallel (on a 2-vCPU machine the figures are CPU-bound: a Tabby ADD's work is spread over three
# agents, the plugin and the kernel's workers; through cnitool, cnitool's own CPU is most of it),
# and, for the sequential cycles, from agent 1's log, the p50 of the parts of Tabby's ADD
# (an ADD whose veth pair was not prepared in advance has no "prepared" part, and is left out of
# that one).
#
# The start of many containers uses cnitool.
#
# This machine's vCPUs halt as soon as they are idle (cpuidle haltpoll, guest_halt_poll_ns 0), so
# every wake-up of a sleeping process on an idle vCPU pays for the hypervisor's. With 200 us of
# guest halt polling every figure here dropped by about a quarter, on both sides, and the ratios
# stayed where they were (0.36-0.39 through cnitool, sequential). The benchmark leaves the knob
# alone.
#
# Why an ADD's "replicated" part is two to three times a plain write's (bench/run.sh, about 0.4 ms):
# the three agents, the plugin and the runtime share two vCPUs, and an ADD's busiest moment is when
# its entry replicates. Scheduler tracepoints during sequential ADDs: about half of a follower's
# wake-ups from the other vCPU waited 128 us to 1 ms before it ran (during a run of plain writes
# nearly all took under 128 us), behind agent 1's loop thread, its worker threads or the kernel's
# own workers. A worker making the veth pair spends about 0.4 ms of kernel time in one RTM_NEWLINK,
# which this kernel (preempt=none) does not interrupt. The pair and the entry each take about 1 ms
# from the request and the wiring waits for the later of the two ("pair last" below: about half the
# time the pair). Tried and measured without effect (the same cluster switching between the two ways
# every 40 cycles, 320-400 ADDs each): the preparing thread at nice 19, proposing before starting
# the preparation, and finishing on the loop thread a wiring whose pair was ready first.
# What the waits are (perf sched timehist, 2026-11-24): the followers now run within 0.05 ms of the
# leader's AppendEntries; what waits is the completion of the raft log writes. This machine's disk
# (virtio, one queue) interrupts only vCPU 1, and an O_DSYNC direct write completes in a per-CPU
# kworker there ("dio"), which waited 0.3-0.4 ms behind a worker's RTM_NEWLINK on that vCPU. With
# agent 1's worker threads held to vCPU 0 (taskset, 150 cycles as Mesos runs them, twice) the
# replicated part fell from 0.82-1.0 to 0.62-0.77 ms, but the ADD only from 2.1-2.2 to 2.0 ms: the
# pair (0.83-0.94 ms) is then the longer branch. Without any preparation the entry replicates in
# 0.65 ms and the whole wiring after it takes 0.85 ms (2.3 ms an ADD). Through
# cnitool the agents also use about a quarter more CPU per cycle than for the same ADD and DEL run
# as Mesos does (agent 1's loop thread 2.1 against 1.6 ms, sched_switch accounting, 100 cycles),
# beside cnitool's own CPU (above).
#
# The floor's plugin is linked as Tabby's is (static, musl: bench/meson.build). Until 2026-11-24 it
# was a dynamic glibc program, whose start alone made the floor 4.4 ms through cnitool and 0.9 ms
# as Mesos runs it (2.7 and 0.1 ms now): the old "above floor" figures understated what Tabby adds.
# With the honest floor, Tabby adds about 2 ms to either runtime (cnitool 2.5, Mesos-style 1.9
# ms, 2026-11-24), and a third of the reference through cnitool leaves it about 1.3 ms.
#
# Where the CPU goes, 16 in parallel through cnitool (perf record -a at 4999 Hz, 208 cycles,
# 2026-11-24). cnitool's own threads take the same CPU whichever plugin it runs (6,212 samples with
# Tabby's, 6,204 with the one that does nothing): the runtime is no lever. The three agents took
# about 3.8 ms per ADD+DEL cycle, 62 % of it in the kernel. On the leader's host: creating the
# veth pair 0.46 ms and removing it 0.52 ms (device registration, IPv4 and IPv6 per-device state,
# sysfs), the conntrack flush of the released address 0.25 ms (two filtered walks of the 262,144
# buckets, after the answer; 0.68 ms in a later profile, below), and the delivery of raft's TCP segments into the other agents'
# namespaces, which the sending thread runs itself in softirq (about a quarter of the leader's
# loop thread). The leader's loop thread used 1.6 ms per cycle, a tenth of it in jansson (mostly
# the policy compiler's JSON commands, translated again by agent/nftnl.c) and about as much in
# malloc; each follower about 0.6 ms. No single part is the 40 % of Tabby's CPU the parallel goal
# asks for.
#
# Ruled out, measured: a pool of veth pairs made in advance and moved into the container at ADD.
# Moving an interface into another namespace waits for RCU grace periods: 17-19 ms here (`ip link
# set DEV netns NS`, alone or batched), against about 0.5 ms to create the pair with its peer
# straight in the container's namespace, as the ADD does.
#
# What holds the goal through cnitool (2026-11-24, measured on the same cluster with the agent
# instrumented, 150-cycle runs alternating between two builds):
#   - In parallel the machine is saturated and the ADD ratio follows the CPU ratio (0.40 against
#     0.43 in a run without steal). Tabby's kernel-mode time alone (the pair made and removed, the
#     conntrack flush, three members' fsynced log writes and their TCP, nftables, routes, the
#     plugin's process) put the cycle at 0.35-0.36 of the reference's CPU with no user-space CPU at
#     all (the "lower bound" line; 0.32 in a run with heavy steal). Under 16 cnitools the conntrack flush's two walks of the
#     262,144-bucket table cost 0.68 ms a cycle (0.2 ms sequentially: the walk misses the cache);
#     they stay, as calico-behaviour.md 5.5 asks: one walk cannot match either direction, and
#     skipping quiet interfaces would leave unreplied entries that a recycled address could
#     complete. The kernel's workers walk the table too, 0.35-0.4 ms a cycle: once a masquerade
#     rule exists anywhere on the machine, every interface taken down schedules a walk for the
#     entries masqueraded through it, in each namespace holding any entry (the hosts' own TCP
#     between the agents is enough). On this machine one exists before any agent starts (veth
#     pairs deleted in a bare namespace show the walks), so the reference's DELs pay it too.
#   - Sequentially the runtime leaves Tabby about 2 ms; it takes 2.4. After the entry is applied
#     the ADD waits 0.36-0.39 ms: the policy (compile 0.08 ms, nftables transaction 0.12 ms, on the
#     loop thread) and, when the pair was ready first, the finish on a worker, 0.27 ms of which is
#     waking a worker and then the loop (an idle vCPU here halts). Why finishing on the loop
#     thread (above) gains nothing: the wiring then ends at 0.09 ms, but the answer waits for the
#     policy after it (ADD p50 2.29 against 2.33 ms, eight pairs of runs). Making the pair on the loop thread right after proposing (the store's batch
#     sent at once) makes the pair 0.63-0.98 ms but the entry 0.86-1.3 ms: the followers and the
#     disk's completion wait for the vCPU the pair holds; ADD p50 2.26-2.58 against 2.21-2.83 ms.
#   - The plugin's jansson copies the input and the answer a byte at a time: 784 memcpy calls a run,
#     0.06 ms with musl's rep-movs memcpy. Left: 1 % of a cnitool ADD.
#
# Env: N=200 PAR=16 START=1000
#      TABBY=path CNI_PLUGIN=path  the agent and plugin to use (default: build/, built first by
#                                  scripts/setup.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
N=${N:-200}
PAR=${PAR:-16}
START=${START:-1000}
[ "$(id -u)" = 0 ] || { echo "cni.sh: run as root (network namespaces)" >&2; exit 2; }
if [ -z "${TABBY:-}" ]; then "$ROOT/scripts/setup.sh" >/dev/null; fi
source "$ROOT/cluster-tests/lib.sh"
source "$ROOT/cluster-tests/cni-lib.sh"
T=cni-bench
log() { echo "[cni-bench] $*" >&2; }

hosts_up 3
bootstrap_cluster 3
cni_setup
# The reference network in host 1, beside calico-net-1.
cat >"$WORK/net.d/1/ref-net.conf" <<EOF
{"cniVersion": "1.0.0", "name": "ref-net", "type": "bridge", "bridge": "${PFX}rb", "isGateway": true,
 "ipMasq": false, "ipam": {"type": "host-local", "dataDir": "$WORK/host-local",
 "ranges": [[{"subnet": "10.250.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
EOF
# The harness floor: cnitool running a plugin that does nothing (one fork and exec), built as
# Tabby's plugin is.
NOOP=${NOOP:-$(dirname "$TABBY")/bench/cni_noop}
[ -x "$NOOP" ] || { log "no $NOOP (ninja -C build builds it)"; exit 1; }
ln -sfn "$NOOP" "$CNI_BIN/noop"
echo '{"cniVersion": "1.0.0", "name": "noop-net", "type": "noop"}' >"$WORK/net.d/1/noop-net.conf"
CNI_EXEC=${CNI_EXEC:-$(dirname "$TABBY")/bench/cni_exec}
[ -x "$CNI_EXEC" ] || { log "no $CNI_EXEC (ninja -C build builds it)"; exit 1; }
log "tabby: $("$TABBY" version 2>/dev/null | head -1); plugins in $CNI_BIN; cnitool $CNITOOL"

# The worker runs inside a host namespace, so only cnitool's own run is timed.
cat >"$WORK/worker.sh" <<'EOF'
# worker.sh OUT NET CYCLES NETNS...: for each NETNS, CYCLES times cnitool add then del (CYCLES 0:
# add only); microseconds per call appended to OUT.add and OUT.del, failures counted in OUT.errs.
out=$1 net=$2 cycles=$3
shift 3
errs=0
timed() { # timed FILE CMD: run cnitool CMD, append its wall time to FILE
	local t0=${EPOCHREALTIME/./}
	"$CNITOOL" "$2" "$net" "$3" >/dev/null 2>>"$out.err" || errs=$((errs + 1))
	echo $((${EPOCHREALTIME/./} - t0)) >>"$1"
}
for ns in "$@"; do
	if [ "$cycles" = 0 ]; then timed "$out.add" add "$ns"; continue; fi
	for ((k = 0; k < cycles; k++)); do
		timed "$out.add" add "$ns"
		timed "$out.del" del "$ns"
	done
done
echo $errs >"$out.errs"
EOF

# worker I OUT NET CYCLES CONTAINER...: worker.sh in host I.
worker() {
	local i=$1 out=$2 net=$3 cycles=$4 c paths=()
	shift 4
	for c in "$@"; do paths+=("/var/run/netns/$(cnt_ns "$c")"); done
	ip netns exec "$(host_ns "$i")" env CNITOOL="$CNITOOL" CNI_PATH="$CNI_BIN" \
		NETCONFPATH="$WORK/net.d/$i" bash "$WORK/worker.sh" "$out" "$net" "$cycles" "${paths[@]}"
}

# worker_mesos I OUT NET CYCLES CONTAINER...: the same through cni_exec, the Mesos-style runtime.
worker_mesos() {
	local i=$1 out=$2 net=$3 cycles=$4 c paths=()
	shift 4
	for c in "$@"; do paths+=("/var/run/netns/$(cnt_ns "$c")"); done
	ip netns exec "$(host_ns "$i")" "$CNI_EXEC" "$CNI_BIN" "$WORK/net.d/$i/$net.conf" "$out" \
		"$cycles" "${paths[@]}"
}

# pct FILE P: the P-th percentile (nearest rank) of the microseconds in FILE, in ms.
pct() { sort -n "$1" | awk -v p="$2" '{a[NR] = $1} END {
	r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; printf "%.1f", a[r] / 1000 }'; }
errors() { cat "$WORK"/r-"$1"*.errs 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

# busy_ticks: the CPU time all CPUs have spent busy so far (user, nice, system, irq, softirq; not
# idle, iowait or steal), in clock ticks, whoever used it.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# kernel_ticks: the part of busy_ticks the CPUs spent in the kernel (system, irq, softirq): the
# work a plugin asks of the kernel (its devices, conntrack, disk writes, sockets, processes).
kernel_ticks() { awk '/^cpu / {print $4 + $7 + $8}' /proc/stat; }
# steal_ticks: the time the hypervisor ran something else while this machine's vCPUs had work, in
# clock ticks so far. A run with much of it is a run on a busy host, whatever it measured.
steal_ticks() { awk '/^cpu / {print $9}' /proc/stat; }
# agents_cpu: the CPU time (user + system, clock ticks) the three agents have used so far: their
# own work, the kernel's work in their system calls (the veth pairs) included.
agents_cpu() {
	local i sum=0 f
	for i in 1 2 3; do
		read -ra f <"/proc/${PIDS[$i]}/stat"
		sum=$((sum + f[13] + f[14])) # utime, stime (the name field holds no space)
	done
	echo $sum
}
# ticks_per_cycle TICKS N: clock ticks in ms per cycle of N.
ticks_per_cycle() { awk -v t="$1" -v h="$(getconf CLK_TCK)" -v n="$2" 'BEGIN {printf "%.1f", t / h * 1000 / n}'; }
# per_cycle SINCE N: the busy CPU time since busy_ticks gave SINCE, in ms per cycle of N.
per_cycle() { ticks_per_cycle $(($(busy_ticks) - $1)) "$2"; }

# phases FROM TO: the p50 of the three parts of the ADDs agent 1 logged in lines FROM..TO of its log
# (routes_cni.c add_answer()): "replicated" from the request's arrival to the entry applied here,
# "prepared" from the arrival to the veth pair made meanwhile, "wired" from the entry applied to
# the wiring done. The answer follows once the policy is in the kernel (logged, about 0.01 ms).
# Fourth: the share of prepared ADDs whose pair was made after the entry was applied, that is,
# whose wiring waited for the pair rather than for the replication.
phases() {
	sed -n "$1,$2p" "$WORK/agent1.log" | python3 -c '
import re, statistics, sys
v = {"replicated": [], "prepared": [], "wired": []}
later = both = 0
for l in sys.stdin:
    if "cni: ADD" not in l:
        continue
    got = {}
    for k, pat in (("replicated", r"replicated in ([0-9.]+) ms"),
                   ("prepared", r"prepared meanwhile in ([0-9.]+) ms"),
                   ("wired", r"wired in ([0-9.]+) ms")):
        m = re.search(pat, l)
        if m:
            got[k] = float(m.group(1))
            v[k].append(got[k])
    if "replicated" in got and "prepared" in got:
        both += 1
        later += got["prepared"] > got["replicated"]
print(" ".join("%.2f" % statistics.median(v[k]) if v[k] else "-" for k in ("replicated", "prepared", "wired")),
      "%.0f%%" % (100 * later / both) if both else "-")'
}

declare -A P50 P99 CPU CPUP KERNP ACPU ACPUP STEAL PHASES
# measure NAME NET [WORKER]: the sequential and parallel figures for network NET, driven by
# WORKER (worker: cnitool, worker_mesos: cni_exec). Also the machine's CPU per cycle, sequential
# and parallel, and, for Tabby's network, where its sequential ADDs spent their time in agent 1.
measure() {
	local name=$1 net=$2 drv=${3:-worker} w cycles pids=() b0 a0 l0 s0 k0
	$drv 1 "$WORK/warm-$name" "$net" 3 seq0 # not recorded: first-run costs
	s0=$(steal_ticks)
	b0=$(busy_ticks)
	a0=$(agents_cpu)
	l0=$(($(wc -l <"$WORK/agent1.log") + 1))
	$drv 1 "$WORK/r-$name-seq" "$net" "$N" seq0
	CPU[$name]=$(per_cycle "$b0" "$N")
	ACPU[$name]=$(ticks_per_cycle $(($(agents_cpu) - a0)) "$N")
	[ "$net" != calico-net-1 ] || PHASES[$name]=$(phases "$l0" "$(wc -l <"$WORK/agent1.log")")
	cycles=$(((N + PAR - 1) / PAR))
	b0=$(busy_ticks)
	k0=$(kernel_ticks)
	a0=$(agents_cpu)
	for ((w = 1; w <= PAR; w++)); do
		$drv 1 "$WORK/r-$name-par-$w" "$net" "$cycles" "par$w" &
		pids+=($!)
	done
	for w in "${pids[@]}"; do wait "$w"; done
	CPUP[$name]=$(per_cycle "$b0" $((cycles * PAR)))
	KERNP[$name]=$(ticks_per_cycle $(($(kernel_ticks) - k0)) $((cycles * PAR)))
	ACPUP[$name]=$(ticks_per_cycle $(($(agents_cpu) - a0)) $((cycles * PAR)))
	STEAL[$name]=$(ticks_per_cycle $(($(steal_ticks) - s0)) $((N + cycles * PAR)))
	cat "$WORK"/r-"$name"-par-*.add >"$WORK/r-$name-par.add"
	cat "$WORK"/r-"$name"-par-*.del >"$WORK/r-$name-par.del"
	for k in seq par; do
		for op in add del; do
			P50[$name-$k-$op]=$(pct "$WORK/r-$name-$k.$op" 50)
			P99[$name-$k-$op]=$(pct "$WORK/r-$name-$k.$op" 99)
		done
	done
	log "$name: $(wc -l <"$WORK/r-$name-seq.add") sequential and $(wc -l <"$WORK/r-$name-par.add") parallel cycles, $(errors "$name") errors"
}

cnt_new seq0
for ((w = 1; w <= PAR; w++)); do cnt_new "par$w"; done
measure tabby calico-net-1
# Tabby's sequential cycles again through host 2, whose agent is a follower: its writes go to the
# leader and complete when host 2's own replica applies them, which used to wait for the leader's
# next heartbeat (deps/raft-patches/0006, store/node.c send_commit()). Hosts 2 and 3 are where
# most containers of a cluster run.
cnt_new seqf
worker 2 "$WORK/warm-tabbyf" calico-net-1 3 seqf
worker 2 "$WORK/r-tabbyf-seq" calico-net-1 "$N" seqf
for op in add del; do
	P50[tabbyf-seq-$op]=$(pct "$WORK/r-tabbyf-seq.$op" 50)
	P99[tabbyf-seq-$op]=$(pct "$WORK/r-tabbyf-seq.$op" 99)
done
leader=$(tctl 1 cluster status -o json | json 'd["leader"]')
measure ref ref-net
measure noop noop-net
measure tabby-m calico-net-1 worker_mesos
measure ref-m ref-net worker_mesos
measure noop-m noop-net worker_mesos
for k in tabby ref noop; do
	[ "$(errors "$k")" = 0 ] || log "$k: $(errors "$k") calls failed: $(sort -u "$WORK"/r-"$k"*.err | head -5)"
done
[ "$(in_use 1)" = 0 ] || log "warning: $(in_use 1) addresses still in use after the ADD/DEL cycles"

# --- Start many containers across the three hosts -----------------------------------------------
# (START=0 skips this part)
if ((START > 0)); then
	log "starting $START containers over 3 hosts with $PAR workers"
	declare -a on1=() on2=() on3=()
	for ((k = 0; k < START; k++)); do
		cnt_new "s$k"
		case $((k % 3)) in 0) on1+=("s$k") ;; 1) on2+=("s$k") ;; 2) on3+=("s$k") ;; esac
	done
	cnt_new probe
	# Each host gets about a third of the workers; each worker a slice of that host's containers.
	spread() { # spread I WORKERS CONTAINER...: start WORKERS workers on host I
		local i=$1 nw=$2 w k
		shift 2
		local all=("$@")
		for ((w = 0; w < nw; w++)); do
			local mine=()
			for ((k = w; k < ${#all[@]}; k += nw)); do mine+=("${all[$k]}"); done
			[ ${#mine[@]} -gt 0 ] || continue
			worker "$i" "$WORK/r-start-$i-$w" calico-net-1 0 "${mine[@]}" &
			STARTERS+=($!)
		done
	}
	STARTERS=()
	cpu0=$(agents_cpu)
	t0=${EPOCHREALTIME/./}
	spread 1 $(((PAR + 2) / 3)) "${on1[@]}"
	spread 2 $(((PAR + 1) / 3)) "${on2[@]}"
	spread 3 $((PAR / 3)) "${on3[@]}"
	for p in "${STARTERS[@]}"; do wait "$p"; done # (a bare wait would wait for the agents too)
	t_add=$((${EPOCHREALTIME/./} - t0))
	CNT_HOST[probe]=3
	cnitool_run 3 add probe calico-net-1 || log "probe ADD failed: $(cat "$WORK/err")"
	last=s$((START - 1))
	addr=$(cnt_ip "$last")
	until cnt_ping probe "$addr"; do
		(((${EPOCHREALTIME/./} - t0) < 120000000)) || { log "the last container never answered"; break; }
	done
	t_ping=$((${EPOCHREALTIME/./} - t0))
	cpu_start=$(($(agents_cpu) - cpu0))
	cat "$WORK"/r-start-*.add >"$WORK/r-start.add"
	started=$(($(wc -l <"$WORK/r-start.add") - $(errors start)))
	catch_up
	eps=$(tctl 1 get workloadendpoint -o json | json 'len(d)')
fi

# --- Report ---------------------------------------------------------------------------------------
echo
# table SUFFIX: the ADD and DEL rows of one driver (runs tabby$SUFFIX, ref$SUFFIX, noop$SUFFIX).
table() {
	local x=$1 k op label r50 r99 rf
	printf "%-22s | %-18s | %-22s | %-13s | %s\n" "" "tabby p50    p99" "bridge+host-local p50 p99" \
		"floor p50" "ratio p50  p99  above floor"
	for k in seq par; do
		for op in add del; do
			label="${op^^} $([ $k = seq ] && echo sequential || echo "$PAR in parallel")"
			r50=$(awk -v a="${P50[tabby$x-$k-$op]}" -v b="${P50[ref$x-$k-$op]}" 'BEGIN {printf "%.2f", a / b}')
			r99=$(awk -v a="${P99[tabby$x-$k-$op]}" -v b="${P99[ref$x-$k-$op]}" 'BEGIN {printf "%.2f", a / b}')
			rf=$(awk -v a="${P50[tabby$x-$k-$op]}" -v b="${P50[ref$x-$k-$op]}" -v f="${P50[noop$x-$k-$op]}" \
				'BEGIN {d = b - f; if (d <= 0) print "-"; else printf "%.2f", (a - f > 0 ? a - f : 0) / d}')
			printf "%-22s | %7s %8s  | %9s %9s    | %9s     | %5s %6s  %6s\n" "$label" \
				"${P50[tabby$x-$k-$op]}" "${P99[tabby$x-$k-$op]}" "${P50[ref$x-$k-$op]}" \
				"${P99[ref$x-$k-$op]}" "${P50[noop$x-$k-$op]}" "$r50" "$r99" "$rf"
		done
	done
}
# goal SUFFIX KIND: whether the ADD p50 (KIND seq or par) is at most a third of the reference's.
goal() {
	awk -v a="${P50[tabby$1-$2-add]}" -v b="${P50[ref$1-$2-add]}" \
		'BEGIN {printf "%.2f of the reference: %s", a / b, (a <= b / 3) ? "met" : "NOT met"}'
}
echo "CNI through cnitool on a 3-member cluster (hosts are network namespaces), ms per call"
table ""
for op in add del; do
	printf "%-22s | %7s %8s  | %9s %9s    | %9s     | %5s\n" "${op^^} seq., on host 2" \
		"${P50[tabbyf-seq-$op]}" "${P99[tabbyf-seq-$op]}" "${P50[ref-seq-$op]}" "${P99[ref-seq-$op]}" \
		"${P50[noop-seq-$op]}" "$(awk -v a="${P50[tabbyf-seq-$op]}" -v b="${P50[ref-seq-$op]}" \
			'BEGIN {printf "%.2f", a / b}')"
done
echo "host 2: a follower's host (the leader is $leader); the reference has no cluster, its figure is host 1's"
echo "floor: the runtime running a plugin that does nothing (bench/cni_noop.c); \"above floor\" compares"
echo "what each plugin adds to it: (tabby - floor) / (reference - floor)"
echo
echo "CNI as Mesos runs plugins (bench/cni_exec.c: one child process per call), ms per call"
table -m
echo
# Where the sequential figures come from: the whole machine's CPU per ADD+DEL cycle (all CPUs,
# every process and the kernel's workers) and the parts of Tabby's ADD on agent 1.
echo "sequential cycles: machine CPU per ADD+DEL (all CPUs, all processes); Tabby's ADD on agent 1, p50"
printf "%-22s | %-30s | %s\n" "" "CPU ms: tabby   reference  floor" "replicated  veth pair made  wired after commit  pair last"
for x in "" -m; do
	read -r rep pre wir last <<<"${PHASES[tabby$x]}"
	printf "%-22s | %13s %11s %6s | %7s ms  %10s ms  %15s ms  %9s\n" \
		"$([ -z "$x" ] && echo "through cnitool" || echo "as Mesos runs it")" "${CPU[tabby$x]}" \
		"${CPU[ref$x]}" "${CPU[noop$x]}" "$rep" "$pre" "$wir" "$last"
done
echo "(the veth pair is made while the entry replicates; the wiring ends with the addresses and routes;"
echo " \"pair last\": the share of ADDs whose pair was made after the entry was applied here)"
# In parallel the machine is saturated, so each latency is about its cycle's CPU times PAR over the
# number of CPUs, and the ratio about the ratio of the CPU figures, the runtime's own share included.
echo "$PAR in parallel: machine CPU per ADD+DEL, ms: through cnitool tabby ${CPUP[tabby]}, reference ${CPUP[ref]}, floor ${CPUP[noop]};"
echo "  as Mesos runs it tabby ${CPUP[tabby-m]}, reference ${CPUP[ref-m]}, floor ${CPUP[noop-m]}"
# A bound on the parallel goal through cnitool. The phase is CPU-bound, so the ADD ratio follows the
# ratio of the CPU figures. Whatever Tabby's own code does, its cycle costs at least the floor's
# (cnitool, the same whichever plugin it runs) plus the kernel work Tabby's ADD and DEL ask for
# beyond the floor's: the veth pair made and removed, the conntrack flush, three members' fsynced
# log writes and their TCP, nftables and routes, the plugin's process. That bound, over the
# reference's CPU, is the best ratio Tabby could reach here with no user-space CPU at all.
bound() {
	awk -v f="${CPUP[noop$1]}" -v kt="${KERNP[tabby$1]}" -v kf="${KERNP[noop$1]}" -v r="${CPUP[ref$1]}" \
		'BEGIN {b = f + (kt > kf ? kt - kf : 0); printf "%.1f ms, %.2f of the reference'"'"'s CPU", b, b / r}'
}
echo "$PAR in parallel: kernel-mode CPU per ADD+DEL (system, irq, softirq), ms: through cnitool tabby ${KERNP[tabby]},"
echo "  reference ${KERNP[ref]}, floor ${KERNP[noop]}; as Mesos runs it ${KERNP[tabby-m]}, ${KERNP[ref-m]}, ${KERNP[noop-m]}"
echo "  lower bound on Tabby's cycle with no user-space CPU at all (floor + Tabby's kernel work above the"
echo "  floor's): through cnitool $(bound ""); as Mesos runs it $(bound -m)"
# Of Tabby's figures, what its three agents used themselves (the rest: the runtime, the plugin
# processes, the kernel's workers).
echo "the three agents' own CPU per ADD+DEL, ms (kernel work in their system calls included):"
echo "  through cnitool ${ACPU[tabby]} sequential, ${ACPUP[tabby]} in parallel; as Mesos runs it ${ACPU[tabby-m]} and ${ACPUP[tabby-m]}"
# Time the hypervisor took from this machine while each plugin's cycles ran: large figures mean a
# busy host, and that run's ratios say more about the host than about the plugins.
echo "steal per ADD+DEL, ms (vCPU time the hypervisor gave to others): through cnitool tabby ${STEAL[tabby]},"
echo "  reference ${STEAL[ref]}, floor ${STEAL[noop]}; as Mesos runs it ${STEAL[tabby-m]}, ${STEAL[ref-m]}, ${STEAL[noop-m]}"
echo
echo "goal, ADD p50 at most a third of the reference's:"
echo "  through cnitool, sequential: $(goal "" seq)"
echo "  through cnitool, $PAR in parallel: $(goal "" par)"
echo "  as Mesos runs it, sequential: $(goal -m seq)"
echo "  as Mesos runs it, $PAR in parallel: $(goal -m par)"
echo
if ((START > 0)); then
	printf "start %d containers on 3 hosts, %d workers: %d started (%d endpoints with the probe), all ADDs back in %.1f s (%.0f/s),\n" \
		"$START" "$PAR" "$started" "$eps" "$(awk -v t="$t_add" 'BEGIN {print t / 1e6}')" \
		"$(awk -v t="$t_add" -v n="$started" 'BEGIN {print n / (t / 1e6)}')"
	printf "  the last one reachable from host 3 after %.1f s; ADD p50 %s ms, p99 %s ms under this load\n" \
		"$(awk -v t="$t_ping" 'BEGIN {print t / 1e6}')" "$(pct "$WORK/r-start.add" 50)" "$(pct "$WORK/r-start.add" 99)"
	printf "  the three agents used %.2f s of CPU for it (%.1f ms per container)\n" \
		"$(awk -v c="$cpu_start" -v h="$(getconf CLK_TCK)" 'BEGIN {print c / h}')" \
		"$(awk -v c="$cpu_start" -v h="$(getconf CLK_TCK)" -v n="$START" 'BEGIN {print c / h * 1000 / n}')"
	echo "  (Calico, public test: 322 s for 1,000 pods on 10 nodes)"
fi
