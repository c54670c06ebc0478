#!/usr/bin/env bash
# Three agents. Eight clients per agent assign and release addresses for 36 seconds through the
# public API while the leader is killed with SIGKILL and restarted, twice. Afterwards:
#   - no address was ever handed to two live holders: if handle B was acknowledged an address
#     at a later generation than handle A got it, the release of A must have been sent before B's
#     assignment was acknowledged;
#   - every acknowledged assignment whose handle was never released is present, with its
#     generation, on every member;
#   - after every handle is released, `tabby ipam check` is clean and every block is empty.
source "$(dirname "$0")/lib.sh"
hosts_up 3
bootstrap_cluster 3
default_pools() { tctl 1 pool show -o json | matches 192.168.0.0/16; }
wait_for "the default pools" 10 default_pools
# A small pool, so that addresses are reused while the test runs and blocks fill and borrow.
tctl 1 pool add 10.77.0.0/24 --block-size 28 || fail "pool add"

DURATION=36
api() { # api I METHOD PATH BODY: prints "HTTP-status body"
	curl -sS --max-time 10 --unix-socket "$(sock "$1")" -X "$2" "http://tabby$3" \
		-H 'Content-Type: application/json' -d "$4" -w ' %{http_code}' 2>/dev/null || echo " 000"
}
now() { date +%s%N; }

# client I C: assigns (one IPv4 address from the small pool per handle) and releases, logging
# A t_sent t_acked handle answer / R t_sent t_acked handle answer / U handle (unknown outcome).
client() {
	local i=$1 c=$2 n=0 end=$((SECONDS + DURATION)) held=() t0 out h
	while ((SECONDS < end)); do
		if ((${#held[@]} > 0 && RANDOM % 2 == 0)); then
			local k=$((RANDOM % ${#held[@]}))
			h=${held[$k]}
			t0=$(now)
			out=$(api "$i" POST /v1/ipam/release "{\"handle\": \"$h\"}")
			case "${out##* }" in
			200 | 404)
				echo "R $t0 $(now) $h ${out% *}" >>"$WORK/log.$i.$c"
				held=("${held[@]:0:$k}" "${held[@]:$((k + 1))}")
				;;
			*) echo "r $t0 $h" >>"$WORK/log.$i.$c" ;; # sent, outcome unknown: retried later
			esac
		else
			h="c$i-$c-$n"
			n=$((n + 1))
			t0=$(now)
			out=$(api "$i" POST /v1/ipam/assign \
				"{\"node\": \"agent$i\", \"handle\": \"$h\", \"num4\": 1, \"pools\": [\"10.77.0.0/24\"]}")
			case "${out##* }" in
			200)
				echo "A $t0 $(now) $h ${out% *}" >>"$WORK/log.$i.$c"
				held+=("$h")
				;;
			409) ;; # pool exhausted for now
			*)
				echo "U $h" >>"$WORK/log.$i.$c"
				held+=("$h") # may hold an address: release it like the others
				;;
			esac
		fi
	done
	# Release what this client still holds at the end only in the final phase (below).
	printf '%s\n' "${held[@]}" >"$WORK/held.$i.$c"
}

pids=()
for i in 1 2 3; do
	for c in 1 2 3 4 5 6 7 8; do
		client "$i" "$c" &
		pids+=($!)
	done
done

for round in 1 2; do
	sleep 8
	L=$(leader_index 1 || leader_index 2 || leader_index 3)
	[ -n "$L" ] || fail "no leader before kill $round"
	log "kill $round: SIGKILL the leader agent$L"
	kill_agent "$L"
	sleep 4
	log "restarting agent$L"
	start_agent "$L"
done
wait "${pids[@]}"

wait_for "3 healthy members" 30 members_healthy 1 3
wait_for "equal state hashes" 30 hash_agrees 1
cat "$WORK"/log.* >"$WORK/log.all"
log "operations: $(grep -c '^A' "$WORK/log.all") assignments, $(grep -c '^R' "$WORK/log.all") releases acknowledged, $(grep -c '^[Ur]' "$WORK/log.all") with unknown outcome"

# Every acknowledged assignment never released is present on every member.
for i in 1 2 3; do
	curl -sS --unix-socket "$(sock "$i")" http://tabby/v1/ipam/blocks >"$WORK/blocks$i.json"
done
python3 - "$WORK" <<'PY' || fail "the history or the state is wrong"
import json, os, subprocess, sys
work = sys.argv[1]
assigned = {}   # handle -> (ip, gen, t_sent, t_acked)
released = {}   # handle -> t_sent of the first release attempt
for line in open(os.path.join(work, "log.all")):
    f = line.split(" ", 4)
    if f[0] == "A":
        ans = json.loads(f[4].strip())
        ip = ans["ips"][0]
        assigned[f[3]] = (ip["ip"], ip["gen"], int(f[1]), int(f[2]))
    elif f[0] in ("R", "r"):
        h = f[3].strip() if f[0] == "R" else f[2].strip()
        t = int(f[1])
        released[h] = min(released.get(h, t), t)
# No address handed to two live holders.
by_ip = {}
for h, (ip, gen, ts, ta) in assigned.items():
    by_ip.setdefault(ip, []).append((gen, h, ta))
bad = 0
for ip, holders in by_ip.items():
    holders.sort()
    for (g1, h1, _), (g2, h2, ta2) in zip(holders, holders[1:]):
        if g1 == g2:
            print("%s: two holders at generation %d (%s, %s)" % (ip, g1, h1, h2)); bad += 1
        elif h1 not in released or released[h1] > ta2:
            print("%s: given to %s (gen %d) while %s (gen %d) still held it" % (ip, h2, g2, h1, g1)); bad += 1
gens = [g for (_, g, _, _) in assigned.values()]
print("checked %d acknowledged assignments over %d addresses" % (len(assigned), len(by_ip)), file=sys.stderr)
if bad:
    sys.exit(1)
# Present on every member: the handles never released.
live = {h: v for h, v in assigned.items() if h not in released}
for i in (1, 2, 3):
    sock = os.path.join(work, "agent%d.sock" % i)
    for h, (ip, gen, _, _) in live.items():
        out = subprocess.run(["curl", "-sS", "--unix-socket", sock, "http://tabby/v1/ipam/handles/" + h],
                             capture_output=True, text=True).stdout
        ips = [(x["ip"], x["gen"]) for x in json.loads(out).get("ips", [])]
        if (ip, gen) not in ips:
            print("agent%d: acknowledged %s -> %s (gen %d) is missing: %s" % (i, h, ip, gen, out)); bad += 1
print("%d live assignments present on all 3 members" % len(live), file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# Release everything any client ever touched (404: nothing held), then the state is clean.
cat "$WORK"/held.* | while read -r h; do
	[ -n "$h" ] || continue
	out=$(api 1 POST /v1/ipam/release "{\"handle\": \"$h\"}")
	case "${out##* }" in 200 | 404) ;; *) fail "final release of $h: $out" ;; esac
done
tctl 1 ipam check || fail "ipam check is not clean"
blocks_empty() {
	curl -sS --unix-socket "$(sock "$1")" http://tabby/v1/ipam/blocks |
		python3 -c 'import json,sys; b=json.load(sys.stdin)["blocks"]; sys.exit(0 if all(x["used"] == 0 for x in b) else 1)'
}
for i in 1 2 3; do
	wait_for "agent$i to show every block empty" 10 blocks_empty "$i"
done
wait_for "equal state hashes" 30 hash_agrees 1
log "all released: every block is empty, ipam check clean"
pass
