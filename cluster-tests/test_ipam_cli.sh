#!/usr/bin/env bash
# IPAM through the real `tabby` binary against a three-member cluster: the default pools and
# their calicoctl-style table, pool add (several CIDRs, options, an identical CIDR rewrites the
# options, calicoctl 0.x's bare --ipip), pool range add, bad pools refused with one line each and
# nothing half-applied, ipam assign / show / release, an exhausted pool, addresses outside every
# pool or already in use, strict affinity, ipam check, and a pool removal refused while in use,
# then forced.
source "$(dirname "$0")/lib.sh"
# Address counts here are exact: no route dataplane, which would assign tunnel addresses for
# the IP-in-IP and VXLAN pools these tests make (test_cni_net.sh covers that).
export TABBY_NO_ROUTES=1
hosts_up 3
bootstrap_cluster 3

# --- The default pools, as every member shows them -------------------------------------------
has_default_pools() { tctl "$1" pool show -o json | matches '192.168.0.0/16'; }
for i in 1 2 3; do wait_for "the default pools on agent$i" 20 has_default_pools "$i"; done
default4='+----------------+---------+
|   IPv4 CIDR    | Options |
+----------------+---------+
| 192.168.0.0/16 |         |
+----------------+---------+'
if [ -d /proc/sys/net/ipv6 ]; then
	default6='+--------------------------+---------+
|        IPv6 CIDR         | Options |
+--------------------------+---------+
| fd80:24e2:f998:72d6::/64 |         |
+--------------------------+---------+'
	v6pool="fd80:24e2:f998:72d6::/64"
else
	default6='+-----------+---------+
| IPv6 CIDR | Options |
+-----------+---------+
+-----------+---------+'
	v6pool=""
fi
same "pool show of the default pools on a follower" "$(ok 2 pool show)" "$default4"$'\n'"$default6"
same "pool show --ipv4" "$(ok 3 pool show --ipv4)" "$default4"
same "pool show --ipv6" "$(ok 1 pool show --ipv6)" "$default6"
same "pool show -o json" "$(ok 1 pool show --ipv4 -o json | json 'd')" \
	"[{'cidr': '192.168.0.0/16', 'block_size': 26, 'ipip': 'never', 'vxlan': 'never', 'nat_outgoing': False, 'disabled': False, 'removing': False, 'node_selector': 'all()'}]"

# --- Adding pools ----------------------------------------------------------------------------
same "pool add prints nothing" \
	"$(ok 1 pool add 10.10.0.0/16 10.20.0.0/24 --ipip always --nat-outgoing --block-size 28)" ""
ok 2 pool add fd10::/64 --vxlan always >/dev/null
table='+----------------+---------------------------------+
|   IPv4 CIDR    |             Options             |
+----------------+---------------------------------+
| 10.10.0.0/16   | ipip,nat-outgoing,block-size:28 |
| 10.20.0.0/24   | ipip,nat-outgoing,block-size:28 |
| 192.168.0.0/16 |                                 |
+----------------+---------------------------------+'
catch_up
same "pool show after adding pools with options" "$(ok 3 pool show --ipv4)" "$table"
[[ "$(ok 3 pool show --ipv6)" == *"| fd10::/64 "*"| vxlan "* ]] || fail "fd10::/64 not shown with vxlan: $(ok 3 pool show --ipv6)"

# The same CIDR again rewrites its options; without --block-size it keeps its block size.
ok 1 pool add 10.20.0.0/24 --disabled --vxlan cross-subnet >/dev/null
catch_up
same "an identical CIDR updates the options" \
	"$(ok 2 pool show --ipv4 | grep 10.20.0.0/24 | tr -s ' ')" \
	"| 10.20.0.0/24 | vxlan:cross-subnet,disabled,block-size:28 |"
same "the updated pool in JSON" \
	"$(ok 2 pool show -o json | json '[p for p in d if p["cidr"] == "10.20.0.0/24"][0]')" \
	"{'cidr': '10.20.0.0/24', 'block_size': 28, 'ipip': 'never', 'vxlan': 'cross-subnet', 'nat_outgoing': False, 'disabled': True, 'removing': False, 'node_selector': 'all()'}"
# A pool of /28 blocks may be a /28, and its options change without repeating --block-size.
ok 1 pool add 10.21.0.0/28 --block-size 28 >/dev/null
ok 1 pool add 10.21.0.0/28 --nat-outgoing >/dev/null
same "a /28 pool's options updated" "$(ok 1 pool show --ipv4 | grep 10.21.0.0/28 | tr -s ' ')" \
	"| 10.21.0.0/28 | nat-outgoing,block-size:28 |"

