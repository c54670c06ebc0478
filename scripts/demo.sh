#!/usr/bin/env bash
# demo.sh: the main job. Installs and builds (scripts/setup.sh), starts a three-host Tabby cluster
# on this machine (each host a network namespace, one agent each) and shows it at work: the
# cluster forming and surviving its leader's death, containers (network namespaces) wired by the
# real CNI plugin through cnitool with the Calico config Mesos users already have, addresses from
# per-host blocks, cross-host pings, the frontend/database policy from calicoctl v1 YAML proven by
# real TCP connections allowed and refused, the trace that explains a verdict, each host's
# nftables chains and routes, and every replica hashing to the same state.
# Everything it starts is stopped and removed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (hosts are network namespaces)" >&2; exit 2; }
"$ROOT/scripts/setup.sh"
source "$ROOT/cluster-tests/lib.sh"
source "$ROOT/cluster-tests/cni-lib.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "Three hosts; agent1 bootstraps the cluster, agent2 and agent3 join with its token"
hosts_up 3
bootstrap_cluster 3
run "$TABBY" cluster status --socket "$(sock 1)"

L=$(leader_index 1)
say "Killing the leader (agent$L) with SIGKILL; the others elect a new one and carry on"
kill_agent "$L"
other=$((L % 3 + 1))
wait_for "a new leader" 20 bash -c "l=\$(\"$TABBY\" cluster status -o json --socket $(sock $other) | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"leader\"] or \"\")'); [ -n \"\$l\" ] && [ \"\$l\" != agent$L ]"
run "$TABBY" store put /demo/after-failover yes --socket "$(sock "$other")"
start_agent "$L"
wait_for "three healthy members" 30 members_healthy "$other" 3
run "$TABBY" store get /demo/after-failover --socket "$(sock "$L")"

say "The CNI config Mesos users already have for Calico, unchanged but for the agent's socket"
cni_setup
cat "$WORK/net.d/1/calico-net-1.conf"

say "Containers started through cnitool (a real CNI runtime), with Mesos NetworkInfo labels"
add() { # add CONTAINER HOST ROLE
	local dir
	dir=$(labelled_conf "$2" calico-net-1 "role=$3")
	cnt_new "$1"
	NETCONF_DIR=$dir cnt_add "$2" "$1" calico-net-1
	printf '  %-9s on agent%s  role=%-9s %-16s host side %s\n' "$1" "$2" "$3" "$(cnt_ip "$1")" \
		"$(host_if "$1")"
}
add frontend 1 frontend
add database 2 database
add intruder 3 other
FE=$(cnt_ip frontend)
DB=$(cnt_ip database)
run "$TABBY" get workloadendpoint -o wide --socket "$(sock 3)"

say "Each host routes the others' blocks (Tabby's routes carry protocol number 116)"
run ip -n "$(host_ns 3)" route show proto 116

say "Cross-host pings between containers"
catch_up
ping_line() {
	local n
	for n in 1 2 3; do
		cnt_ping "$1" "$2" && { echo "  $1 -> $2: reply"; return; }
	done
	echo "  $1 -> $2: no reply"
}
ping_line frontend "$DB"
ping_line database "$FE"
ping_line intruder "$FE"

say "The frontend/database policy as calicoctl v1 YAML"
cat >"$WORK/app.yaml" <<'YAML'
# frontend takes tcp 80 from anyone and reaches the database on 6379;
# nothing else reaches the database
apiVersion: v1
kind: policy
metadata: {name: frontend}
spec:
  order: 50
  selector: role == 'frontend'
  ingress: [{action: allow, protocol: tcp, destination: {ports: [80]}}]
  egress:
  - {action: allow, protocol: tcp, destination: {selector: role == 'database', ports: [6379]}}
---
apiVersion: v1
kind: policy
metadata: {name: database}
spec:
  order: 60
  selector: role == 'database'
  ingress:
  - {action: allow, protocol: tcp, source: {selector: role == 'frontend'}, destination: {ports: [6379]}}
  - {action: deny}
YAML
cat "$WORK/app.yaml"
run "$TABBY" apply -f "$WORK/app.yaml" --socket "$(sock 1)"
cnt_listen frontend 80 "frontend-says-hello"
cnt_listen database 6379 "database-says-hello"
cnt_listen database 22 "database-ssh"
catch_up
sleep 0.5
try() { # try FROM ADDR PORT
	local got
	got=$(cnt_connect "$1" "$2" "$3" || true)
	printf '  %-9s -> %s:%-5s %s\n' "$1" "$2" "$3" "${got:-refused (no answer)}"
}
try intruder "$FE" 80
try frontend "$DB" 6379
try intruder "$DB" 6379
try frontend "$DB" 22

say "Why? The trace names the policy and rule on each side"
run "$TABBY" policy trace --from "$(cnt_ip intruder)" --to "$DB" --protocol tcp --port 6379 \
	--socket "$(sock 1)"

say "agent2 compiled its database container into nftables (table inet tabby):"
ip netns exec "$(host_ns 2)" nft list table inet tabby | sed -n "/chain tw-$(host_if database) /,/}/p"

say "No container reaches the control plane: its host refuses every member's peer and API port"
for i in 3 1; do
	for port in 7791 7790; do
		if ip netns exec "$(cnt_ns intruder)" timeout 3 bash -c "exec 3<>/dev/tcp/$(host_ip "$i")/$port" 2>/dev/null; then
			printf '  intruder  -> %s:%-5s connected\n' "$(host_ip "$i")" "$port"
		else
			printf '  intruder  -> %s:%-5s refused\n' "$(host_ip "$i")" "$port"
		fi
	done
done
ip netns exec "$(host_ns 3)" nft list table inet tabby-guard | sed -n '/set agents4/,/}/p'

say "DEL releases the address; a second DEL succeeds too"
cnt_del 3 intruder calico-net-1
cnt_del 3 intruder calico-net-1
run "$TABBY" ipam show --socket "$(sock 1)"

say "Every member hashes its whole state at one common revision"
run "$TABBY" cluster hash --socket "$(sock 1)"
say "Done; stopping the agents and removing the hosts and containers"
