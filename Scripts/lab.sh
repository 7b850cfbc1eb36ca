#!/usr/bin/env bash
# tlsgate test lab: three network namespaces wired client <-> gateway <-> server.
#
# Usage:
#   Scripts/lab.sh up   [--prefix P]    build the lab (tears an existing one down first)
#   Scripts/lab.sh down [--prefix P]    delete it (idempotent)
#
# P defaults to "tg-". Namespaces: ${P}client, ${P}gw, ${P}server. Needs root.
#
#   ${P}client                      ${P}gw                              ${P}server
#   ${P}c0 198.18.0.2/24  <-->  ${P}gl 198.18.0.1/24
#          2001:2::2/64               2001:2::1/64
#                                   ${P}gp 198.19.0.1/24  <-->  ${P}s0 198.19.0.10..30/24
#                                          2001:2:0:1::1/64            2001:2:0:1::10..30/64
#
# The client and the server route everything through the gateway, which forwards
# IPv4 and IPv6. IPv6 DAD is off so addresses are usable at once.
# Only the benchmarking ranges 198.18.0.0/15 and 2001:2::/48 are used.
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

default_prefix="tg-"
# shellcheck source=Scripts/lab-args.sh
. "$(dirname "$0")/lab-args.sh"
lab_parse_args "$@"

NS_C="${prefix}client"; NS_G="${prefix}gw"; NS_S="${prefix}server"
IF_C="${prefix}c0"      # client side of the LAN pair
IF_GL="${prefix}gl"     # gateway side of the LAN pair
IF_GP="${prefix}gp"     # gateway side of the public pair
IF_S="${prefix}s0"      # server side of the public pair

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"; }

down() {
  local ns
  for ns in "$NS_C" "$NS_G" "$NS_S"; do
    if ns_exists "$ns"; then
      # Deleting a namespace destroys its veth ends (and so their peers).
      ip netns delete "$ns"
    fi
  done
  # Leftovers in the root namespace from a half-built lab.
  local ifc
  for ifc in "$IF_C" "$IF_GL" "$IF_GP" "$IF_S"; do
    if ip link show dev "$ifc" >/dev/null 2>&1; then ip link delete dev "$ifc" || true; fi
  done
}

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

up() {
  down
  # If building fails half-way, leave nothing behind.
  trap 'echo "lab.sh: build failed, tearing down" >&2; down' ERR

  ip netns add "$NS_C"
  ip netns add "$NS_G"
  ip netns add "$NS_S"

  local ns
  for ns in "$NS_C" "$NS_G" "$NS_S"; do
    nsx "$ns" ip link set lo up
    # No DAD: addresses are usable immediately.
    nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0
    nsx "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0
    nsx "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=0
  done

  ip link add "$IF_C" netns "$NS_C" type veth peer name "$IF_GL" netns "$NS_G"
  ip link add "$IF_GP" netns "$NS_G" type veth peer name "$IF_S" netns "$NS_S"

  # client
  nsx "$NS_C" ip addr add 198.18.0.2/24 dev "$IF_C"
  nsx "$NS_C" ip -6 addr add 2001:2::2/64 dev "$IF_C" nodad
  nsx "$NS_C" ip link set "$IF_C" up
  nsx "$NS_C" ip route add default via 198.18.0.1 dev "$IF_C"
  nsx "$NS_C" ip -6 route add default via 2001:2::1 dev "$IF_C"

  # gateway
  nsx "$NS_G" sysctl -qw net.ipv4.ip_forward=1
  nsx "$NS_G" sysctl -qw net.ipv6.conf.all.forwarding=1
  nsx "$NS_G" ip addr add 198.18.0.1/24 dev "$IF_GL"
  nsx "$NS_G" ip -6 addr add 2001:2::1/64 dev "$IF_GL" nodad
  nsx "$NS_G" ip addr add 198.19.0.1/24 dev "$IF_GP"
  nsx "$NS_G" ip -6 addr add 2001:2:0:1::1/64 dev "$IF_GP" nodad
  nsx "$NS_G" ip link set "$IF_GL" up
  nsx "$NS_G" ip link set "$IF_GP" up

  # server: 198.19.0.10..30 and 2001:2:0:1::10..30 (hex-looking but written as given)
  local i
  for i in $(seq 10 30); do
    nsx "$NS_S" ip addr add "198.19.0.$i/24" dev "$IF_S"
    nsx "$NS_S" ip -6 addr add "2001:2:0:1::$i/64" dev "$IF_S" nodad
  done
  nsx "$NS_S" ip link set "$IF_S" up
  nsx "$NS_S" ip route add default via 198.19.0.1 dev "$IF_S"
  nsx "$NS_S" ip -6 route add default via 2001:2:0:1::1 dev "$IF_S"

  trap - ERR

  echo "lab.sh: lab '${prefix}' is up"
  echo "  ${NS_C}: ${IF_C} 198.18.0.2/24 2001:2::2/64, default via 198.18.0.1 / 2001:2::1"
  echo "  ${NS_G}: ${IF_GL} 198.18.0.1/24 2001:2::1/64 (LAN)"
  echo "  ${NS_G}: ${IF_GP} 198.19.0.1/24 2001:2:0:1::1/64 (public), forwarding on"
  echo "  ${NS_S}: ${IF_S} 198.19.0.10-30/24 2001:2:0:1::10-30/64, default via 198.19.0.1 / 2001:2:0:1::1"
}

case "$action" in
  up) up ;;
  down) down; echo "lab.sh: lab '${prefix}' is down" ;;
  *) usage ;;
esac
