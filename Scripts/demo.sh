#!/usr/bin/env bash
# tlsgate demo: a plain-HTTP client gets a page over verified TLS through the gateway.
#
# Usage: Scripts/demo.sh        (as root, on Debian 12; sets up everything it needs)
#
# Builds three network namespaces (client, gateway, server; Scripts/lab.sh), starts
# nginx with a test CA's certificate in the server namespace, runs `tlsgate run` in the
# gateway namespace (supervisor as "tlsgate" with capabilities only, workers as "tlsgate-worker"), then
# from the client namespace runs `curl http://198.19.0.10/` - plain HTTP - and shows the
# page, the gateway's log line for it, and a refused connection to a server whose
# certificate does not match. Cleans up (gateway, nginx, namespaces, table) on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (it creates network namespaces)" >&2; exit 1; }
export PATH=/opt/swift/usr/bin:/usr/sbin:/sbin:$PATH

PREFIX=tgdemo-
NS_C=${PREFIX}client NS_G=${PREFIX}gw NS_S=${PREFIX}server
RUN=/run/tlsgate-demo
gateway_pid="" nginx_started=0

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  set +e
  if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill -TERM "$gateway_pid"
    for _ in $(seq 1 100); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gateway_pid" 2>/dev/null
  fi
  if [ "$nginx_started" -eq 1 ] && [ -f "$RUN/nginx.pid" ]; then
    kill -TERM "$(cat "$RUN/nginx.pid")" 2>/dev/null
  fi
  "$repo/Scripts/lab.sh" down --prefix "$PREFIX" >/dev/null 2>&1
}
trap cleanup EXIT INT TERM

say "1. dependencies and build"
bash Scripts/setup.sh
swift build -c release --static-swift-stdlib 2>&1 | tail -n 2
BIN=$repo/.build/release/tlsgate
if ! id tlsgate >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin tlsgate
  echo "created the system account tlsgate"
fi

say "2. lab: client 198.18.0.2 -> gateway 198.18.0.1 / 198.19.0.1 -> server 198.19.0.10, .11"
"$repo/Scripts/lab.sh" up --prefix "$PREFIX"

say "3. a real TLS server: nginx with certificates from a test CA"
rm -rf "$RUN"; mkdir -p "$RUN/ca" "$RUN/www"
"$repo/Scripts/make-test-pki.sh" "$RUN/ca" >/dev/null
chmod 0755 "$RUN" "$RUN/ca"; chmod 0644 "$RUN/ca/root.pem"
echo "Hello from nginx at 198.19.0.10 over TLS 1.3 - this page reached a plain-HTTP client through tlsgate." > "$RUN/www/index.html"
cat > "$RUN/nginx.conf" <<NGINX
worker_processes 1;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log;
events { worker_connections 256; }
http {
  access_log $RUN/nginx-access.log;
  client_body_temp_path $RUN/tmp; proxy_temp_path $RUN/tmp; fastcgi_temp_path $RUN/tmp;
  uwsgi_temp_path $RUN/tmp; scgi_temp_path $RUN/tmp;
  server {
    listen 198.19.0.10:443 ssl; listen [2001:2:0:1::10]:443 ssl;
    ssl_certificate $RUN/ca/good-chain.pem; ssl_certificate_key $RUN/ca/good.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $RUN/www;
  }
  server {
    listen 198.19.0.11:443 ssl;
    ssl_certificate $RUN/ca/wrongname-chain.pem; ssl_certificate_key $RUN/ca/wrongname.key;
    root $RUN/www;
  }
}
NGINX
mkdir -p "$RUN/tmp"
ip netns exec "$NS_S" nginx -c "$RUN/nginx.conf"
nginx_started=1
echo "nginx listening on 198.19.0.10:443 (cert good.test) and 198.19.0.11:443 (cert other.test)"

