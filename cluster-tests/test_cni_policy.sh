#!/usr/bin/env bash
# The frontend/database scenario with containers wired by the CNI plugin on three hosts, proven
# by real TCP connections: the frontend (Mesos label role=frontend) takes TCP 80 from anyone, it
# reaches the database (role=database) on TCP 6379, and everything else to the database is
# refused — also from containers on the same network, which the network's own profile would let
# in: policies decide before profiles. Then agents are restarted (kill -9, and SIGTERM) under
# traffic: an established TCP connection through both policies keeps flowing, a ping across the
# hosts loses at most a few packets, the policy table and the routes stay while the agent is
# down. Last, a host is removed from the cluster: its addresses are released and the others drop
# their routes to it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cni-lib.sh"
hosts_up 3
bootstrap_cluster 3
cni_setup

# The containers: name host role (Mesos label), all on calico-net-1 but "out3" (calico-net-2).
add_role() {
	local c=$1 i=$2 role=$3 dir
	dir=$(labelled_conf "$i" calico-net-1 "role=$role")
	cnt_new "$c"
	NETCONF_DIR=$dir cnt_add "$i" "$c" calico-net-1
}
add_role fe 1 frontend
add_role o1 1 other
add_role db 2 database
add_role o2 2 other
add_role o3 3 other
net_conf 3 calico-net-2 '{"cniVersion": "0.4.0"}'
cnt_new out3
cnt_add 3 out3 calico-net-2
FE=$(cnt_ip fe)
DB=$(cnt_ip db)
for c in fe o1 db o2 o3 out3; do log "$c on host ${CNT_HOST[$c]}: $(cnt_ip "$c")"; done
catch_up
tctl 2 get workloadendpoint -o json | matches '"role": *"database"' || fail "no endpoint carries role=database"

cnt_listen fe 80 fe
cnt_listen fe 2222 fe
cnt_listen db 6379 db
cnt_listen db 2222 db

# Before any policy: the network's profile lets members of calico-net-1 in, and nobody else.
wait_for "o3 -> db:6379 under the profile" 10 reaches o3 "$DB" 6379 db
wait_for "o1 -> fe:2222 under the profile" 10 reaches o1 "$FE" 2222 fe
blocked out3 "$DB" 6379 || fail "out3 (calico-net-2) reached db without a policy"
log "ok: without policies the per-network profile decides"

cat >"$WORK/policy.yaml" <<'EOF'
apiVersion: v1
kind: policy
metadata:
  name: frontend
spec:
  order: 50
  selector: role == 'frontend'
  ingress:
  - action: allow
    protocol: tcp
    destination:
      ports: [80]
  egress:
  - action: allow
    protocol: tcp
    destination:
      selector: role == 'database'
      ports: [6379]
---
apiVersion: v1
kind: policy
metadata:
  name: database
spec:
  order: 60
  selector: role == 'database'
  ingress:
  - action: allow
    protocol: tcp
    source:
      selector: role == 'frontend'
    destination:
      ports: [6379]
EOF
tctl 3 apply -f "$WORK/policy.yaml" >"$WORK/out" 2>&1 || fail "apply the policies: $(cat "$WORK/out")"

# proves WHAT: the scenario holds now (each check is one real connection).
scenario() {
	reaches o3 "$FE" 80 fe || { echo "o3 -> fe:80 refused"; return 1; }
	reaches out3 "$FE" 80 fe || { echo "out3 (other network) -> fe:80 refused"; return 1; }
	reaches o1 "$FE" 80 fe || { echo "o1 (same host) -> fe:80 refused"; return 1; }
	reaches fe "$DB" 6379 db || { echo "fe -> db:6379 refused"; return 1; }
	blocked fe "$DB" 2222 || { echo "fe -> db:2222 answered"; return 1; }
	blocked o3 "$DB" 6379 || { echo "o3 (same network) -> db:6379 answered"; return 1; }
	blocked o2 "$DB" 6379 || { echo "o2 (same network, same host) -> db:6379 answered"; return 1; }
	blocked out3 "$DB" 6379 || { echo "out3 -> db:6379 answered"; return 1; }
	blocked o1 "$FE" 2222 || { echo "o1 -> fe:2222 answered"; return 1; }
	cnt_no_ping o2 "$DB" || { echo "o2 pings db"; return 1; }
}
# Wait for the first connection the policies allow and one they refuse, then check everything.
wait_for "fe -> db:6379 under the policies" 10 reaches fe "$DB" 6379 db
wait_for "o3 -> db:6379 refused" 10 blocked o3 "$DB" 6379
why=$(scenario) || fail "the frontend/database scenario: $why"
log "ok: frontend takes tcp 80 from anyone, reaches the database on 6379; all else to the database is refused"

# --- Agents restarted under traffic -----------------------------------------------------------
# An established connection fe -> db:6379, through both policies and across hosts 1 and 2: a line
# every 50 ms, each echoed back. The client records the longest wait for an echo, replacing the
# file whole each time (a reader of a file being rewritten in place may find it empty).
cat >"$WORK/stream.py" <<'EOF'
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
f = s.makefile("rwb", buffering=0)
assert f.readline().strip() == b"db"
n, worst, out = 0, 0.0, sys.argv[3]
while True:
    t = time.monotonic()
    f.write(b"%d\n" % n)
    if f.readline().strip() != b"%d" % n:
        raise SystemExit("bad echo")
    worst = max(worst, time.monotonic() - t)
    n += 1
    with open(out + ".tmp", "w") as o:
        o.write("%d %.3f\n" % (n, worst))
    os.replace(out + ".tmp", out)
    time.sleep(0.05)
