#!/usr/bin/env bash
# Policy resources through the real `tabby` binary against a three-member cluster: the issue's
# frontend policy applied from a file and read back on other members, create/replace/delete
# semantics, a file with one bad resource changing nothing, an ipPool applied as a resource being
# the pool `tabby pool show` lists, endpoints and a trace of the frontend/database case, the
# nftables table each agent compiles for its own endpoints (full, then incremental), and the
# calicoctl 0.x profile commands.
source "$(dirname "$0")/lib.sh"
hosts_up 3
bootstrap_cluster 3

# nft_has I PATTERN: host I's table inet tabby mentions PATTERN.
# (The listing is read whole first: grep -q quitting early would fail the pipeline on SIGPIPE.)
nft_has() {
	local t
	t=$(ip netns exec "$(host_ns "$1")" nft list table inet tabby 2>/dev/null) || return 1
	grep -qF -- "$2" <<<"$t"
}

# --- The issue's example applies unchanged and reads back everywhere ---------------------------
cat >"$WORK/frontend.yaml" <<'EOF'
apiVersion: v1
kind: policy
metadata:
  name: frontend-policy
spec:
  order: 50
  selector: app == 'frontend'
  ingress:
  - action: allow
    protocol: tcp
    destination:
      ports:
      - 80
  egress:
  - action: allow
    protocol: tcp
    destination:
      selector: app == 'database'
      ports:
      - 6379
EOF
same "apply the frontend policy" "$(ok 1 apply -f "$WORK/frontend.yaml")" \
	"Successfully applied 1 'policy' resource(s)"
catch_up
same "get policy on agent2" "$(ok 2 get policy)" "NAME
frontend-policy"
ok 3 get policy frontend-policy -o yaml >"$WORK/got.yaml"
grep -q "order: 50" "$WORK/got.yaml" || fail "get -o yaml lost the order: $(cat "$WORK/got.yaml")"
grep -q -- "- ingress" "$WORK/got.yaml" || fail "types were not defaulted: $(cat "$WORK/got.yaml")"
# What get prints applies again unchanged.
same "apply what get printed" "$(ok 2 apply -f "$WORK/got.yaml")" \
	"Successfully applied 1 'policy' resource(s)"
refused 1 1 "policy frontend-policy already exists" create -f "$WORK/frontend.yaml"
refused 1 1 "policy nosuch does not exist" delete policy nosuch

# --- A file with one bad resource changes nothing ----------------------------------------------
cat >"$WORK/mixed.yaml" <<'EOF'
apiVersion: v1
kind: profile
metadata:
  name: good-profile
spec:
  egress:
  - action: allow
---
apiVersion: v1
kind: policy
metadata:
  name: bad-policy
spec:
  selector: app == 'x'
  ingress:
  - action: allow
    protocol: tcp
    destination:
      ports: [70000]
EOF
refused 1 1 "policy bad-policy: spec.ingress[0].destination.ports[0]: 70000 is not a port" \
	apply -f "$WORK/mixed.yaml"
refused 1 1 "profile good-profile does not exist" get profile good-profile
printf 'kind: policy\nmetadata: {name: x\n' >"$WORK/broken.yaml"
refused 1 1 "line 3" apply -f "$WORK/broken.yaml"
# The same check inside the state machine: a create of two where one exists changes nothing.
cat >"$WORK/two.yaml" <<'EOF'
- apiVersion: v1
  kind: profile
  metadata: {name: second-profile}
  spec: {}
- apiVersion: v1
  kind: policy
  metadata: {name: frontend-policy}
  spec: {selector: "all()"}
EOF
refused 2 1 "already exists" create -f "$WORK/two.yaml"
refused 2 1 "profile second-profile does not exist" get profile second-profile

# --- YAML numbers and booleans where a string is wanted are their text, as in calicoctl ----------
cat >"$WORK/numbers.yaml" <<'EOF'
apiVersion: v1
kind: profile
metadata:
  name: numbered
  labels: {version: 2, canary: true, tier: 1.10}
spec:
  ingress:
  - action: allow
    protocol: 6
    destination: {ports: [80]}
EOF
same "apply numeric labels" "$(ok 1 apply -f "$WORK/numbers.yaml")" \
	"Successfully applied 1 'profile' resource(s)"
catch_up
same "the labels are the texts" "$(ok 3 get profile numbered -o json | json 'd["metadata"]["labels"]')" \
	"{'version': '2', 'canary': 'true', 'tier': '1.10'}"
