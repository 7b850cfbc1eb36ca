#!/bin/sh
# keepalived's track script for a tlsgate gateway (vrrp_script): exit 0 while this gateway
# can serve, 1 otherwise, so that a dead tlsgate gives the virtual address to the other one.
#
# Usage: ha-check.sh PIDFILE
#   PIDFILE holds the pid of `tlsgate run` (systemd: /run/tlsgate.pid via PIDFile=, or
#   written by whoever starts it). Serving means: that process is alive (not a zombie),
#   it is tlsgate, and its interception table `inet tlsgate` is in place.
# Used by Tests/integration/ha_pair.py (Scripts/ha-demo.sh, test_ha.py); see the README,
# "A pair of gateways".
pid=$(cat "$1" 2>/dev/null) || exit 1
case "$pid" in ''|*[!0-9]*) exit 1 ;; esac
state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
[ -n "$state" ] && [ "$state" != Z ] || exit 1
tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'tlsgate run' || exit 1
nft list table inet tlsgate >/dev/null 2>&1 || exit 1
exit 0
