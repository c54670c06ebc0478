#!/usr/bin/env bash
# provision.sh I NODE_IP FIRST_IP: make this VM host I of the Vagrant cluster (see
# ../Vagrantfile). Builds Tabby from /tabby with scripts/setup.sh, installs the agent as the
# systemd service tabby-agent (host 1 bootstraps the cluster; the others join it with the token
# the Vagrantfile copied to /var/lib/tabby-join), and installs the CNI plugin and the
# seeds' calico config with the same functions the namespace tests use (cni-lib.sh).
# Idempotent: provisioning again rebuilds and restarts, keeping the agent's state.
set -euo pipefail
I=${1:?usage: provision.sh I NODE_IP FIRST_IP}
NODE_IP=${2:?}
FIRST_IP=${3:?}
SRC=/tabby
source "$SRC/cluster-tests/cni-lib.sh"

log() { echo "[provision tabby-$I] $*"; }

log "building Tabby (scripts/setup.sh)"
"$SRC/scripts/setup.sh"

log "installing the agent and the CNI plugin"
install -D -m 0755 "$SRC/build/tabby" /usr/local/bin/tabby
install -D -m 0755 "$SRC/build/cni/tabby-cni" /usr/local/lib/tabby/tabby-cni
# Where Mesos is told to look (--network_cni_plugins_dir) and where other runtimes look.
cni_install_plugins /opt/cni/bin /usr/local/lib/tabby/tabby-cni
mkdir -p /etc/cni/net.d /etc/tabby
cni_write_conf /etc/cni/net.d/calico-net-1.conf calico-net-1 /run/tabby/tabby.sock
[ -x "$SRC/.deps/bin/cnitool" ] && install -m 0755 "$SRC/.deps/bin/cnitool" /usr/local/bin/cnitool

# The agent's settings: every flag has an environment variable (tabby agent --help).
{
	echo "TABBY_NAME=tabby-$I"
	echo "TABBY_PEER_ADDRESS=$NODE_IP:7790"
	echo "TABBY_API_ADDRESS=$NODE_IP:7791"
	if [ "$I" = 1 ]; then
		echo "TABBY_BOOTSTRAP=1"
	else
		token_file=/var/lib/tabby-join/join-token
		[ -s "$token_file" ] || { log "no join token at $token_file: bring tabby-1 up first"; exit 1; }
		echo "TABBY_JOIN=$FIRST_IP:7791"
		echo "TABBY_TOKEN=$(tr -d '\n' <"$token_file")"
	fi
} >/etc/tabby/agent.env
chmod 0600 /etc/tabby/agent.env

cat >/etc/systemd/system/tabby-agent.service <<'UNIT'
[Unit]
Description=Tabby agent (container networking with an embedded replicated store)
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=/etc/tabby/agent.env
ExecStart=/usr/local/bin/tabby agent
Restart=on-failure
RuntimeDirectory=tabby
RuntimeDirectoryPreserve=yes

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable tabby-agent >/dev/null 2>&1
systemctl restart tabby-agent

for _ in $(seq 1 300); do
	tabby cluster status >/dev/null 2>&1 && break
	sleep 0.2
done
tabby cluster status || { journalctl -u tabby-agent -n 30 --no-pager; exit 1; }
log "ready: the agent runs; CNI plugins in /opt/cni/bin, config in /etc/cni/net.d"
