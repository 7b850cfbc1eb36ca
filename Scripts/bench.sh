#!/usr/bin/env bash
# Side-by-side benchmark: the same plain client -> gateway -> nginx TLS server path through
# three TLS upgraders, each doing verified TLS (chain to the test root + name good.test):
#   tlsgate   `tlsgate run` (redirect mode, policy 198.19.0.10:80 -> 443), as user tlsgate
#   haproxy   TCP frontend, backend `ssl verify required ca-file sni verifyhost`, nbthread 2
#   stunnel   client mode, verifyChain + checkHost + sni
# plus a reference row "direct" where the client itself speaks TLS to nginx (no upgrader).
#
# Usage: Scripts/bench.sh [--quick] [--duration S] [--size MiB] [--conns N]
#                         [--concurrency C] [--only LIST] [--no-direct]
#   --quick          small run (64 MiB, 5 s, 200 idle connections): about a minute
#   --duration S     seconds of each new-connection test (default 10; --quick 5)
#   --size MiB       bulk file size (default 256; --quick 64)
#   --conns N        idle keep-alive connections held for the memory test (default 1000)
#   --concurrency C  concurrent clients in the new-connection test (default 50)
#   --only LIST      comma-separated subset of tlsgate,haproxy,stunnel,direct
#
# As root on Debian 12. Installs haproxy, stunnel4 and wrk if missing (and keeps their
# system services from running), builds tlsgate (release) if the binary is missing or older
# than Sources/, builds the lab with Scripts/lab.sh --prefix tgb-, runs nginx in the server
# namespace, then each upgrader in turn (never two at once) in the gateway namespace, and
# prints a table. Cleans up processes, the nft table and the namespaces on every exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export PATH=/opt/swift/usr/bin:/usr/sbin:/sbin:/usr/bin:/bin:$PATH
PY=/usr/bin/python3

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

QUICK=0 DURATION="" SIZE_MIB="" CONNS="" CONC=50 ONLY="tlsgate,haproxy,stunnel,direct"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
    --size) [ $# -ge 2 ] || usage; SIZE_MIB=$2; shift 2 ;;
    --conns) [ $# -ge 2 ] || usage; CONNS=$2; shift 2 ;;
    --concurrency) [ $# -ge 2 ] || usage; CONC=$2; shift 2 ;;
    --only) [ $# -ge 2 ] || usage; ONLY=$2; shift 2 ;;
    --no-direct) ONLY=${ONLY//direct/}; shift ;;
    -h|--help) usage 0 ;;
    *) echo "bench.sh: unknown argument: $1" >&2; usage ;;
  esac
done
if [ "$QUICK" -eq 1 ]; then
  : "${DURATION:=5}" "${SIZE_MIB:=64}" "${CONNS:=200}"
else
  : "${DURATION:=10}" "${SIZE_MIB:=256}" "${CONNS:=1000}"
fi
for v in DURATION SIZE_MIB CONNS CONC; do
  case "${!v}" in ''|*[!0-9]*) echo "bench.sh: $v must be a positive integer" >&2; exit 2 ;; esac
  [ "${!v}" -gt 0 ] || { echo "bench.sh: $v must be > 0" >&2; exit 2; }
