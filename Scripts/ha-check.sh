#!/bin/sh
# keepalived's track script for a tlsgate gateway (vrrp_script): exit 0 while this gateway
# can serve, 1 otherwise, so that a dead tlsgate gives the virtual address to the other one.
#
# Usage: ha-check.sh --config FILE [TLSGATE]   (recommended; the Debian package installs
#   this script as /usr/lib/tlsgate/ha-check.sh; TLSGATE: the binary, default
#   /usr/bin/tlsgate, else /usr/local/bin/tlsgate)
#   Serving means `tlsgate status --config FILE` exits 0: the supervisor answers on its
#   control socket, every policy has a ready worker and the rules are applied.
# Usage: ha-check.sh PIDFILE
#   PIDFILE holds the pid of `tlsgate run` (systemd: /run/tlsgate.pid via PIDFile=, or
#   written by whoever starts it). Serving means: that process is alive (not a zombie),
#   it is tlsgate, and its interception table `inet tlsgate` is in place.
# Used by Tests/integration/ha_pair.py (Scripts/ha-demo.sh, test_ha.py); see the README,
# "A pair of gateways".
if [ "${1:-}" = "--config" ]; then
  [ -n "${2:-}" ] || exit 1
  for tlsgate in "${3:-}" /usr/bin/tlsgate /usr/local/bin/tlsgate; do
    [ -n "$tlsgate" ] && [ -x "$tlsgate" ] && break
  done
  [ -x "$tlsgate" ] || exit 1
  exec "$tlsgate" status --config "$2" >/dev/null 2>&1
fi
pid=$(cat "$1" 2>/dev/null) || exit 1
case "$pid" in ''|*[!0-9]*) exit 1 ;; esac
state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
[ -n "$state" ] && [ "$state" != Z ] || exit 1
tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'tlsgate run' || exit 1
nft list table inet tlsgate >/dev/null 2>&1 || exit 1
exit 0