same "the same file again is unchanged" \
	"$(ok 2 apply -f "$WORK/numbers.yaml" -o json | json '[r["outcome"] for r in d["results"]]')" \
	"['unchanged']"
ok 1 get profile numbered -o yaml >"$WORK/numbered.yaml"
same "what get prints is unchanged too" \
	"$(ok 1 apply -f "$WORK/numbered.yaml" -o json | json '[r["outcome"] for r in d["results"]]')" \
	"['unchanged']"
printf '{"apiVersion": "v1", "kind": "profile", "metadata": {"name": "j", "labels": {"v": 2}}}' >"$WORK/numbers.json"
refused 1 1 "profile j: metadata.labels.v: 2 is not a string (quote it)" apply -f "$WORK/numbers.json"
ok 1 delete profile numbered >/dev/null

# --- calicoctl 1.x: get -f, create --skip-exists, delete --skip-not-exists ----------------------
# two.yaml: second-profile does not exist, frontend-policy does.
same "get -f: what exists" "$(ok 3 get -f "$WORK/two.yaml")" "NAME

NAME
frontend-policy"
same "create --skip-exists" "$(ok 1 create --skip-exists -f "$WORK/two.yaml")" \
	"Successfully created 2 resource(s)"
catch_up
same "get -f after it" "$(ok 2 get -f "$WORK/two.yaml" -o json | json '[r["metadata"]["name"] for r in d]')" \
	"['second-profile', 'frontend-policy']"
same "the existing policy was left alone" "$(ok 2 get policy frontend-policy -o json | json 'd["spec"]["selector"]')" \
	"app == 'frontend'"
printf 'apiVersion: v1\nkind: profile\nmetadata: {name: second-profile}\n---\napiVersion: v1\nkind: profile\nmetadata: {name: never-made}\n' >"$WORK/second.yaml"
refused 1 1 "profile never-made does not exist" delete -f "$WORK/second.yaml"
same "delete --skip-not-exists" "$(ok 1 delete -f "$WORK/second.yaml" --skip-not-exists)" \
	"Successfully deleted 2 'profile' resource(s)"
refused 1 1 "profile second-profile does not exist" get profile second-profile
same "delete -s by name" "$(ok 2 delete profile second-profile -s)" \
	"Successfully deleted 1 'profile' resource(s)"

# --- An ipPool applied as a resource is the pool `tabby pool` shows ----------------------------
printf 'apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.77.0.0/16}\nspec: {nat-outgoing: true}\n' |
	tctl 1 apply -f - >"$WORK/out" 2>&1 || fail "apply ipPool: $(cat "$WORK/out")"
catch_up
ok 2 pool show | matches "10.77.0.0/16" || fail "pool show does not list the applied ipPool"
ok 3 get ippool -o wide | matches "10.77.0.0/16" || fail "get ippool does not list it"
# Applied again, with IP-in-IP spelled off and the block size the pool got: unchanged.
printf 'apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.77.0.0/16}\nspec: {nat-outgoing: true, ipip: {enabled: false}}\n' >"$WORK/pool.yaml"
same "an ipPool applied again" "$(ok 2 apply -f "$WORK/pool.yaml" -o json | json '[r["outcome"] for r in d["results"]]')" \
	"['unchanged']"
printf 'apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.77.128.0/17}\nspec: {}\n' >"$WORK/overlap.yaml"
refused 1 1 "10.77" create -f "$WORK/overlap.yaml"
same "delete the ipPool" "$(ok 1 delete ippool 10.77.0.0/16)" \
	"Successfully deleted 1 'ipPool' resource(s)"

# --- Endpoints, the database policy, a trace and the kernel ------------------------------------
cat >"$WORK/app.yaml" <<'EOF'
apiVersion: v1
kind: profile
metadata: {name: calico, tags: [calico]}
spec:
  ingress: [{action: allow, source: {tag: calico}}]
  egress: [{action: allow}]
---
apiVersion: v1
kind: policy
metadata: {name: database-policy}
spec:
  order: 60
  selector: app == 'database'
  ingress:
  - action: allow
    protocol: tcp
    source: {selector: app == 'frontend'}
    destination: {ports: [6379]}