# calicoctl 0.x's syntax: a bare --ipip is always, before or after the CIDRs.
ok 1 pool add 10.22.0.0/24 --ipip --nat-outgoing >/dev/null
ok 1 pool add --ipip 10.23.0.0/24 >/dev/null
same "a bare --ipip" "$(ok 1 pool show --ipv4 | grep -E '10[.]2[23][.]' | tr -s ' ')" \
	"| 10.22.0.0/24 | ipip,nat-outgoing |
| 10.23.0.0/24 | ipip |"
# calicoctl 0.x's pool range add: the fewest CIDRs that cover the range, all or none.
same "pool range add prints nothing" "$(ok 2 pool range add 10.24.0.0 10.24.1.127 --nat-outgoing)" ""
catch_up
same "the range's pools" "$(ok 3 pool show --ipv4 | grep -E '10[.]24[.]' | tr -s ' ')" \
	"| 10.24.0.0/24 | nat-outgoing |
| 10.24.1.0/25 | nat-outgoing |"
refused 1 1 "Cannot add range - range conflicts with pool 10.24.1.0/25" \
	pool range add 10.24.1.64 10.24.2.255
refused 1 2 "pool 10.25.0.64/27 is too small" pool range add 10.25.0.0 10.25.0.100
[ -z "$(ok 1 pool show --ipv4 | grep -E '10[.]2(4[.]2|5)[.]')" ] || fail "a refused range added pools"
ok 1 pool remove 10.22.0.0/24 10.23.0.0/24 10.24.0.0/24 10.24.1.0/25 >/dev/null

# --- Bad pools: one line each, nothing changed -----------------------------------------------
before=$(ok 1 pool show -o json)
refused 1 1 10.10.128.0/17 pool add 10.10.128.0/17
refused 1 1 10.0.0.0/8 pool add 10.0.0.0/8
refused 2 1 10.30.0.0/27 pool add 10.30.0.0/27
refused 2 2 10.30.0.0/27 pool add 10.30.0.0/27 --block-size 26
refused 2 2 169.254.0.0/16 pool add 169.254.0.0/16
refused 3 2 fe80::/64 pool add fe80::/64
refused 3 2 fd20::/64 pool add fd20::/64 --ipip always
refused 1 2 10.30.0.1/16 pool add 10.30.0.1/16
refused 1 2 "'sometimes'" pool add 10.30.0.0/16 --ipip=sometimes
refused 1 2 '"sometimes" is not a CIDR' pool add 10.30.0.0/16 --ipip sometimes
# All or nothing: a good CIDR with a bad one adds neither, whether the CLI or the agent finds it.
refused 1 2 10.40.0.1/24 pool add 10.40.0.0/16 10.40.0.1/24
refused 1 1 10.50.0.0/27 pool add 10.40.0.0/16 10.50.0.0/27
refused 1 1 10.10.0.0/17 pool add 10.40.0.0/16 10.10.0.0/17
refused 1 2 10.41.0.0/17 pool add 10.41.0.0/16 10.41.0.0/17
refused 2 1 10.99.0.0/16 pool remove 10.99.0.0/16
same "the pools after the refused commands" "$(ok 1 pool show -o json)" "$before"

# --- Assigning -------------------------------------------------------------------------------
# Automatic, IPv4 and IPv6 (when the host has IPv6), from the enabled pools.
auto6=""
if [ -n "$v6pool" ]; then
	got=$(ok 2 ipam assign --node agent2 --handle h-auto --ipv4 1 --ipv6 1 --attr owner=test --attr team=net)
	[ "$(wc -l <<<"$got")" = 2 ] || fail "assign --ipv4 1 --ipv6 1 printed: $got"
	auto6=$(sed -n 2p <<<"$got")
	[[ "$auto6" == *:* ]] || fail "the second address is not IPv6: $got"
else
	got=$(ok 2 ipam assign --node agent2 --handle h-auto --attr owner=test --attr team=net)
	[ "$(wc -l <<<"$got")" = 1 ] || fail "assign printed: $got"
fi
auto4=$(sed -n 1p <<<"$got")
[[ "$auto4" =~ ^(10\.10|192\.168)\. ]] || fail "automatic IPv4 address $auto4 is not from an enabled pool"
log "ok: automatic assignment -> $(tr '\n' ' ' <<<"$got")"
catch_up
shown=$(ok 3 ipam show --ip "$auto4")
gen=$(ok 3 ipam show --ip "$auto4" -o json | json 'd["gen"]')
block=$(ok 3 ipam show --ip "$auto4" -o json | json 'd["block"]')
same "ipam show --ip of an automatic address" "$shown" "$auto4 is assigned
  handle: h-auto
  node: agent2
  block: $block (affinity: agent2)
  generation: $gen
  attributes: owner=test, team=net"

