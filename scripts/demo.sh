#!/usr/bin/env bash
# demo.sh: the main job. Installs and builds (scripts/setup.sh), starts a three-host Tabby cluster
# on this machine (each host a network namespace, one agent each), and shows it at work:
# membership, replicated writes through any member, a watch, the leader being killed and the
# cluster carrying on, a fourth host joining, IP pools and address assignment across the hosts,
# network policy applied from calicoctl v1 files, traced, and compiled into each host's nftables
# table, and every replica hashing to the same state.
# Everything it starts is stopped and removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (hosts are network namespaces)" >&2; exit 2; }
"$ROOT/scripts/setup.sh"
source "$ROOT/cluster-tests/lib.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Three hosts; agent1 bootstraps the cluster, agent2 and agent3 join with its token"
hosts_up 4
bootstrap_cluster 3
run "$TABBY" cluster status --socket "$(sock 1)"

say "Writes through any member, reads from every replica"
run "$TABBY" store put /demo/greeting "hello from agent2" --socket "$(sock 2)"
run "$TABBY" store put /demo/answer 42 --socket "$(sock 3)"
run "$TABBY" store get /demo/ --prefix --socket "$(sock 1)"

say "A watch on agent3 sees changes made through agent1"
"$TABBY" store watch /demo/ --prefix --socket "$(sock 3)" >"$WORK/watch.out" 2>&1 &
wpid=$!
sleep 0.5
"$TABBY" store put /demo/answer 43 --socket "$(sock 1)" >/dev/null
"$TABBY" store del /demo/greeting --socket "$(sock 1)" >/dev/null
sleep 0.5
kill "$wpid" 2>/dev/null || true
cat "$WORK/watch.out"

L=$(leader_index 1)
say "Killing the leader (agent$L) with SIGKILL"
kill_agent "$L"
other=$((L % 3 + 1))
wait_for "a new leader" 20 bash -c "l=\$(\"$TABBY\" cluster status -o json --socket $(sock $other) | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"leader\"] or \"\")'); [ -n \"\$l\" ] && [ \"\$l\" != agent$L ]"
run "$TABBY" store put /demo/after-failover yes --socket "$(sock "$other")"
run "$TABBY" cluster status --socket "$(sock "$other")"

say "Restarting agent$L: it needs no flags, it catches up from its data directory"
start_agent "$L"
wait_for "three healthy members" 30 members_healthy "$other" 3
run "$TABBY" store get /demo/after-failover --socket "$(sock "$L")"

say "A fourth host joins as a standby holding a full replica"
start_agent 4 --join "$(host_ip 1):7791" --token "$(token)"
wait_for "four healthy members" 30 members_healthy 1 4
run "$TABBY" cluster status --socket "$(sock 4)"

say "IP pools: the cluster started with Calico's default pools; add one with options"
run "$TABBY" pool add 10.42.0.0/16 --nat-outgoing --ipip cross-subnet --socket "$(sock 1)"
run "$TABBY" pool show --socket "$(sock 2)"

say "Each host gets addresses from its own blocks, decided inside the replicated state machine"
for i in 1 2 3; do
	run "$TABBY" ipam assign --node "agent$i" --handle "demo.c$i" --ipv4 2 --ipv6 1 \
		--pool 10.42.0.0/16 --pool fd80:24e2:f998:72d6::/64 --socket "$(sock "$i")"
done
run "$TABBY" ipam assign --node agent1 --handle demo.fixed --ip 10.42.200.7 --socket "$(sock 1)"
run "$TABBY" ipam show --blocks --socket "$(sock 4)"
say "An address already in use, and one outside every pool, are refused with a reason"
run "$TABBY" ipam assign --node agent2 --handle demo.dup --ip 10.42.200.7 --socket "$(sock 2)" || true
run "$TABBY" ipam assign --node agent2 --handle demo.out --ip 172.31.0.1 --socket "$(sock 2)" || true
run "$TABBY" ipam release --handle demo.c2 --socket "$(sock 3)"
run "$TABBY" ipam show --socket "$(sock 3)"
run "$TABBY" ipam check --socket "$(sock 3)"

say "Network policy: calicoctl v1 resources apply unchanged (one raft entry per file)"
cat >"$WORK/app.yaml" <<'EOF'
apiVersion: v1
kind: policy
metadata: {name: frontend-policy}
spec:
  order: 50
  selector: app == 'frontend'
  ingress: [{action: allow, protocol: tcp, destination: {ports: [80]}}]
  egress:
  - {action: allow, protocol: tcp, destination: {selector: app == 'database', ports: [6379]}}
---
apiVersion: v1
kind: policy
metadata: {name: database-policy}
spec:
  order: 60
  selector: app == 'database'
  ingress:
  - {action: allow, protocol: tcp, source: {selector: app == 'frontend'}, destination: {ports: [6379]}}
---
apiVersion: v1
kind: workloadEndpoint
metadata: {name: eth0, workload: web-1, orchestrator: cni, node: agent1, labels: {app: frontend}}
spec: {interfaceName: caliweb1, ipNetworks: [10.42.0.5/32]}
---
apiVersion: v1
kind: workloadEndpoint
metadata: {name: eth0, workload: db-1, orchestrator: cni, node: agent2, labels: {app: database}}
spec: {interfaceName: calidb1, ipNetworks: [10.42.64.9/32]}
EOF
run "$TABBY" apply -f "$WORK/app.yaml" --socket "$(sock 1)"
run "$TABBY" get policy -o wide --socket "$(sock 1)"
say "Why is a packet allowed or dropped? The trace names the policy and rule on each side"
run "$TABBY" policy trace --from web-1 --to db-1 --protocol tcp --port 6379 --socket "$(sock 1)"
run "$TABBY" policy trace --from web-1 --to db-1 --protocol tcp --port 22 --socket "$(sock 1)"
say "Each agent compiled its own endpoints into nftables (table inet tabby); agent2's chains:"
sleep 0.5
ip netns exec "$(host_ns 2)" nft list table inet tabby |
	sed -n '/chain tw-calidb1 /,/}/p;/chain pi-database-policy /,/}/p'
say "Selectors work offline too"
run "$TABBY" selector match "app == 'web' && env != 'prod'" --labels '{"app": "web"}'
run "$TABBY" selector canonical "b == 'x' && a in {'z', 'y'}"

say "Every member hashes its whole state at one common revision"
run "$TABBY" cluster hash --socket "$(sock 1)"
say "Done; stopping the agents and removing the hosts"
