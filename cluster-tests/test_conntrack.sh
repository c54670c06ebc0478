#!/usr/bin/env bash
# A removed container's connection tracking goes with it: after a DEL, the host holds no conntrack
# entry to or from the released address (a container that gets the address next must not inherit
# its flows, calico-behaviour.md 5.5), and entries of other addresses stay; also when two
# containers go at once (the addresses released while a flush runs wait and share the next one,
# which may or may not take both here).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cni-lib.sh"
hosts_up 1
bootstrap_cluster 1
cni_setup
command -v conntrack >/dev/null || fail "no conntrack tool (apt-get install conntrack)"

for c in a b c; do
	cnt_new "$c"
	cnt_add 1 "$c" calico-net-1
done
ipa=$(cnt_ip a) ipb=$(cnt_ip b) ipc=$(cnt_ip c)
# ct_n ARGS...: how many entries `conntrack -L ARGS` lists in host 1.
ct_n() { ip netns exec "$(host_ns 1)" conntrack -L "$@" 2>/dev/null | grep -c "src=" || true; }

wait_for "c -> a" 15 cnt_ping c "$ipa"
wait_for "c -> b" 15 cnt_ping c "$ipb"
ip netns exec "$(host_ns 1)" ping -n -q -c 1 -W 1 "$ipc" >/dev/null || fail "host 1 cannot ping c ($ipc)"
[ "$(ct_n -d "$ipa")" -ge 1 ] || fail "host 1 tracks no flow to a ($ipa)"
[ "$(ct_n -d "$ipb")" -ge 1 ] || fail "host 1 tracks no flow to b ($ipb)"
others=$(ct_n -d "$ipc")
[ "$others" -ge 1 ] || fail "host 1 tracks no flow to c ($ipc)"
log "tracked: $(ct_n -d "$ipa") to a, $(ct_n -d "$ipb") to b, $others to c"

# del_bg C: cnitool del of C in host 1, in the background, its output in $WORK/del-C.
del_bg() {
	ip netns exec "$(host_ns 1)" env CNI_PATH="$CNI_BIN" NETCONFPATH="$WORK/net.d/1" CNI_IFNAME=eth0 \
		"$CNITOOL" del calico-net-1 "/var/run/netns/$(cnt_ns "$1")" >"$WORK/del-$1" 2>&1 &
}
del_bg a
pa=$!
del_bg b
pb=$!
wait "$pa" || fail "DEL a failed: $(cat "$WORK/del-a")"
wait "$pb" || fail "DEL b failed: $(cat "$WORK/del-b")"

flushed() {
	[ "$(ct_n -d "$ipa")" = 0 ] && [ "$(ct_n -s "$ipa")" = 0 ] &&
		[ "$(ct_n -d "$ipb")" = 0 ] && [ "$(ct_n -s "$ipb")" = 0 ]
}
# ICMP entries live 30 s: gone within 10 means they were deleted.
wait_for "no conntrack entry of a or b in host 1" 10 flushed
[ "$(ct_n -d "$ipc")" = "$others" ] || fail "c's entries went too: $(ct_n -d "$ipc") of $others left"
! grep -q "cannot flush the conntrack entries" "$WORK/agent1.log" ||
	fail "the agent could not flush: $(grep "cannot flush the conntrack" "$WORK/agent1.log")"
pass