# Explicit.
same "assign --ip" "$(ok 3 ipam assign --node agent3 --handle h-ip --ip 192.168.50.7)" "192.168.50.7"
catch_up
gen7=$(ok 1 ipam show --ip 192.168.50.7 -o json | json 'd["gen"]')
same "ipam show --ip of an explicit address" "$(ok 1 ipam show --ip 192.168.50.7)" "192.168.50.7 is assigned
  handle: h-ip
  node: agent3
  block: 192.168.50.0/26 (affinity: agent3)
  generation: $gen7
  attributes: none"
same "ipam show --ip of a free address" "$(ok 1 ipam show --ip 192.168.50.8)" "192.168.50.8 is not assigned"

# An IPv6 address from the default pool, whose size does not fit in 64 bits.
if [ -n "$v6pool" ]; then
	v6=$(ok 3 ipam assign --node agent3 --handle h-v6 --ipv6 1 --pool "$v6pool")
	[[ "$v6" == fd80:24e2:f998:72d6:* ]] || fail "--ipv6 1 --pool $v6pool gave $v6"
fi

# From the pools named, as JSON.
two=$(ok 1 ipam assign --node agent1 --handle h-pool --pool 10.10.0.0/16 --ipv4 2 -o json)
[ "$(json 'len(d)' <<<"$two")" = 2 ] || fail "assign --ipv4 2 -o json: $two"
json '"\n".join(x["ip"] for x in d)' <<<"$two" >"$WORK/two"
while read -r ip; do [[ "$ip" == 10.10.* ]] || fail "--pool 10.10.0.0/16 gave $ip"; done <"$WORK/two"
log "ok: assign --pool -> $(tr '\n' ' ' <"$WORK/two")"
refused 1 1 10.20.0.0/24 ipam assign --node agent1 --handle h-off --pool 10.20.0.0/24

# --- Mistakes ----------------------------------------------------------------------------------
refused 2 1 192.168.50.7 ipam assign --node agent2 --handle h-again --ip 192.168.50.7
refused 2 1 172.16.0.1 ipam assign --node agent2 --handle h-out --ip 172.16.0.1
rc=0
tctl 1 ipam assign --node agent1 >/dev/null 2>"$WORK/err" || rc=$?
[ "$rc" = 2 ] && grep -q "missing --handle" "$WORK/err" || fail "assign without --handle: $rc $(cat "$WORK/err")"

# An exhausted pool: a /26 holds one block of 64 addresses.
ok 1 pool add 10.60.0.0/26 >/dev/null
same "64 addresses from a /26" \
	"$(ok 2 ipam assign --node agent2 --handle h-full --pool 10.60.0.0/26 --ipv4 64 | sort -u | wc -l)" 64
refused 3 1 "not enough free IPv4 addresses in 10.60.0.0/26: 1 asked for, 0 free" \
	ipam assign --node agent3 --handle h-more --pool 10.60.0.0/26

# --- Showing -----------------------------------------------------------------------------------
catch_up
blocks=$(ok 1 ipam show --blocks)
same "ipam show --blocks header" "$(head -n 1 <<<"$blocks" | tr -s ' ')" "BLOCK POOL AFFINITY USED SIZE FULL%"
same "the /26 block" "$(grep '^10.60.0.0/26 ' <<<"$blocks" | tr -s ' ')" "10.60.0.0/26 10.60.0.0/26 agent2 64 64 100"
same "the explicit address's block" "$(grep '^192.168.50.0/26 ' <<<"$blocks" | tr -s ' ')" \
	"192.168.50.0/26 192.168.0.0/16 agent3 1 64 1"
if [ -n "$v6pool" ]; then
	same "ipam show --ip of an IPv6 address" "$(ok 1 ipam show --ip "$v6" | sed -n 1,3p)" \
		"$v6 is assigned"$'\n'"  handle: h-v6"$'\n'"  node: agent3"