say "4. the gateway: tlsgate run, started as root; supervisor as tlsgate (capabilities only), workers as tlsgate-worker (none)"
cat > "$RUN/tlsgate.toml" <<CONF
policies = "$repo/Policies/demo"
user = "tlsgate"
[intercept]
mode = "redirect"
from = ["198.18.0.0/24", "2001:2::/64"]
[workers]
drain_timeout = "5s"
CONF
"$BIN" check --config "$RUN/tlsgate.toml"
ip netns exec "$NS_G" "$BIN" run --config "$RUN/tlsgate.toml" 2> "$RUN/gateway.log" &
gateway_pid=$!
for _ in $(seq 1 100); do grep -q "gateway started" "$RUN/gateway.log" 2>/dev/null && break; sleep 0.1; done
grep -q "gateway started" "$RUN/gateway.log" || { cat "$RUN/gateway.log"; echo "demo.sh: the gateway did not start" >&2; exit 1; }
for pid in $gateway_pid $(pgrep -P "$gateway_pid" || true); do
  printf '  pid %-7s %-10s %s %s\n' "$pid" "$(tr '\0' ' ' < /proc/$pid/cmdline | cut -c1-60)" \
    "$(grep -E '^Uid:' /proc/$pid/status | awk '{print "uid="$2}')" "$(grep -E '^CapEff:' /proc/$pid/status | tr -s '\t' ' ')"
done
echo "(supervisor CapEff 00000000000010e0 = CAP_NET_ADMIN, CAP_SETUID, CAP_SETGID, CAP_KILL, none of them ambient but CAP_NET_ADMIN;"
echo " workers run as tlsgate-worker and hold none)"
echo; echo "the gateway's own table:"
ip netns exec "$NS_G" nft list table inet tlsgate | sed 's/^/  /'

say "5. the client speaks plain HTTP: curl http://198.19.0.10/"
ip netns exec "$NS_C" curl -sS --max-time 10 http://198.19.0.10/
sleep 0.3
echo; echo "the gateway's log line for it:"
grep "connection closed" "$RUN/gateway.log" | grep 198.19.0.10 | tail -n 1 | sed 's/^/  /'

say "6. the same over IPv6: curl http://[2001:2:0:1::10]/"
ip netns exec "$NS_C" curl -sS --max-time 10 "http://[2001:2:0:1::10]/" || true
sleep 0.3
grep "connection closed" "$RUN/gateway.log" | grep "2001:2:0:1::10" | tail -n 1 | sed 's/^/  /'

say "7. a server with the wrong certificate: curl http://198.19.0.11/ is refused"
if ip netns exec "$NS_C" curl -sS --max-time 10 http://198.19.0.11/; then
  echo "demo.sh: UNEXPECTED: the wrong certificate was accepted" >&2; exit 1
fi
sleep 0.3
echo "the gateway's log line for it:"
grep "connection closed" "$RUN/gateway.log" | grep 198.19.0.11 | tail -n 1 | sed 's/^/  /'

say "8. stop: SIGTERM drains, removes the interception table, exits 0; the fail-closed guard stays"
kill -TERM "$gateway_pid"; status=0; wait "$gateway_pid" || status=$?; gateway_pid=""
echo "gateway exit status: $status"
if ip netns exec "$NS_G" nft list table inet tlsgate >/dev/null 2>&1; then echo "table still present!" >&2; exit 1; fi
echo "table inet tlsgate removed"
ip netns exec "$NS_G" nft list table inet tlsgate_guard >/dev/null 2>&1 || { echo "demo.sh: the guard table is missing" >&2; exit 1; }
echo "with the gateway stopped, plain HTTP to 198.19.0.10 is rejected at the gateway, never forwarded in clear:"
if ip netns exec "$NS_C" curl -sS --max-time 5 http://198.19.0.10/; then
  echo "demo.sh: UNEXPECTED: a plain request went through a stopped gateway" >&2; exit 1
fi
ip netns exec "$NS_G" nft list table inet tlsgate_guard | grep -E 'reject' | head -n 2 | sed 's/^/  /'

say "9. out of service: tlsgate rules --remove deletes what the stopped gateway left"
ip netns exec "$NS_G" "$BIN" rules --remove --config "$RUN/tlsgate.toml"
if ip netns exec "$NS_G" nft list table inet tlsgate_guard >/dev/null 2>&1; then echo "guard still present!" >&2; exit 1; fi
echo; echo "demo done."
