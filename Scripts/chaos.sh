#!/usr/bin/env bash
# Chaos under load in the namespace lab (Tests/integration/test_chaos.py), one line of
# figures per scenario:
#   chaos kill-9-worker: kill -9 of the worker 20 times under concurrent request loops
#   chaos sighup-50:     50 SIGHUPs under load, alternating a changed and a broken policy
#   chaos kill-9-supervisor: kill -9 of the supervisor under load, then a fresh start
#   chaos faults:        client reset, black-holed upstream, server reset (300 rounds each)
#   chaos bulk:          64 MiB each way through one connection, SHA-256 checked
#   chaos N-connections: 10,000 concurrent connections through one worker (as many as the
#                        descriptor limit allows), RSS per connection, then closed
#   chaos soak:          60 s of mixed load, RSS of supervisor and worker every 10 s, flat
# Usage: Scripts/chaos.sh [--long]   (short, as CI runs it; long: 64 loops, 1,000 fault
#        rounds, 1 GiB, every held connection twice, a 10-minute soak)
# Needs root (network namespaces, nftables, the tlsgate account); builds tlsgate (debug).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=short
case "${1:-}" in
  --long) profile=long ;;
  "") ;;
  *) echo "usage: $0 [--long]" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "chaos.sh: needs root (network namespaces, nftables)" >&2
  exit 1
fi
export PATH=/opt/swift/usr/bin:$PATH
swift build >/dev/null
CHAOS_PROFILE=$profile /usr/bin/python3 -m pytest -q -s -p no:cacheprovider Tests/integration/test_chaos.py \
  | grep -E '^chaos |passed|failed|error'
