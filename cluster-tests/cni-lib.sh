# Helpers for containers and the CNI plugin, shared by the CNI cluster tests (sourced after
# lib.sh), the Vagrant provisioning (cluster-tests/vagrant/*.sh, where the "host" is the machine
# itself) and the demo.
#
# Part one needs nothing but bash, python3 and the files it names, so a VM can use it:
#   cni_install_plugins DIR PLUGIN       tabby, tabby-ipam, calico, calico-ipam -> PLUGIN, plus the
#                                        reference bridge, host-local and loopback plugins
#   cni_write_conf FILE NAME SOCKET [JSON]  a calico-style network config, JSON merged over it
#   cni_find_cnitool                     the path of cnitool, or a message and status 1
#
# Part two drives containers (network namespaces) in the namespace "hosts" of lib.sh:
#   cni_setup                            CNI_BIN and a NETCONFPATH per host under $WORK
#   net_conf I NET [JSON] / labelled_conf I NET KEY=VALUE...   more networks, Mesos labels
#   cnt_new C / cnt_ns C                 a container and its namespace name
#   cnt_add I C NET [IFNAME [CNI_ARGS]]  cnitool add in host I; the result in $WORK/res/C.NET.IFNAME
#   cnt_del I C NET [IFNAME] / cnt_check I C NET [IFNAME]
#   cnt_ip C [IFNAME] / cnt_ip6 C [IFNAME]   the container's address, as the kernel has it
#   host_if C [IFNAME]                   the host-side name of its interface
#   cnt_ping C ADDR / cnt_listen C PORT [WORD] / cnt_connect C ADDR PORT
#   reaches C ADDR PORT WORD / blocked C ADDR PORT   a TCP connection is answered / is not
#   in_use I / pool_in_use I CIDR / endpoints I      what the cluster holds, as agent I sees it
#   cni_plugin I CMD CID NETNS IFNAME CONF   the plugin run as a runtime (Mesos) runs it
#   cni_error STATUS CODE [SUBSTRING]    the last cni_plugin call failed the CNI way
#   cnitool_error STATUS SUBSTRING       the last cnitool call failed, saying SUBSTRING
#   web_policy FILE                      a calicoctl v1 policy: app=web takes traffic from app=lb

# --- Part one: installation --------------------------------------------------------------------

# The reference plugins (Debian's containernetworking-plugins, or the upstream tarball's place).
cni_ref_dir() {
	local d
	for d in /usr/lib/cni /opt/cni/bin; do
		[ -x "$d/bridge" ] && { echo "$d"; return 0; }
	done
	return 1
}

# cni_install_plugins DIR PLUGIN: DIR holds the plugin under its four names (symlinks, so the
# plugin sees which name it was run as) and links to the reference bridge, host-local and loopback
# plugins when this machine has them.
cni_install_plugins() {
	local dir=$1 plugin=$2 ref n
	[ -x "$plugin" ] || { echo "cni: no plugin binary at $plugin" >&2; return 1; }
	mkdir -p "$dir"
	for n in tabby tabby-ipam calico calico-ipam; do ln -sfn "$plugin" "$dir/$n"; done
	if ref=$(cni_ref_dir) && [ "$ref" != "$dir" ]; then
		for n in bridge host-local loopback; do ln -sfn "$ref/$n" "$dir/$n"; done
	fi
}

# cni_write_conf FILE NAME SOCKET [JSON]: the seeds' own calico config for network NAME, talking
# to the agent at SOCKET, with JSON merged over it (objects merge key by key; a null removes the
# key). Example: cni_write_conf f.conf calico-net-1 /run/tabby/tabby.sock '{"cniVersion": "0.4.0"}'
cni_write_conf() {
	python3 - "$@" <<'PY'
import json, sys
path, name, sock = sys.argv[1:4]
conf = {"name": name, "type": "calico", "ipam": {"type": "calico-ipam"},
        "etcd_endpoints": "http://127.0.0.1:2379", "agent_socket": sock}
def merge(into, over):
    for k, v in over.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
if len(sys.argv) > 4 and sys.argv[4]:
    merge(conf, json.loads(sys.argv[4]))
with open(path, "w") as f:
    json.dump(conf, f, indent=1)
    f.write("\n")
PY
}

