#!/usr/bin/env bash
# smoke.sh [NAME]: on a provisioned VM, start a "container" (network namespace NAME, default
# c-<hostname>) on calico-net-1 through the installed plugin, the way Mesos runs it (CNI
# environment, /etc/cni/net.d/calico-net-1.conf on stdin), print its address and ping the
# containers smoke.sh started on the other VMs (their addresses from the endpoints). Run it on
# each VM in turn; `smoke.sh --del [NAME]` removes the container again.
set -euo pipefail
del=0
[ "${1:-}" = --del ] && { del=1; shift; }
NAME=${1:-c-$(hostname)}
plugin() {
	CNI_COMMAND=$1 CNI_CONTAINERID=$NAME CNI_NETNS=/var/run/netns/$NAME CNI_IFNAME=eth0 \
		CNI_PATH=/opt/cni/bin /opt/cni/bin/calico </etc/cni/net.d/calico-net-1.conf
}
if [ $del = 1 ]; then
	plugin DEL
	ip netns del "$NAME"
	exit 0
fi
ip netns list | grep -qw "$NAME" || ip netns add "$NAME"
ip -n "$NAME" link set lo up
plugin ADD
echo
addr=$(ip -n "$NAME" -o -4 addr show dev eth0 scope global | awk '{print $4}')
echo "$NAME on $(hostname): $addr"
for other in $(tabby get workloadendpoint -o json | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["metadata"]["workload"].startswith("c-"):
        print(e["spec"]["ipNetworks"][0].split("/")[0])'); do
	[ "$other/32" = "$addr" ] && continue
	if ip netns exec "$NAME" ping -c 1 -W 2 "$other" >/dev/null; then
		echo "  ping $other: ok"
	else
		echo "  ping $other: FAILED"
	fi
done