done
[ "$DURATION" -le 120 ] || { echo "bench.sh: --duration at most 120" >&2; exit 2; }
[ "$CONNS" -le 5000 ] || { echo "bench.sh: --conns at most 5000" >&2; exit 2; }
[ "$SIZE_MIB" -le 4096 ] || { echo "bench.sh: --size at most 4096" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (network namespaces)" >&2; exit 1; }

PREFIX=tgb-
NS_C=${PREFIX}client NS_G=${PREFIX}gw NS_S=${PREFIX}server IF_LAN=${PREFIX}gl
RUN=/run/tgb-bench
BIN=$repo/.build/release/tlsgate
SERVER=198.19.0.10
HAPROXY_PORT=18080 STUNNEL_PORT=18081
BULK_RUNS=3
TICK=$(getconf CLK_TCK)

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
log() { printf '   %s\n' "$*" >&2; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------- cleanup
BG_PIDS=()        # every long-running process this script started
lab_up=0
stop_pid() {      # stop_pid PID [grace-seconds]: TERM, wait (bounded), KILL
  local pid=$1 grace=${2:-5} i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? pid
  set +e
  trap - EXIT INT TERM
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid" 3; done
  if [ "$lab_up" -eq 1 ]; then
    # Safety net: whatever still runs inside this script's own namespaces was started by it.
    local ns
    for ns in "$NS_C" "$NS_G" "$NS_S"; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    nsx "$NS_G" nft delete table inet bench 2>/dev/null
    "$repo/Scripts/lab.sh" down --prefix "$PREFIX" >/dev/null 2>&1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- /proc helpers
rss_kib() {       # sum of VmRSS (KiB) over the given PIDs
  local sum=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
hwm_kib() {
  local sum=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
cpu_ticks() {     # sum of utime+stime (clock ticks) over the given PIDs (all their threads)
  local sum=0 pid st
  for pid in "$@"; do
    st=$(cat "/proc/$pid/stat" 2>/dev/null || true)
    [ -n "$st" ] || continue
    st=${st##*) }                      # fields from 3 on (comm may hold spaces)
    set -- $st
    sum=$((sum + ${12} + ${13}))       # fields 14 and 15
  done
  echo "$sum"
}
rss_each() {      # "pid:comm=MiB ..." for the log
  local pid out=""
  for pid in "$@"; do out+="$pid:$(cat "/proc/$pid/comm" 2>/dev/null)=$(awk '/^VmRSS:/ {printf "%.1f", $2/1024}' "/proc/$pid/status" 2>/dev/null)MiB "; done
  echo "$out"
}
nthreads() { local n=0 pid; for pid in "$@"; do n=$((n + $(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0))); done; echo "$n"; }
fmt() { awk -v x="$1" -v f="${2:-%.1f}" 'BEGIN { printf f, x }'; }
upstream_conns() { nsx "$NS_G" ss -Htn state established "( dst $SERVER and dport = :443 )" 2>/dev/null | wc -l; }

# ---------------------------------------------------------------- dependencies
say "dependencies"
bash Scripts/setup.sh >&2
for tool in haproxy stunnel4 wrk; do
  if dpkg-query -W -f='${Status}' "$tool" 2>/dev/null | grep -q "install ok installed"; then continue; fi
  log "installing $tool"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >"/tmp/tgb-apt-$tool.log" 2>&1 \
     || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$tool" >"/tmp/tgb-apt-$tool.log" 2>&1; }; then
    # The distribution's services must not run (they would take ports and CPU): disable what
    # we just installed; on a machine without systemd, policy-rc.d decides (reported below).
    case "$tool" in
      haproxy|stunnel4)
        if [ -d /run/systemd/system ]; then systemctl disable --now "$tool" >/dev/null 2>&1 || true
        else systemctl disable "$tool" >/dev/null 2>&1 || true; fi ;;
    esac
  else
    log "could not install $tool (see /tmp/tgb-apt-$tool.log)"
  fi
done
for svc in haproxy stunnel4; do
  if [ -d /run/systemd/system ] && systemctl is-active --quiet "$svc" 2>/dev/null; then
    log "note: the system service $svc is running (not started by this script; left alone)"
  fi
done
if [ -x /usr/sbin/policy-rc.d ]; then
  /usr/sbin/policy-rc.d haproxy start >/dev/null 2>&1 && prc=0 || prc=$?
  [ "$prc" -eq 101 ] && log "policy-rc.d denies service starts (exit 101): apt did not start haproxy/stunnel4"
fi
for svc in haproxy stunnel4; do
  # Processes of the distribution's services (in the root namespace), not ours: report only.
  for pid in $(pgrep -x "$svc" 2>/dev/null || true); do
    log "note: a $svc process not started by this script is running: pid $pid"
  done
done

declare -A SKIP=()      # upgrader -> why it cannot run
command -v haproxy >/dev/null || SKIP[haproxy]="haproxy not installed"
STUNNEL=$(command -v stunnel4 || command -v stunnel || true)
[ -n "$STUNNEL" ] || SKIP[stunnel]="stunnel4 not installed"
HAVE_WRK=0; command -v wrk >/dev/null && HAVE_WRK=1

say "tlsgate release build"
if [ ! -x "$BIN" ] || [ -n "$(find Sources Package.swift -newer "$BIN" -print -quit 2>/dev/null)" ]; then
  log "building (swift build -c release, about 1.5 min; log /tmp/tgb-build.log)"
  if ! timeout 900 swift build -c release >/tmp/tgb-build.log 2>&1; then
    tail -n 20 /tmp/tgb-build.log >&2
    SKIP[tlsgate]="release build failed (/tmp/tgb-build.log)"
  fi
else
  log "binary is up to date"
fi
TG_COMMIT=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "?")
[ -x "$BIN" ] || SKIP[tlsgate]="${SKIP[tlsgate]:-no binary at $BIN}"
if ! id tlsgate >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin tlsgate
  log "created the system account tlsgate"
fi

# ---------------------------------------------------------------- lab, PKI, nginx
say "lab (prefix $PREFIX), PKI, nginx"
lab_up=1
"$repo/Scripts/lab.sh" up --prefix "$PREFIX" >/dev/null
rm -rf "$RUN"; mkdir -p "$RUN/ca" "$RUN/www" "$RUN/tmp" "$RUN/policies"
"$repo/Scripts/make-test-pki.sh" "$RUN/ca" >/dev/null
chmod 0755 "$RUN" "$RUN/ca" "$RUN/www" "$RUN/policies"; chmod 0644 "$RUN/ca/root.pem"
truncate -s "${SIZE_MIB}M" "$RUN/www/big"                     # sparse: no disk, same TLS work
head -c 512 /dev/zero | tr '\0' 'x' > "$RUN/www/small"; echo >> "$RUN/www/small"
chmod 0644 "$RUN/www/big" "$RUN/www/small"
sed "s#@RUN@#$RUN#g" Scripts/bench/nginx.conf.in > "$RUN/nginx.conf"
# Background processes: `ip netns exec` itself (it execs the program), never the nsx
# function (that would make $! a subshell and leave the real process running).
ip netns exec "$NS_S" nginx -c "$RUN/nginx.conf" 2>"$RUN/nginx-stderr.log" &
BG_PIDS+=($!)
for _ in $(seq 1 50); do
  nsx "$NS_G" curl -sS -o /dev/null --max-time 2 --cacert "$RUN/ca/root.pem" \
    --resolve "good.test:443:$SERVER" https://good.test/small 2>/dev/null && break
  sleep 0.2
done
nsx "$NS_G" curl -sS -o /dev/null --max-time 5 --cacert "$RUN/ca/root.pem" --resolve "good.test:443:$SERVER" https://good.test/small \
  || { cat "$RUN/nginx-stderr.log" "$RUN/nginx-error.log" >&2 2>/dev/null; echo "bench.sh: nginx did not come up" >&2; exit 1; }
log "nginx on $SERVER:443 (good.test), /big = ${SIZE_MIB} MiB, /small = 513 B, /upload discards"

# ---------------------------------------------------------------- upgraders
UP_PIDS=()        # processes of the running upgrader (for RSS/CPU)
UP_MAIN=""        # the PID we started (stopped at the end)

redirect_to() {   # nft redirect in the gateway namespace: LAN tcp/80 to $SERVER -> local :PORT
  nsx "$NS_G" nft -f - <<NFT
table inet bench
delete table inet bench
table inet bench {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "$IF_LAN" ip saddr 198.18.0.0/24 ip daddr $SERVER tcp dport 80 redirect to :$1
  }
}
NFT
}

start_tlsgate() {
  cat > "$RUN/policies/web.toml" <<POL
[match]
networks = ["$SERVER/32"]
port = 80
[upstream]
port = 443
server_name = "good.test"
[tls]
trust = "$RUN/ca/root.pem"
POL
  cat > "$RUN/tlsgate.toml" <<CONF
policies = "$RUN/policies"
user = "tlsgate"
[intercept]
mode = "redirect"
from = ["198.18.0.0/24"]
[workers]
drain_timeout = "2s"
CONF
  chmod 0644 "$RUN/policies/web.toml" "$RUN/tlsgate.toml"
  "$BIN" check --config "$RUN/tlsgate.toml" >&2 || return 1
  ip netns exec "$NS_G" "$BIN" run --config "$RUN/tlsgate.toml" 2>"$RUN/tlsgate.log" &
  UP_MAIN=$!; BG_PIDS+=("$UP_MAIN")
  for _ in $(seq 1 100); do grep -q "gateway started" "$RUN/tlsgate.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "gateway started" "$RUN/tlsgate.log" || { tail -n 5 "$RUN/tlsgate.log" >&2; return 1; }
  local c
  UP_PIDS=("$UP_MAIN")
  for c in $(pgrep -P "$UP_MAIN" || true); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = tlsgate ] && { UP_PIDS+=("$c"); BG_PIDS+=("$c"); }
  done
  [ "${#UP_PIDS[@]}" -ge 2 ] || { log "no tlsgate worker found"; return 1; }
}

start_haproxy() {
  cat > "$RUN/haproxy.cfg" <<CFG
global
  nbthread 2
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 600s
  timeout server 600s
frontend fe
  bind 0.0.0.0:$HAPROXY_PORT
  default_backend be
backend be
  server s1 $SERVER:443 ssl verify required ca-file $RUN/ca/root.pem sni str(good.test) verifyhost good.test
CFG
  haproxy -c -q -f "$RUN/haproxy.cfg" >&2 || return 1
  redirect_to "$HAPROXY_PORT" || return 1
  ip netns exec "$NS_G" haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
  UP_MAIN=$!; BG_PIDS+=("$UP_MAIN"); UP_PIDS=("$UP_MAIN")
}

start_stunnel() {
  cat > "$RUN/stunnel.conf" <<CFG
foreground = yes
pid =
[bench]
client = yes
accept = 0.0.0.0:$STUNNEL_PORT
connect = $SERVER:443
verifyChain = yes
CAfile = $RUN/ca/root.pem
checkHost = good.test
sni = good.test
CFG
  redirect_to "$STUNNEL_PORT" || return 1
  ip netns exec "$NS_G" "$STUNNEL" "$RUN/stunnel.conf" >"$RUN/stunnel.log" 2>&1 &
  UP_MAIN=$!; BG_PIDS+=("$UP_MAIN"); UP_PIDS=("$UP_MAIN")
}

stop_upgrader() {
  local pid
  stop_pid "$UP_MAIN" 5
  for pid in "${UP_PIDS[@]}"; do stop_pid "$pid" 1; done
  nsx "$NS_G" nft delete table inet bench 2>/dev/null || true
  UP_PIDS=(); UP_MAIN=""
}

# URLs: every upgrader gets plain http://198.19.0.10/...; "direct" is the client's own TLS
# (curl verifies the certificate's IP SAN 198.19.0.10; wrk does not verify).
base_url() {
  if [ "$1" = direct ]; then echo "https://$SERVER"; else echo "http://$SERVER"; fi
}
CURL_TLS=(--cacert "$RUN/ca/root.pem")

wait_ready() {    # a request through the upgrader succeeds (bounded)
  local u=$1 i
  for i in $(seq 1 50); do
    nsx "$NS_C" curl -s -o /dev/null --max-time 2 "${CURL_TLS[@]}" "$(base_url "$u")/small" && return 0
    sleep 0.2
  done
  return 1
}

declare -A LOAD R_DOWN R_UP R_CPS R_P50 R_P99 R_RSS0 R_RSSN R_KIB R_CPU R_RES R_HELD R_CPUCONN R_RSSAFTER R_HWM R_ERR R_GROW NOTE
na() { NOTE[$1]="${NOTE[$1]:+${NOTE[$1]}; }$2"; }

measure_idle() {  # RSS idle, then with $CONNS kept-alive connections
  local u=$1 out="$RUN/idle-$1.out" pid ok held i
  R_RSS0[$u]=$(rss_kib "${UP_PIDS[@]}")
  ip netns exec "$NS_C" "$PY" "$repo/Scripts/bench/idle_client.py" "$SERVER" 80 /small "$CONNS" \
    --parallel 50 --open-timeout 10 --hold 120 >"$out" 2>"$RUN/idle-$u.err" &
  pid=$!; BG_PIDS+=("$pid")
  for i in $(seq 1 $((CONNS / 5 + 300))); do grep -q '^ready' "$out" 2>/dev/null && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if ! grep -q '^ready' "$out"; then
    na "$u" "idle client did not finish opening"; stop_pid "$pid" 2; return 0
  fi
  sleep 2                                     # let allocations settle
  ok=$(sed -n 's/^ready ok=\([0-9]*\).*/\1/p' "$out")
  held=$(upstream_conns)
  R_RSSN[$u]=$(rss_kib "${UP_PIDS[@]}")
  R_HELD[$u]="$ok/$CONNS open, $held upstream"
  log "idle: $(cat "$out"); upstream TLS connections established: $held; threads: $(nthreads "${UP_PIDS[@]}")"
  if [ "${ok:-0}" -gt 0 ]; then
    R_KIB[$u]=$(awk -v a="${R_RSSN[$u]}" -v b="${R_RSS0[$u]}" -v n="$ok" 'BEGIN { printf "%.1f", (a - b) / n }')
  fi
  [ "${ok:-0}" -eq "$CONNS" ] || na "$u" "only $ok of $CONNS idle connections opened"
  stop_pid "$pid" 3
  for i in $(seq 1 50); do [ "$(upstream_conns)" -eq 0 ] && break; sleep 0.1; done
  [ "$(upstream_conns)" -eq 0 ] || na "$u" "$(upstream_conns) upstream connections still open 5 s after the idle client exited"
}

measure_bulk() {
  local u=$1 url i r best=0 bestu=0 c0 c1 speed got code
  url="$(base_url "$u")/big"
  nsx "$NS_C" curl -s -o /dev/null --max-time 60 "${CURL_TLS[@]}" "$url" || true     # warm-up
  c0=$(cpu_ticks "${UP_PIDS[@]}")
  for i in $(seq 1 "$BULK_RUNS"); do
    r=$(nsx "$NS_C" curl -s -o /dev/null --max-time 120 "${CURL_TLS[@]}" \
          -w '%{speed_download} %{size_download} %{http_code}' "$url" || true)
    read -r speed got code <<<"$r"
    if [ "${code:-}" != 200 ] || [ "${got:-0}" -ne $((SIZE_MIB * 1048576)) ]; then
      na "$u" "download $i: http ${code:-none}, ${got:-0} bytes"; continue
    fi
    log "download $i: $(fmt "$(awk -v s="$speed" 'BEGIN{print s/1048576}')") MiB/s"
    best=$(awk -v a="$best" -v b="$speed" 'BEGIN { print (b > a) ? b : a }')
  done
  c1=$(cpu_ticks "${UP_PIDS[@]}")
  if [ "$best" != 0 ]; then
    R_DOWN[$u]=$(awk -v s="$best" 'BEGIN { printf "%.0f", s / 1048576 }')
    [ "${#UP_PIDS[@]}" -gt 0 ] && R_CPU[$u]=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$BULK_RUNS" -v m="$SIZE_MIB" \
      'BEGIN { printf "%.2f", (t / hz) / (n * m / 1024) }')
  fi
  # Upload: PUT the same size to /upload (nginx reads and discards the body).
  for i in $(seq 1 "$BULK_RUNS"); do
    r=$(nsx "$NS_C" curl -s -o /dev/null --max-time 120 "${CURL_TLS[@]}" -H 'Expect:' -T "$RUN/www/big" \
          -w '%{speed_upload} %{size_upload} %{http_code}' "$(base_url "$u")/upload" || true)
    read -r speed got code <<<"$r"
    if [ "${code:-}" != 204 ] || [ "${got:-0}" -ne $((SIZE_MIB * 1048576)) ]; then
      na "$u" "upload $i: http ${code:-none}, ${got:-0} bytes"; continue
    fi
    log "upload $i: $(fmt "$(awk -v s="$speed" 'BEGIN{print s/1048576}')") MiB/s"
    bestu=$(awk -v a="$bestu" -v b="$speed" 'BEGIN { print (b > a) ? b : a }')
  done
  [ "$bestu" = 0 ] || R_UP[$u]=$(awk -v s="$bestu" 'BEGIN { printf "%.0f", s / 1048576 }')
}

to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
  if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000; printf "%.1f", n }'; }

measure_cps() {
  local u=$1 url out="$RUN/wrk-$1.out" c0 c1 m0 m1 reqs log0 errs
  url="$(base_url "$u")/small"
  if [ "$HAVE_WRK" -ne 1 ]; then na "$u" "wrk missing: no conn/s"; return 0; fi
  nsx "$NS_C" timeout 20 wrk -t2 -c"$CONC" -d2s --timeout 5s -H 'Connection: close' "$url" >/dev/null 2>&1 || true   # warm-up
  sleep 1
  log0=$(stat -c %s "$RUN/nginx-resumed.log" 2>/dev/null || echo 0)
  c0=$(cpu_ticks "${UP_PIDS[@]}"); m0=$(rss_kib "${UP_PIDS[@]}")
  if ! nsx "$NS_C" timeout $((DURATION + 30)) wrk -t2 -c"$CONC" -d"${DURATION}s" --timeout 5s --latency \
         -H 'Connection: close' "$url" >"$out" 2>&1; then
    na "$u" "wrk failed: $(tail -n 1 "$out")"; return 0
  fi
  c1=$(cpu_ticks "${UP_PIDS[@]}"); m1=$(rss_kib "${UP_PIDS[@]}")
  R_CPS[$u]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  R_P50[$u]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  R_P99[$u]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  reqs=$(awk '/requests in/ { print $1 }' "$out")
  errs=$(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | paste -sd';' - || true)
  [ -z "$errs" ] || { R_ERR[$u]=$errs; na "$u" "wrk: $errs"; }
  log "conn/s: ${R_CPS[$u]} ($reqs requests in ${DURATION}s), p50 ${R_P50[$u]} ms, p99 ${R_P99[$u]} ms${errs:+, $errs}"
  if [ "${#UP_PIDS[@]}" -gt 0 ] && [ "${reqs:-0}" -gt 0 ]; then
    R_CPUCONN[$u]=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$reqs" 'BEGIN { printf "%.3f", t / hz * 1000 / n }')
    # RSS that stays behind per connection that came and went (a leak shows here)
    R_GROW[$u]=$(awk -v a="$m1" -v b="$m0" -v n="$reqs" 'BEGIN { printf "%.2f", (a - b) / n }')
  fi
  # Share of upstream handshakes nginx saw as resumed during the test ($ssl_session_reused).
  sleep 2                                       # nginx flushes its log buffer every second
  R_RES[$u]=$(tail -c +$((log0 + 1)) "$RUN/nginx-resumed.log" 2>/dev/null | awk '{ n++; if ($1 == "r") r++ }
    END { if (n) printf "%.0f%%", 100 * r / n; else print "?" }')
}

run_upgrader() {
  local u=$1
  say "$u"
  LOAD[$u]=$(cut -d' ' -f1 /proc/loadavg)
  if [ -n "${SKIP[$u]:-}" ]; then na "$u" "${SKIP[$u]}"; log "skipped: ${SKIP[$u]}"; return 0; fi
  if [ "$u" != direct ]; then
    if ! "start_$u"; then na "$u" "did not start"; stop_upgrader; return 0; fi
  else
    UP_PIDS=(); UP_MAIN=""
  fi
  if ! wait_ready "$u"; then
    na "$u" "no request got through"; log "no request got through"; stop_upgrader; return 0
  fi
  local i
  for i in $(seq 1 20); do nsx "$NS_C" curl -s -o /dev/null --max-time 5 "${CURL_TLS[@]}" "$(base_url "$u")/small" || true; done
  sleep 1
  if [ "$u" != direct ]; then log "RSS after warm-up: $(rss_each "${UP_PIDS[@]}")"; measure_idle "$u"; fi
  measure_bulk "$u"
  [ "$u" = direct ] || log "RSS after bulk: $(rss_each "${UP_PIDS[@]}")"
  measure_cps "$u"
  [ "$u" = direct ] || log "RSS after conn/s: $(rss_each "${UP_PIDS[@]}")"
  if [ "$u" != direct ]; then
    R_RSSAFTER[$u]=$(rss_kib "${UP_PIDS[@]}"); R_HWM[$u]=$(hwm_kib "${UP_PIDS[@]}")
    log "RSS after all tests $(fmt "$(awk -v k="${R_RSSAFTER[$u]}" 'BEGIN{print k/1024}')") MiB, peak (VmHWM) $(fmt "$(awk -v k="${R_HWM[$u]}" 'BEGIN{print k/1024}')") MiB"
    if [ "$u" = tlsgate ]; then
      log "tlsgate log: $(grep -c 'connection closed' "$RUN/tlsgate.log") connections, $(grep -c 'resumed=true' "$RUN/tlsgate.log") resumed, $(grep 'connection closed' "$RUN/tlsgate.log" | grep -vc 'result=ok') not ok"
    fi
    stop_upgrader
  fi
}

# ---------------------------------------------------------------- header
T0=$(date +%s)
versions() {
  echo "machine:  $(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
  echo "versions: tlsgate $("$BIN" --version 2>/dev/null || echo n/a) (tree at $TG_COMMIT), haproxy $(haproxy -v 2>/dev/null | awk 'NR==1 {print $3}' || echo n/a), stunnel $([ -n "$STUNNEL" ] && "$STUNNEL" -version 2>&1 | awk '/^stunnel/ {print $2; exit}' || echo n/a), $(openssl version | awk '{print $1, $2}'), nginx $(nginx -v 2>&1 | sed 's#.*/##'), wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}' || true), curl $(curl --version | awk 'NR==1 {print $2}')"
  echo "setup:    bulk ${SIZE_MIB} MiB best of $BULK_RUNS; new connections: wrk -t2 -c$CONC -d${DURATION}s 'Connection: close' to a 513-byte page; idle: $CONNS keep-alive connections"
}
say "run"
versions | sed 's/^/   /' >&2
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
OTHERS_START=$(pgrep -fc pytest 2>/dev/null || true)
others_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -vc "^$PREFIX" || true; }
NS_START=$(others_ns)
log "load average at start: $LOAD_START; other pytest processes: $OTHERS_START; other network namespaces: $NS_START"

IFS=, read -r -a ORDER <<<"$ONLY"
RAN=()
for u in "${ORDER[@]}"; do
  case "$u" in
    tlsgate|haproxy|stunnel|direct) run_upgrader "$u"; RAN+=("$u") ;;
    '') ;;
    *) echo "bench.sh: unknown upgrader '$u' (tlsgate, haproxy, stunnel, direct)" >&2 ;;
  esac
