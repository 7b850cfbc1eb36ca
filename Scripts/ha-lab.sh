#!/usr/bin/env bash
# tlsgate HA lab: a client, two gateways sharing the LAN's gateway address with VRRP, and a
# server; the LAN and the public side are bridges, each in a namespace of its own.
#
# Usage:
#   Scripts/ha-lab.sh up   [--prefix P]    build the lab (tears an existing one down first)
#   Scripts/ha-lab.sh down [--prefix P]    delete it (idempotent)
#
# P defaults to "th-". Namespaces: ${P}client, ${P}gw1, ${P}gw2, ${P}server, ${P}lan, ${P}pub.
#
#   ${P}client ${P}c0 198.18.0.2/24, default via 198.18.0.1 (the virtual address)
#        |                                                    LAN bridge ${P}lb in ${P}lan
#   ${P}gw1 ${P}gl 198.18.0.11/24   ${P}gw2 ${P}gl 198.18.0.12/24   (+ 198.18.0.1 on the VRRP master)
#   ${P}gw1 ${P}gp 198.19.0.2/24    ${P}gw2 ${P}gp 198.19.0.3/24    (+ 198.19.0.1 on the VRRP master)
#        |                                                    public bridge ${P}pb in ${P}pub
#   ${P}server ${P}s0 198.19.0.10..12/24, default via 198.19.0.1
#
# Nothing runs in it yet: keepalived and `tlsgate run` are started per gateway by
# Tests/integration/ha_pair.py (Scripts/ha-demo.sh, Tests/integration/test_ha.py).
# Only the benchmarking range 198.18.0.0/15 is used. Needs root.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

default_prefix="th-"
# shellcheck source=Scripts/lab-args.sh
. "$(dirname "$0")/lab-args.sh"
lab_parse_args "$@"

NS_C="${prefix}client"; NS_G1="${prefix}gw1"; NS_G2="${prefix}gw2"; NS_S="${prefix}server"
NS_LAN="${prefix}lan"; NS_PUB="${prefix}pub"
ALL=("$NS_C" "$NS_G1" "$NS_G2" "$NS_S" "$NS_LAN" "$NS_PUB")

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

down() {
  local ns
  for ns in "${ALL[@]}"; do
    if ns_exists "$ns"; then ip netns delete "$ns"; fi
  done
}

up() {
  down
  trap 'echo "ha-lab.sh: build failed, tearing down" >&2; down' ERR
  local ns
  for ns in "${ALL[@]}"; do
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  done
  # The two bridges; multicast snooping off so VRRP advertisements reach every port at once.
  nsx "$NS_LAN" ip link add "${prefix}lb" type bridge mcast_snooping 0
  nsx "$NS_PUB" ip link add "${prefix}pb" type bridge mcast_snooping 0
  # veth pairs: host end in its namespace, port end on the bridge.
  ip link add "${prefix}c0" netns "$NS_C" type veth peer name "${prefix}l0" netns "$NS_LAN"
  ip link add "${prefix}gl" netns "$NS_G1" type veth peer name "${prefix}l1" netns "$NS_LAN"
  ip link add "${prefix}gl" netns "$NS_G2" type veth peer name "${prefix}l2" netns "$NS_LAN"
  ip link add "${prefix}gp" netns "$NS_G1" type veth peer name "${prefix}p1" netns "$NS_PUB"
  ip link add "${prefix}gp" netns "$NS_G2" type veth peer name "${prefix}p2" netns "$NS_PUB"
  ip link add "${prefix}s0" netns "$NS_S" type veth peer name "${prefix}ps" netns "$NS_PUB"
  local port
  for port in l0 l1 l2; do
    nsx "$NS_LAN" ip link set "${prefix}$port" master "${prefix}lb" up
  done
  for port in p1 p2 ps; do
    nsx "$NS_PUB" ip link set "${prefix}$port" master "${prefix}pb" up
  done
  nsx "$NS_LAN" ip link set "${prefix}lb" up
  nsx "$NS_PUB" ip link set "${prefix}pb" up

  nsx "$NS_C" ip addr add 198.18.0.2/24 dev "${prefix}c0"
  nsx "$NS_C" ip link set "${prefix}c0" up
  nsx "$NS_C" ip route add default via 198.18.0.1 dev "${prefix}c0"

  local i gw
  for i in 1 2; do
    gw="${prefix}gw$i"
    nsx "$gw" sysctl -qw net.ipv4.ip_forward=1
    nsx "$gw" ip addr add "198.18.0.1$i/24" dev "${prefix}gl"
    nsx "$gw" ip addr add "198.19.0.$((i + 1))/24" dev "${prefix}gp"
    nsx "$gw" ip link set "${prefix}gl" up
    nsx "$gw" ip link set "${prefix}gp" up
  done

  for i in 10 11 12; do
    nsx "$NS_S" ip addr add "198.19.0.$i/24" dev "${prefix}s0"
  done
  nsx "$NS_S" ip link set "${prefix}s0" up
  nsx "$NS_S" ip route add default via 198.19.0.1 dev "${prefix}s0"
  trap - ERR
  echo "ha-lab.sh: lab '${prefix}' is up"
  echo "  ${NS_C}: 198.18.0.2/24, default via 198.18.0.1 (VRRP virtual address)"
  echo "  ${NS_G1}: LAN 198.18.0.11/24, public 198.19.0.2/24; ${NS_G2}: LAN 198.18.0.12/24, public 198.19.0.3/24"
  echo "  ${NS_S}: 198.19.0.10-12/24, default via 198.19.0.1 (VRRP virtual address)"
}

case "$action" in
  up) up ;;
  down) down; echo "ha-lab.sh: lab '${prefix}' is down" ;;
  *) usage ;;
esac