EOF
ip netns exec "$(cnt_ns fe)" python3 "$WORK/stream.py" "$DB" 6379 "$WORK/stream" 2>"$WORK/stream.err" &
stream_pid=$!
CNT_PIDS+=($stream_pid)
disown $stream_pid
ip netns exec "$(cnt_ns o1)" ping -n -i 0.1 "$(cnt_ip o2)" >"$WORK/ping" 2>&1 &
ping_pid=$!
CNT_PIDS+=($ping_pid)
stream_count() { cut -d' ' -f1 "$WORK/stream" 2>/dev/null || echo 0; }
wait_for "the stream to flow" 10 eval '[ "$(stream_count)" -gt 10 ]'

# the dataplane host I has: its tabby routes and whether its nftables table exists.
routes_of() { ip -n "$(host_ns "$1")" route show | grep -v "proto kernel" | sort; }
has_table() { ip netns exec "$(host_ns "$1")" nft list table inet tabby >/dev/null 2>&1; }

restart() { # restart I HOW: stop agent I with HOW (kill or term) and start it again
	local i=$1 how=$2 routes n
	routes=$(routes_of "$i")
	if [ "$how" = kill ]; then kill_agent "$i"; else stop_agent "$i"; fi
	has_table "$i" || fail "the policy table of host $i went with its agent ($how)"
	[ "$(routes_of "$i")" = "$routes" ] || fail "host $i's routes changed when its agent stopped ($how)"
	n=$(stream_count)
	sleep 1
	[ "$(stream_count)" -gt "$n" ] || fail "the stream stopped while agent $i was down"
	start_agent "$i"
	# The restarted agent reconciles against the replicated state: not one route may blink.
	local end=$((SECONDS + 3))
	while ((SECONDS < end)); do
		[ "$(routes_of "$i")" = "$routes" ] ||
			fail "host $i's routes changed while its agent restarted:"$'\n'"$routes"$'\n'"--- now:"$'\n'"$(routes_of "$i")"
		sleep 0.05
	done
	wait_for "3 healthy members after restarting agent $i" 30 members_healthy 1 3
	has_table "$i" || fail "host $i has no policy table after its agent restarted"
	[ "$(routes_of "$i")" = "$routes" ] ||
		fail "host $i's routes differ after the restart:"$'\n'"$routes"$'\n'"--- now:"$'\n'"$(routes_of "$i")"
	log "ok: agent $i restarted ($how) with table and routes in place"
}
restart 1 kill
restart 2 term
n=$(stream_count)
sleep 1
[ "$(stream_count)" -gt "$n" ] || fail "the stream stopped after the restarts: $(cat "$WORK/stream.err")"
kill -0 "$stream_pid" 2>/dev/null || fail "the established connection broke: $(cat "$WORK/stream.err")"
worst=$(cut -d' ' -f2 "$WORK/stream")
awk -v w="$worst" 'BEGIN { exit !(w < 0.5) }' || fail "an echo took ${worst}s during the restarts"
kill -INT "$ping_pid"
wait "$ping_pid" 2>/dev/null || true
sent=$(sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.*/\1/p' "$WORK/ping")
got=$(sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.*/\2/p' "$WORK/ping")
[ -n "$sent" ] && [ $((sent - got)) -le 3 ] || fail "ping o1 -> o2 lost $((sent - got)) of $sent during the restarts"
log "ok: under two agent restarts the connection lived ($(stream_count) echoes, worst ${worst}s); ping lost $((sent - got)) of $sent"
why=$(scenario) || fail "the scenario after the restarts: $why"
log "ok: the scenario holds after the restarts"

# --- A host removed: its addresses released, its routes gone -----------------------------------
used=$(pool_in_use 1 192.168.0.0/16)
h3_blocks=$(tctl 1 ipam show --blocks -o json | python3 -c '
import json, sys
d = json.load(sys.stdin); d = d.get("blocks", d) if isinstance(d, dict) else d
print(" ".join(b["cidr"] for b in d if b.get("affinity") in ("host:agent3", "agent3")))')
[ -n "$h3_blocks" ] || fail "no block is affine to agent3: $(tctl 1 ipam show --blocks)"
for b in $h3_blocks; do
	ip -n "$(host_ns 1)" route show "$b" | matches . || fail "host 1 has no route to agent3's block $b"
done
kill_agent 3
tctl 1 cluster remove agent3 >"$WORK/out" 2>&1 || fail "cluster remove agent3: $(cat "$WORK/out")"
grep -Eq "^removed agent3: released [1-9][0-9]* address(es)?, deleted [1-9][0-9]* workload endpoints?$" "$WORK/out" ||
	fail "cluster remove agent3 printed: $(cat "$WORK/out")"
wait_for "2 healthy members" 20 members_healthy 1 2
freed() { [ "$(pool_in_use 1 192.168.0.0/16)" -le $((used - 2)) ]; }
wait_for "agent3's two addresses to be released" 20 freed
wait_for "agent3's endpoints to go" 10 eval '! endpoints 2 | matches " agent3 "'
gone() { for b in $h3_blocks; do ! ip -n "$(host_ns "$1")" route show "$b" | matches . || return 1; done; }
wait_for "host 1's routes to agent3's blocks to go" 10 gone 1
wait_for "host 2's routes to agent3's blocks to go" 10 gone 2
log "ok: agent3 removed: in use $used -> $(pool_in_use 1 192.168.0.0/16), its blocks unrouted"
reaches o1 "$FE" 80 fe || fail "the remaining hosts broke when agent3 was removed"
reaches fe "$DB" 6379 db || fail "fe -> db broke when agent3 was removed"
wait_for "hashes to agree" 10 hash_agrees 1
pass
