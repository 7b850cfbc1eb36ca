#!/usr/bin/env bash
# Shows a pair of tlsgate gateways sharing the LAN's gateway address with keepalived (VRRP):
# a client loops short plain connections through the virtual address to a server that only
# the gateways' verified TLS reaches; the MASTER gateway's tlsgate is killed with SIGKILL
# (or, with --scenario link, its LAN link goes down); the demo prints how long until new
# connections flow through the other gateway, and how many plain-text connections reached
# the server's match port (0). Everything runs in its own namespaces (Scripts/ha-lab.sh,
# prefix thd-) and is removed at the end, processes, configs and pid files included.
#
# Usage: Scripts/ha-demo.sh [--scenario kill|link]      (root, Debian 12)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "ha-demo.sh: needs root (network namespaces, nftables, keepalived)" >&2
  exit 1
fi
"$repo/Scripts/setup.sh"
export PATH=/opt/swift/usr/bin:$PATH
bin="${TLSGATE_BIN:-$repo/.build/debug/tlsgate}"
if [ ! -x "$bin" ]; then
  (cd "$repo" && swift build 2>&1 | tail -n 2)
fi
if ! id tlsgate >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin tlsgate
fi
exec /usr/bin/python3 "$repo/Tests/integration/ha_pair.py" demo --tlsgate "$bin" "$@"