done

# ---------------------------------------------------------------- table
mib() { [ -n "${1:-}" ] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' || echo n/a; }
v() { [ -n "${1:-}" ] && echo "$1" || echo n/a; }
{
  echo
  echo "tlsgate bench  $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - T0 )) s"
  versions
  echo "load:     $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; other pytest processes: $OTHERS_START at start, $(pgrep -fc pytest 2>/dev/null || true) at end; other network namespaces: $NS_START at start, $(others_ns) at end"
  printf 'load at each start:'; for u in "${RAN[@]}"; do printf ' %s %s' "$u" "${LOAD[$u]:-?}"; done; echo " (1-min load average; 2 cores shared with other work)"
  echo
  printf '%-9s %6s %6s %7s %6s %7s %8s %8s %8s %7s %8s %8s %8s %8s\n' \
    upgrader "down" "up" "conn/s" "p50" "p99" "resumed" "RSS idle" "RSS N" "KiB/" "CPU s" "CPU ms" "RSS" "KiB kept"
  printf '%-9s %6s %6s %7s %6s %7s %8s %8s %8s %7s %8s %8s %8s %8s\n' \
    "" "MiB/s" "MiB/s" "" "ms" "ms" "upstream" "MiB" "MiB" "conn" "per GiB" "per conn" "peak MiB" "per conn"
  for u in "${RAN[@]}"; do
    printf '%-9s %6s %6s %7s %6s %7s %8s %8s %8s %7s %8s %8s %8s %8s\n' "$u" \
      "$(v "${R_DOWN[$u]:-}")" "$(v "${R_UP[$u]:-}")" "$(v "${R_CPS[$u]:-}")" "$(v "${R_P50[$u]:-}")" "$(v "${R_P99[$u]:-}")" \
      "$(v "${R_RES[$u]:-}")" "$(mib "${R_RSS0[$u]:-}")" "$(mib "${R_RSSN[$u]:-}")" "$(v "${R_KIB[$u]:-}")" \
      "$(v "${R_CPU[$u]:-}")" "$(v "${R_CPUCONN[$u]:-}")" "$(mib "${R_HWM[$u]:-}")" "$(v "${R_GROW[$u]:-}")"
  done
  echo
  echo "N = $CONNS idle keep-alive connections; RSS = sum of VmRSS over the upgrader's processes (tlsgate: supervisor + worker)."
  echo "CPU = utime+stime of the upgrader's processes: per GiB downloaded, per connection in the conn/s test."
  echo "KiB kept per conn = RSS growth over the conn/s test / connections in it: memory a closed connection leaves behind (~0 when nothing leaks)."
  echo "resumed = share of the upgrader's upstream TLS handshakes nginx reported as resumed during the conn/s test."
  echo "direct = no upgrader: the client (curl, wrk) speaks TLS to nginx itself; a ceiling for the lab, not a competitor."
  for u in "${RAN[@]}"; do
    [ -z "${R_HELD[$u]:-}" ] || echo "$u idle test: ${R_HELD[$u]}"
    [ -z "${NOTE[$u]:-}" ] || echo "$u: n/a or warnings because: ${NOTE[$u]}"
  done
}