---
apiVersion: v1
kind: workloadEndpoint
metadata: {name: eth0, workload: web-1, orchestrator: cni, node: agent1, labels: {app: frontend}}
spec: {interfaceName: caliweb1, ipNetworks: [192.168.0.5/32], profiles: [calico]}
---
apiVersion: v1
kind: workloadEndpoint
metadata: {name: eth0, workload: db-1, orchestrator: cni, node: agent1, labels: {app: database}}
spec: {interfaceName: calidb1, ipNetworks: [192.168.0.9/32], profiles: [calico]}
---
apiVersion: v1
kind: workloadEndpoint
metadata: {name: eth0, workload: other-1, orchestrator: cni, node: agent2, labels: {app: other}}
spec: {interfaceName: caliother1, ipNetworks: [192.168.1.7/32], profiles: [calico]}
EOF
same "apply the app" "$(ok 1 apply -f "$WORK/app.yaml")" "Successfully applied 5 resource(s)"
catch_up
ok 3 policy trace --from web-1 --to db-1 --protocol tcp --port 6379 >"$WORK/trace"
grep -q "^verdict: ALLOW" "$WORK/trace" || fail "web-1 -> db-1:6379 not allowed: $(cat "$WORK/trace")"
grep -q "frontend-policy" "$WORK/trace" || fail "the trace does not name frontend-policy"
ok 2 policy trace --from web-1 --to db-1 --protocol tcp --port 22 >"$WORK/trace"
grep -q "^verdict: DENY" "$WORK/trace" || fail "web-1 -> db-1:22 not denied: $(cat "$WORK/trace")"
ok 2 policy trace --from other-1 --to db-1 --protocol tcp --port 6379 -o json >"$WORK/trace"
[ "$(json 'd["verdict"]' <"$WORK/trace")" = deny ] || fail "other-1 -> db-1 not denied"
refused 1 1 "nosuch" policy trace --from nosuch --to db-1 --protocol tcp

# Each agent compiled its own endpoints into its table: agent1 both, agent2 its one, agent3 none.
wait_for "agent1's chains" 10 nft_has 1 "chain tw-calidb1"
wait_for "agent2's chains" 10 nft_has 2 "chain tw-caliother1"
nft_has 1 "chain fw-caliweb1" || fail "agent1 has no chain for caliweb1"
! nft_has 3 "chain tw-" || fail "agent3 has endpoint chains without endpoints"
nft_has 1 "192.168.0.5" || fail "agent1's selector set lacks the frontend's address: $(ip netns exec "$(host_ns 1)" nft list table inet tabby)"
log "ok: every agent compiled its own endpoints"
# Incremental: a deleted policy leaves the kernel; a new endpoint arrives.
ok 2 delete policy database-policy >/dev/null
wait_for "database-policy's chains to go" 10 eval '! nft_has 1 database-policy' 
printf 'apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: web-2, orchestrator: cni, node: agent3, labels: {app: frontend}}\nspec: {interfaceName: caliweb2, ipNetworks: [192.168.2.4/32], profiles: [calico]}\n' |
	tctl 2 apply -f - >/dev/null 2>&1 || fail "apply web-2"
wait_for "agent3's new endpoint chain" 10 nft_has 3 "chain fw-caliweb2"
log "ok: incremental changes reach the kernel"

# --- calicoctl 0.x profile commands --------------------------------------------------------------
ok 1 profile add WEB >/dev/null
same "profile add twice" "$(ok 2 profile add WEB)" "Profile WEB already exists."
ok 1 profile WEB rule add inbound allow tcp from tag DB to ports 3306 >/dev/null
ok 3 profile WEB rule add outbound --at=1 deny udp to ports 53 >/dev/null
catch_up
same "rule show" "$(ok 2 profile WEB rule show)" "Inbound rules:
   1 allow from tag WEB
   2 allow tcp from tag DB to ports 3306
Outbound rules:
   1 deny udp to ports 53
   2 allow"
ok 1 profile WEB tag add DB >/dev/null
catch_up
same "tag show" "$(ok 3 profile WEB tag show)" "WEB
DB"
ok 2 profile WEB rule remove inbound --at=2 >/dev/null
catch_up
same "rule show after remove" "$(ok 1 profile WEB rule show)" "Inbound rules:
   1 allow from tag WEB
Outbound rules:
   1 deny udp to ports 53
   2 allow"
ok 1 get profile WEB -o json | matches '"DB"' || fail "get profile does not show the tag"
refused 1 1 "calico" profile remove calico
ok 1 profile remove WEB >/dev/null
refused 1 1 "profile WEB does not exist" get profile WEB

# Every replica agrees.
wait_for "hashes to agree" 10 hash_agrees 1
pass