# cni_find_cnitool: the reference CNI runtime, built by scripts/setup.sh into .deps/bin.
cni_find_cnitool() {
	local root
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	for c in "${CNITOOL:-}" "$root/.deps/bin/cnitool" "$(command -v cnitool 2>/dev/null)"; do
		[ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
	done
	echo "cni: no cnitool (scripts/setup.sh builds it into .deps/bin with ../shared/tools/build-cnitool.sh)" >&2
	return 1
}

# --- Part two: containers in the namespace hosts of lib.sh ------------------------------------

declare -a CNT_NS=() CNT_PIDS=()
declare -A CNT_HOST=() # container -> the host it was added on

cni_cleanup() {
	local p n
	for p in "${CNT_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	[ ${#CNT_NS[@]} -gt 0 ] || return 0
	# cnitool keeps each result under /var/lib/cni, named by the container ID it derives from
	# the namespace's path: remove ours.
	python3 - "${CNT_NS[@]}" <<'PY' || true
import glob, hashlib, os, sys
for n in sys.argv[1:]:
    cid = "cnitool-" + hashlib.sha512(("/var/run/netns/" + n).encode()).hexdigest()[:20]
    for f in glob.glob("/var/lib/cni/results/*-%s-*" % cid):
        os.unlink(f)
PY
	for n in "${CNT_NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}
# Under lib.sh, containers go before the hosts; and a test stopped by a signal (test.sh's
# timeout) cleans up too, or its hundreds of namespaces would stay.
if declare -F cleanup >/dev/null; then
	trap 'cni_cleanup; cleanup' EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
fi

# cnitool_cid NETNS_PATH: the container ID cnitool 1.1 uses for a namespace path.
cnitool_cid() {
	python3 -c 'import hashlib, sys; print("cnitool-" + hashlib.sha512(sys.argv[1].encode()).hexdigest()[:20])' "$1"
}

# cni_setup: CNI_BIN (the plugin under its names, the reference plugins), CNITOOL, and for each
# host I a NETCONFPATH $WORK/net.d/I holding calico-net-1 (cniVersion 0.4.0) for agent I.
cni_setup() {
	local i
	CNI_PLUGIN=${CNI_PLUGIN:-$ROOT/build/cni/tabby-cni}
	[ -x "$CNI_PLUGIN" ] || fail "no CNI plugin at $CNI_PLUGIN (build it: ninja -C build)"
	CNITOOL=$(cni_find_cnitool) || fail "no cnitool: run scripts/setup.sh (it builds .deps/bin/cnitool)"
	CNI_BIN=$WORK/cni-bin
	cni_install_plugins "$CNI_BIN" "$CNI_PLUGIN" || fail "cannot install the plugin into $CNI_BIN"
	cni_ref_dir >/dev/null || fail "no reference CNI plugins (apt-get install containernetworking-plugins)"
	mkdir -p "$WORK/res"
	for ((i = 1; i <= NHOSTS; i++)); do
		mkdir -p "$WORK/net.d/$i"
		net_conf "$i" calico-net-1 '{"cniVersion": "0.4.0"}'
	done
}

# web_policy FILE: policy web-from-lb (app == 'web' takes traffic from app == 'lb'), as YAML.
web_policy() {
	cat >"$1" <<'EOF'
apiVersion: v1
kind: policy
metadata:
  name: web-from-lb
spec:
  selector: app == 'web'
  ingress:
  - action: allow
    source:
      selector: app == 'lb'
EOF
}

# net_conf I NAME [JSON]: network NAME for host I (file NAME.conf in its NETCONFPATH).
net_conf() { cni_write_conf "$WORK/net.d/$1/$2.conf" "$2" "$(sock "$1")" "${3:-}"; }

# labelled_conf I NET KEY=VALUE...: a config directory for host I whose NET carries these Mesos
# labels (each container's own NetworkInfo, as Mesos writes it); prints the directory.
labelled_conf() {
	local i=$1 net=$2 dir
	shift 2
	dir=$(mktemp -d "$WORK/net.d/$i-XXXX")
	cni_write_conf "$dir/$net.conf" "$net" "$(sock "$i")" "$(python3 -c '
import json, sys
labels = [dict(zip(("key", "value"), kv.split("=", 1))) for kv in sys.argv[2:]]
print(json.dumps({"cniVersion": "0.4.0", "args": {"org.apache.mesos": {"network_info": {
    "name": sys.argv[1], "labels": {"labels": labels}}}}}))' "$net" "$@")"
	echo "$dir"
}

cnt_ns() { echo "${PFX}c-$1"; }

# cnt_new C: an empty container (network namespace) with its loopback up.
cnt_new() {
	local ns
	ns=$(cnt_ns "$1")
	ip netns add "$ns" || fail "ip netns add $ns"
	CNT_NS+=("$ns")
	ip -n "$ns" link set lo up
}

cnt_gone() { ip netns del "$(cnt_ns "$1")"; }

# cnitool_run I CMD C NET [IFNAME [CNI_ARGS]]: cnitool in host I (NETCONF_DIR overrides its
# config directory); stdout in $WORK/out, stderr in $WORK/err; returns cnitool's status.
cnitool_run() {
	local i=$1 cmd=$2 c=$3 net=$4 ifname=${5:-eth0} args=${6:-}
	ip netns exec "$(host_ns "$i")" env CNI_PATH="$CNI_BIN" NETCONFPATH="${NETCONF_DIR:-$WORK/net.d/$i}" \
		CNI_IFNAME="$ifname" CNI_ARGS="$args" "$CNITOOL" "$cmd" "$net" "/var/run/netns/$(cnt_ns "$c")" \
		>"$WORK/out" 2>"$WORK/err"
}

# cnt_add I C NET [IFNAME [CNI_ARGS]]: attach container C to NET through host I, or fail.
cnt_add() {
	local i=$1 c=$2 net=$3 ifname=${4:-eth0}
	cnitool_run "$i" add "$c" "$net" "$ifname" "${5:-}" ||
		fail "cnitool add $net $c on host $i: $(cat "$WORK/out" "$WORK/err")"
	CNT_HOST[$c]=$i
	cp "$WORK/out" "$WORK/res/$c.$net.$ifname"
}
cnt_del() {
	cnitool_run "$1" del "$2" "$3" "${4:-eth0}" || fail "cnitool del $3 $2 on host $1: $(cat "$WORK/out" "$WORK/err")"
}
cnt_check() { cnitool_run "$1" check "$2" "$3" "${4:-eth0}"; }

# res C NET [IFNAME]: the saved ADD result.
res() { cat "$WORK/res/$1.$2.${3:-eth0}"; }

cnt_ip() { ip -n "$(cnt_ns "$1")" -o -4 addr show dev "${2:-eth0}" scope global | awk '{split($4, a, "/"); print a[1]; exit}'; }
cnt_ip6() { ip -n "$(cnt_ns "$1")" -o -6 addr show dev "${2:-eth0}" scope global | awk '{split($4, a, "/"); print a[1]; exit}'; }

# host_if C [IFNAME]: the host-side name of C's interface (its veth peer in C's host).
host_if() {
	local idx
	idx=$(ip -n "$(cnt_ns "$1")" -o link show dev "${2:-eth0}" 2>/dev/null | sed -n 's/^[0-9]*: [^@]*@if\([0-9]*\):.*/\1/p')
	[ -n "$idx" ] || return 1
	ip -n "$(host_ns "${CNT_HOST[$1]}")" -o link show | awk -F': ' -v i="$idx" '$1 == i {split($2, a, "@"); print a[1]}'
}

cnt_ping() { ip netns exec "$(cnt_ns "$1")" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1; }
cnt_no_ping() { ! cnt_ping "$@"; }

# cnt_listen C PORT [WORD]: a TCP server in C on every address (IPv4 and IPv6) that answers each
# connection with WORD (default: the container's name), then echoes what it gets until the
# client closes.
cnt_listen() {
	local c=$1 port=$2 word=${3:-$1}
	ip netns exec "$(cnt_ns "$c")" socat "TCP6-LISTEN:$port,ipv6only=0,reuseaddr,fork" \
		"SYSTEM:echo $word; exec cat" >/dev/null 2>&1 &
	CNT_PIDS+=($!)
	disown $! # no "Killed" notice at the end
	wait_for "$c listening on $port" 5 eval "ip netns exec $(cnt_ns "$c") ss -Htln | matches ':$port '"
}

# cnt_connect C ADDR PORT: from C, connect, close our side and print what the server says.
cnt_connect() {
	local a=$2
	[[ $a == *:* ]] && a="[$a]"
	ip netns exec "$(cnt_ns "$1")" timeout 4 socat -t 2 -T 3 - "TCP:$a:$3,connect-timeout=2" </dev/null 2>/dev/null
}

# reaches C ADDR PORT WORD / refused C ADDR PORT: a TCP connection is answered by WORD / is not.
reaches() { [ "$(cnt_connect "$1" "$2" "$3")" = "$4" ]; }
blocked() { [ -z "$(cnt_connect "$1" "$2" "$3")" ]; }

# cni_plugin I CMD CID NETNS IFNAME CONF [VAR=VALUE...]: the plugin (as "calico") run in host I
# the way Mesos runs it: CNI environment, the config on stdin, no CNI_ARGS, CNI_NETNS left out
# when NETNS is empty. stdout in $WORK/out, stderr in $WORK/err; returns its status.
cni_plugin() {
	local i=$1 cmd=$2 cid=$3 netns=$4 ifname=$5 conf=$6
	shift 6
	local env=(CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" CNI_IFNAME="$ifname" CNI_PATH="$CNI_BIN")
	[ -n "$netns" ] && env+=(CNI_NETNS="$netns")
	ip netns exec "$(host_ns "$i")" env -i PATH="$PATH" "${env[@]}" "$@" "$CNI_BIN/${CNI_TYPE:-calico}" \
		<"$conf" >"$WORK/out" 2>"$WORK/err"
}

# cni_error STATUS CODE [SUBSTRING]: the call that returned STATUS failed as CNI says a plugin
# fails: non-zero status, and on stdout one JSON object with the numeric code CODE, a non-empty
# msg (mentioning SUBSTRING, when given, in msg or details) and a cniVersion.
cni_error() {
	local rc=$1 code=$2 sub=${3:-}
	[ "$rc" != 0 ] || fail "expected a CNI error $code, but the call succeeded: $(cat "$WORK/out")"
	python3 - "$code" "$sub" "$WORK/out" <<'PY' || fail "not CNI error $code${sub:+ naming '$sub'}: $(cat "$WORK/out" "$WORK/err")"
import json, sys
code, sub, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
text = open(path).read()
try:
    d = json.loads(text)
    ok = d.get("code") == code and isinstance(d.get("msg"), str) and d["msg"] and "cniVersion" in d
    ok = ok and (sub in d["msg"] or sub in str(d.get("details", "")))
except ValueError:
    ok = False
sys.exit(0 if ok else 1)
PY
	log "ok: CNI error $code: $(tr -d '\n' <"$WORK/out")"
}

# cnitool_error STATUS SUBSTRING: the cnitool call that returned STATUS failed, and its message
# (libcni prints the plugin's msg and details, not the code) mentions SUBSTRING.
cnitool_error() {
	[ "$1" != 0 ] || fail "expected cnitool to fail, but it printed: $(cat "$WORK/out")"
	grep -qF -- "$2" "$WORK/err" || fail "cnitool's error does not mention '$2': $(cat "$WORK/err")"
	log "ok: cnitool refused: $(tr -d '\n' <"$WORK/err")"
}

# pool_in_use I CIDR: addresses in use in pool CIDR, as agent I sees it.
pool_in_use() {
	tctl "$1" ipam show -o json | python3 -c '
import json, sys
print(sum(p["in_use"] for p in json.load(sys.stdin)["pools"] if p["cidr"] == sys.argv[1]))' "$2"
}
# in_use I: addresses in use in every pool.
in_use() { tctl "$1" ipam show -o json | python3 -c 'import json, sys; print(sum(p["in_use"] for p in json.load(sys.stdin)["pools"]))'; }

# endpoints I: the workload endpoints agent I knows, "workload/name node ips" one a line, sorted.
endpoints() {
	tctl "$1" get workloadendpoint -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)
d = d if isinstance(d, list) else d.get("items", [d])
for e in sorted(d, key=lambda e: (e["metadata"]["workload"], e["metadata"]["name"])):
    m = e["metadata"]
    print(m["workload"] + "/" + m["name"], m["node"], ",".join(e["spec"].get("ipNetworks", [])))'
}