fi
usage=$(ok 2 ipam show)
same "ipam show header" "$(head -n 1 <<<"$usage" | tr -s ' ')" "POOL TOTAL IN USE FREE"
same "usage of the /26" "$(grep '^10.60.0.0/26 ' <<<"$usage" | tr -s ' ')" "10.60.0.0/26 64 64 0"
same "usage of the disabled pool" "$(grep '^10.20.0.0/24 ' <<<"$usage" | tr -s ' ')" "10.20.0.0/24 256 0 256"
in_use=$(awk 'NR > 1 { n += $3 } END { print n }' <<<"$usage")
want=$((64 + 1 + 2 + 1))
[ -n "$v6pool" ] && want=$((want + 2))
same "addresses in use over every pool" "$in_use" "$want"
if [ -n "$v6pool" ]; then
	v6row=$(grep "^$v6pool " <<<"$usage" | tr -s ' ')
	used6=$(cut -d' ' -f3 <<<"$v6row")
	python3 -c "import sys; t, u, f = map(int, sys.argv[1:]); sys.exit(0 if t == 2**64 and u >= 1 and t - u == f else 1)" \
		"$(cut -d' ' -f2 <<<"$v6row")" "$used6" "$(cut -d' ' -f4 <<<"$v6row")" ||
		fail "IPv6 pool usage row: $v6row"
	log "ok: IPv6 usage $v6row"
fi
same "ipam show -o json is the agent's answer" \
	"$(ok 3 ipam show -o json | json 'sorted(d.keys())')" "['pools']"

# --- Releasing ---------------------------------------------------------------------------------
same "release by handle" "$(ok 3 ipam release --handle h-pool | sort)" "$(sort "$WORK/two")"
catch_up
same "a released address" "$(ok 1 ipam show --ip "$(head -n 1 "$WORK/two")")" \
	"$(head -n 1 "$WORK/two") is not assigned"
refused 1 1 h-pool ipam release --handle h-pool
refused 2 1 192.168.50.7 ipam release --ip 192.168.50.7 --gen $((gen7 + 100000))
same "release by address and generation" "$(ok 2 ipam release --ip 192.168.50.7 --gen "$gen7")" "192.168.50.7"
refused 2 1 192.168.50.7 ipam release --ip 192.168.50.7
same "release by address" "$(ok 1 ipam release --ip "$auto4")" "$auto4"
if [ -n "$auto6" ]; then
	same "release of the rest of a handle" "$(ok 3 ipam release --handle h-auto)" "$auto6"
fi

# --- Configuration -----------------------------------------------------------------------------
same "ipam config" "$(ok 1 ipam config)" "strict-affinity: false"
same "ipam config --strict-affinity true" "$(ok 2 ipam config --strict-affinity true)" "strict-affinity: true"
catch_up
same "ipam config on another member" "$(ok 3 ipam config)" "strict-affinity: true"
# With strict affinity, agent1 may not take an address from agent3's block.
refused 1 1 192.168.50.9 ipam assign --node agent1 --handle h-strict --ip 192.168.50.9
same "ipam config --strict-affinity false" "$(ok 3 ipam config --strict-affinity false -o json | json 'd["strict_affinity"]')" "False"

# --- Check and removal -------------------------------------------------------------------------
catch_up
same "ipam check" "$(ok 1 ipam check)" "no problems found"
same "ipam check -o json" "$(ok 2 ipam check -o json | json 'd["problems"]')" "[]"
before=$(ok 1 pool show -o json)
refused 1 1 64 pool remove 10.60.0.0/26
refused 1 1 10.60.0.0/26 pool remove 10.20.0.0/24 10.60.0.0/26
same "the pools after the refused removal" "$(ok 1 pool show -o json)" "$before"
same "pool remove --force of a pool in use" "$(ok 2 pool remove 10.60.0.0/26 --force)" \
	"10.60.0.0/26 has addresses in use: disabled, it goes with the last one"
catch_up
same "the pool being removed" "$(ok 3 pool show --ipv4 | grep 10.60.0.0/26 | tr -s ' ')" \
	"| 10.60.0.0/26 | disabled,removing |"
refused 1 1 10.60.0.0/26 ipam assign --node agent1 --handle h-late --pool 10.60.0.0/26
[ "$(ok 1 ipam release --handle h-full | wc -l)" = 64 ] || fail "release of the /26's 64 addresses"
gone() { ! tctl "$1" pool show -o json | matches 10.60.0.0/26; }
wait_for "the removed pool to go with its last address" 10 gone 3
same "pool remove of unused pools" "$(ok 1 pool remove 10.20.0.0/24 10.21.0.0/28 fd10::/64)" ""
catch_up
same "ipam check after everything" "$(ok 3 ipam check)" "no problems found"
wait_for "equal hashes" 10 hash_agrees 1
same "no command failed" "" ""
pass
