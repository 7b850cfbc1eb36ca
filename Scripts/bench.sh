#!/usr/bin/env bash
# Side-by-side benchmark: the same plain client -> gateway -> nginx TLS server path through
# TLS upgraders, each doing verified TLS (chain to the test root + name good.test):
#   tlsgate    `tlsgate run` (redirect mode, default [workers] threads = 0), as user tlsgate
#   haproxy    TCP frontend, backend `ssl verify required ca-file sni verifyhost`, nbthread 1
#   stunnel    client mode, verifyChain + checkHost + sni
#   tlsgate2   scaling row: tlsgate with threads = 2 on both CPUs
#   haproxy2   scaling row: haproxy nbthread 2 on both CPUs
#   direct     reference: the client itself speaks TLS to nginx (no upgrader; --only direct)
#
# Usage: Scripts/bench.sh [--quick] [--duration S] [--size MiB] [--conns N] [--rounds R]
#                         [--concurrency C] [--only LIST] [--tests LIST] [--perf] [--allocs]
#   --quick          short run (3 s tests, 500 idle connections): about 3 minutes
#   --duration S     seconds of each wrk test (default 5; --quick 3)
#   --size MiB       bulk file size (default 64; downloaded 4 times per round over one connection)
#   --conns N        idle keep-alive connections held for the memory test (default 2000; --quick 500)
#   --rounds R       rounds: every row runs every test once per round, the rows taking
#                    turns (reversed every other round); medians reported (default 3, 2-9)
#   --concurrency C  concurrent clients in the new-connection tests (default 50)
#   --only LIST      comma-separated subset of tlsgate,haproxy,stunnel,tlsgate2,haproxy2,direct
#   --tests LIST     comma-separated subset of idle,bulk,cps,full,ka (default all; memory at
#                    rest is always measured)
#   --perf           perf record -g -a (both CPUs: the upgrader and the kernel work on its CPU,
#                    nginx and wrk on the other) during an extra, uncounted run of each wrk
#                    test, for every one-CPU row; busy time per request on each CPU and the
#                    top of each profile go to /tmp/tgb-perf-ROW-TEST.txt
#   --allocs         counts the upgrader's heap allocations (malloc, calloc, realloc; uprobes
#                    on libc, `perf stat -p` on its processes) during another extra, uncounted
#                    run of each wrk test, for every one-CPU row: a deterministic figure per
#                    connection or request, unlike the times (the probes slow that run down)
#
# Setup (issue 10): the gateway under test runs alone on CPU 1 (taskset -c 1), nginx and the
# load generators on CPU 0; the scaling rows give the gateway CPUs 0-1 (shared with the
# load: the machine has no third core). Every figure is printed as an absolute value and as
# a ratio to HAProxy measured in the same run (tlsgate2 to haproxy2). Metrics: new
# connections/s with resumption and with full handshakes only (nginx reloaded with tickets
# and session cache off), keep-alive req/s and p99 (64 connections, 100-byte body), bulk
# MB/s (4 downloads of --size MiB over one connection, bytes over transfer time), KiB of
# gateway PSS per idle relayed connection, RSS and PSS at rest (tlsgate: supervisor + its
# one worker; RSS counts a shared library page once per process, PSS splits it between all
# processes mapping it, "each page once" counts every physical page of the upgrader's
# processes once), and the share of upstream handshakes nginx saw resumed.
#
# As root on Debian 12. Installs haproxy, stunnel4 and wrk if missing (and keeps their
# system services from running), builds tlsgate (release, the Swift runtime linked
# statically as the package ships it) if the binary is missing or older than Sources/,
# builds the lab with Scripts/lab.sh --prefix tgb-, runs nginx in the server namespace,
# then the upgraders in turn (never two at once) in the gateway namespace, round after
# round, each round in a fresh process of each, and prints a table. Every load run is
# bounded by `timeout`; processes are stopped by PID and the nft table and the namespaces
# removed on every exit. Everything the script starts runs at
# nice -10 (TGB_NICE=N to change), so background work on a shared machine disturbs the
# figures less; the gateway's CPU time per connection/request is the least noisy figure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export PATH=/opt/swift/usr/bin:/usr/sbin:/sbin:/usr/bin:/bin:$PATH
PY=/usr/bin/python3

usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

ARGS="$*"        # for the table's header (the loop below consumes them)
QUICK=0 DURATION="" SIZE_MIB=64 CONNS="" CONC=50 ROUNDS=3 PERF=0 ALLOCS=0
BULK_REPEAT=4    # downloads of the bulk file per round, over one connection (one alone lasts ~0.2 s)
ONLY="tlsgate,haproxy,stunnel,tlsgate2,haproxy2" TESTS="idle,bulk,cps,full,ka"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
    --size) [ $# -ge 2 ] || usage; SIZE_MIB=$2; shift 2 ;;
    --conns) [ $# -ge 2 ] || usage; CONNS=$2; shift 2 ;;
    --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2 ;;
    --concurrency) [ $# -ge 2 ] || usage; CONC=$2; shift 2 ;;
    --only) [ $# -ge 2 ] || usage; ONLY=$2; shift 2 ;;
    --tests) [ $# -ge 2 ] || usage; TESTS=$2; shift 2 ;;
    --perf) PERF=1; shift ;;
    --allocs) ALLOCS=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "bench.sh: unknown argument: $1" >&2; usage ;;
  esac
done
for t in ${TESTS//,/ }; do
  case "$t" in idle|bulk|cps|full|ka) ;; *) echo "bench.sh: unknown test '$t' (idle, bulk, cps, full, ka)" >&2; exit 2 ;; esac
done
want() { case ",$TESTS," in *",$1,"*) return 0 ;; esac; return 1; }   # want TEST: was it asked for
if [ "$QUICK" -eq 1 ]; then
  : "${DURATION:=3}" "${CONNS:=500}"
else
  : "${DURATION:=5}" "${CONNS:=2000}"
fi
for v in DURATION SIZE_MIB CONNS CONC ROUNDS; do
  case "${!v}" in ''|*[!0-9]*) echo "bench.sh: $v must be a positive integer" >&2; exit 2 ;; esac
  [ "${!v}" -gt 0 ] || { echo "bench.sh: $v must be > 0" >&2; exit 2; }
done
[ "$DURATION" -le 120 ] || { echo "bench.sh: --duration at most 120" >&2; exit 2; }
[ "$CONNS" -le 5000 ] || { echo "bench.sh: --conns at most 5000" >&2; exit 2; }
[ "$SIZE_MIB" -le 4096 ] || { echo "bench.sh: --size at most 4096" >&2; exit 2; }
[ "$ROUNDS" -ge 2 ] && [ "$ROUNDS" -le 9 ] || { echo "bench.sh: --rounds between 2 and 9" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (network namespaces)" >&2; exit 1; }
renice -n "${TGB_NICE:--10}" -p $$ >/dev/null      # inherited by everything started below
NCPU=$(nproc --all)
[ "$NCPU" -ge 2 ] || { echo "bench.sh: needs at least 2 CPUs (gateway on CPU 1, load on CPU 0)" >&2; exit 1; }
# CPU sets: the gateway alone on 1; the load and nginx on 0; scaling rows on 0-1.
GW_CPUS=1 LOAD_CPUS=0 SCALE_CPUS=0,1

PREFIX=tgb-
NS_C=${PREFIX}client NS_G=${PREFIX}gw NS_S=${PREFIX}server IF_LAN=${PREFIX}gl
RUN=/run/tgb-bench
BIN=${TLSGATE_BIN:-$repo/.build/release/tlsgate}   # TLSGATE_BIN: compare another build (not rebuilt)
SERVER=198.19.0.10
HAPROXY_PORT=18080 STUNNEL_PORT=18081
TICK=$(getconf CLK_TCK)

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
log() { printf '   %s\n' "$*" >&2; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
load() { local ns=$1; shift; ip netns exec "$ns" taskset -c "$LOAD_CPUS" "$@"; }   # a load generator on the load CPU
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
    [ -z "${PERF_PID:-}" ] || stop_pid "$PERF_PID" 3
    [ "${PROBES_ADDED:-0}" -eq 0 ] || perf probe -q -d 'tgb_bench:*' >/dev/null 2>&1
    "$repo/Scripts/lab.sh" down --prefix "$PREFIX" >/dev/null 2>&1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- /proc helpers
sum_field() {     # sum_field FILE-SUFFIX KEY PID...: sum of "KEY: n kB" over the PIDs
  local file=$1 key=$2 sum=0 pid v; shift 2
  for pid in "$@"; do
    v=$(awk -v k="$key:" '$1 == k {print $2; exit}' "/proc/$pid/$file" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
rss_kib() { sum_field status VmRSS "$@"; }
pss_kib() { sum_field smaps_rollup Pss "$@"; }
uniq_kib() { "$PY" "$repo/Scripts/bench/distinct_kib.py" "$@" 2>/dev/null || true; }   # each physical page once
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
median() {        # median of the numbers given (mean of the middle two for an even count)
  printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
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
if [ -n "${TLSGATE_BIN:-}" ]; then
  log "using TLSGATE_BIN=$BIN as it is"
elif [ ! -x "$BIN" ] || [ -n "$(find Sources Package.swift -newer "$BIN" -print -quit 2>/dev/null)" ]; then
  log "building (swift build -c release --static-swift-stdlib, as the package ships it; log /tmp/tgb-build.log)"
  if ! timeout 900 swift build -c release --static-swift-stdlib >/tmp/tgb-build.log 2>&1; then
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
resumption() {    # resumption on|off: nginx with tickets + session cache, or neither (reload)
  if [ "$1" = on ]; then
    echo "ssl_session_cache shared:BENCH:10m; ssl_session_tickets on;" > "$RUN/resume.conf"
  else
    echo "ssl_session_cache off; ssl_session_tickets off;" > "$RUN/resume.conf"
  fi
  [ -z "${NGINX_PID:-}" ] && return 0
  kill -HUP "$NGINX_PID"
  sleep 1.5                                   # new workers up; old ones finish their connections
}
resumption on
# Background processes: `ip netns exec` itself (it execs taskset, which execs the program),
# never the nsx function (that would make $! a subshell and leave the real process running).
ip netns exec "$NS_S" taskset -c "$LOAD_CPUS" nginx -c "$RUN/nginx.conf" 2>"$RUN/nginx-stderr.log" &
NGINX_PID=$!; BG_PIDS+=("$NGINX_PID")
for _ in $(seq 1 50); do
  nsx "$NS_G" curl -sS -o /dev/null --max-time 2 --cacert "$RUN/ca/root.pem" \
    --resolve "good.test:443:$SERVER" https://good.test/small 2>/dev/null && break
  sleep 0.2
done
nsx "$NS_G" curl -sS -o /dev/null --max-time 5 --cacert "$RUN/ca/root.pem" --resolve "good.test:443:$SERVER" https://good.test/small \
  || { cat "$RUN/nginx-stderr.log" "$RUN/nginx-error.log" >&2 2>/dev/null; echo "bench.sh: nginx did not come up" >&2; exit 1; }
log "nginx on $SERVER:443 (good.test, CPU $LOAD_CPUS), /big = ${SIZE_MIB} MiB, /small = 513 B, /ka = 100 B"

# ---------------------------------------------------------------- upgraders
UP_PIDS=()        # processes of the running upgrader (for RSS/PSS/CPU)
UP_MAIN=""        # the PID we started (stopped at the end)
PERF_PID="" EXTRA=perf

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

start_tlsgate() { # start_tlsgate CPUS THREADS (THREADS 0 = tlsgate's default)
  local cpus=$1 threads=$2
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
threads = $threads
CONF
  chmod 0644 "$RUN/policies/web.toml" "$RUN/tlsgate.toml"
  "$BIN" check --config "$RUN/tlsgate.toml" >&2 || return 1
  ip netns exec "$NS_G" taskset -c "$cpus" "$BIN" run --config "$RUN/tlsgate.toml" 2>"$RUN/tlsgate.log" &
  UP_MAIN=$!; BG_PIDS+=("$UP_MAIN")
  for _ in $(seq 1 100); do grep -q "worker listening" "$RUN/tlsgate.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "worker listening" "$RUN/tlsgate.log" || { tail -n 5 "$RUN/tlsgate.log" >&2; return 1; }
  local c
  UP_PIDS=("$UP_MAIN")
  for c in $(pgrep -P "$UP_MAIN" || true); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = tlsgate ] && { UP_PIDS+=("$c"); BG_PIDS+=("$c"); }
  done
  [ "${#UP_PIDS[@]}" -eq 2 ] || { log "expected one tlsgate worker, found $(( ${#UP_PIDS[@]} - 1 ))"; return 1; }
  log "worker: $(grep -m1 'worker listening' "$RUN/tlsgate.log" | grep -o 'threads=[^ ]*\|cpus=.*)' | paste -sd' ' -)"
}

start_haproxy() { # start_haproxy CPUS NBTHREAD
  local cpus=$1 nbthread=$2
  cat > "$RUN/haproxy.cfg" <<CFG
global
  nbthread $nbthread
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
  ip netns exec "$NS_G" taskset -c "$cpus" haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
  UP_MAIN=$!; BG_PIDS+=("$UP_MAIN"); UP_PIDS=("$UP_MAIN")
}

start_stunnel() { # start_stunnel CPUS
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
  ip netns exec "$NS_G" taskset -c "$1" "$STUNNEL" "$RUN/stunnel.conf" >"$RUN/stunnel.log" 2>&1 &
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

# Results: R[row,metric] = median; RAW[row,metric] = the rounds' values, for the log.
declare -A R RAW NOTE LOAD
na() { NOTE[$1]="${NOTE[$1]:+${NOTE[$1]}; }$2"; }
put() { RAW[$1,$2]="${RAW[$1,$2]:+${RAW[$1,$2]} }$3"; }          # put ROW METRIC VALUE
settle() { local r=$1 m; for m in "${@:2}"; do [ -z "${RAW[$r,$m]:-}" ] || R[$r,$m]=$(median ${RAW[$r,$m]}); done; }

perf_start() {    # perf_start TEST: profile both CPUs (the gateway's and the load's) for the coming wrk run,
                  # or (EXTRA=allocs) count the upgrader's allocations
  if [ "$EXTRA" = allocs ]; then
    [ "${#UP_PIDS[@]}" -gt 0 ] || return 0
    timeout $((DURATION + 10)) perf stat -x, -e tgb_bench:malloc,tgb_bench:calloc,tgb_bench:realloc \
      -p "$(IFS=,; echo "${UP_PIDS[*]}")" -o "/tmp/tgb-allocs-$CUR_ROW-$1.txt" -- sleep "$DURATION" >/dev/null 2>&1 &
    PERF_PID=$!
    return 0
  fi
  [ "$PERF" -eq 1 ] && command -v perf >/dev/null || return 0
  timeout $((DURATION + 10)) perf record -q -F 499 ${TGB_PERF_CALLGRAPH:--g} -a -o "/tmp/tgb-perf-$CUR_ROW-$1.data" -- sleep "$DURATION" \
    >/dev/null 2>&1 &
  PERF_PID=$!
}
perf_stop() {     # perf_stop TEST [REQUESTS]: wait for perf, write the top of the report
  [ -n "$PERF_PID" ] || return 0
  wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""
  if [ "$EXTRA" = allocs ]; then
    local n=${2:-0} total
    total=$(awk -F, '$3 ~ /^tgb_bench:/ && $1 ~ /^[0-9]+$/ { t += $1 } END { print t + 0 }' "/tmp/tgb-allocs-$CUR_ROW-$1.txt" 2>/dev/null || echo 0)
    if [ "$n" -gt 0 ] && [ "$total" -gt 0 ]; then
      local each
      each=$(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.1f", t / n }')
      put "$CUR_ROW" "$1-allocs" "$each"
      log "allocations: $total in $n requests ($each per request)"
    else
      na "$CUR_ROW" "no allocation count for $1"
    fi
    return 0
  fi
  local data="/tmp/tgb-perf-$CUR_ROW-$1.data" n=${2:-0}
  {
    echo "# perf record -F 499 -g -a during one uncounted $1 run of $CUR_ROW ($n requests; gateway on CPU $GW_CPUS,"
    echo "# nginx and the load on CPU $LOAD_CPUS). Busy time per request on each CPU (one sample = 1/499 s):"
    perf script -i "$data" -F cpu 2>/dev/null | tr -d '[] ' | sort | uniq -c \
      | awk -v n="$n" '{ printf "#   CPU %d: %.1f us per request (%d samples)\n", $2 + 0, (n > 0 ? $1 / 499 * 1e6 / n : 0), $1 }'
    echo "# gateway CPU, by process and library (self time):"
    perf report -i "$data" --cpu "$GW_CPUS" --no-children --stdio --sort comm,dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 12
    echo "# load CPU, by process and library (self time):"
    perf report -i "$data" --cpu "$LOAD_CPUS" --no-children --stdio --sort comm,dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 12
    echo "# gateway CPU, top symbols:"
    perf report -i "$data" --cpu "$GW_CPUS" --no-children --stdio --sort comm,dso,symbol -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 40 \
      | { if command -v swift-demangle >/dev/null; then swift-demangle --simplified; else cat; fi; }
  } | sed 's/[[:space:]]*$//; s/  \{2,\}/  /g' > "/tmp/tgb-perf-$CUR_ROW-$1.txt" 2>/dev/null || true
  log "profile: /tmp/tgb-perf-$CUR_ROW-$1.txt"
}

measure_idle() {  # one round: PSS before, with $CONNS kept-alive connections, per connection
  local u=$1 round=$2 out="$RUN/idle-$1.out" pid ok held i p0 p1
  p0=$(pss_kib "${UP_PIDS[@]}")
  ip netns exec "$NS_C" taskset -c "$LOAD_CPUS" "$PY" "$repo/Scripts/bench/idle_client.py" "$SERVER" 80 /small "$CONNS" \
    --parallel 50 --open-timeout 10 --hold 120 >"$out" 2>"$RUN/idle-$u.err" &
  pid=$!; BG_PIDS+=("$pid")
  for i in $(seq 1 $((CONNS / 5 + 300))); do grep -q '^ready' "$out" 2>/dev/null && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if ! grep -q '^ready' "$out"; then
    na "$u" "idle client did not finish opening"; stop_pid "$pid" 2; return 0
  fi
  sleep 2                                     # let allocations settle
  ok=$(sed -n 's/^ready ok=\([0-9]*\).*/\1/p' "$out")
  held=$(upstream_conns)
  p1=$(pss_kib "${UP_PIDS[@]}")
  log "idle $round: $(cat "$out"); upstream TLS: $held; PSS $(fmt "$(awk -v k="$p0" 'BEGIN{print k/1024}')") -> $(fmt "$(awk -v k="$p1" 'BEGIN{print k/1024}')") MiB; threads: $(nthreads "${UP_PIDS[@]}")"
  [ "${ok:-0}" -gt 0 ] && put "$u" kib "$(awk -v a="$p1" -v b="$p0" -v n="$ok" 'BEGIN { printf "%.1f", (a - b) / n }')"
  [ "${ok:-0}" -eq "$CONNS" ] || na "$u" "round $round: only $ok of $CONNS idle connections opened"
  stop_pid "$pid" 3
  for i in $(seq 1 50); do [ "$(upstream_conns)" -eq 0 ] && break; sleep 0.1; done
  [ "$(upstream_conns)" -eq 0 ] || na "$u" "$(upstream_conns) upstream connections still open 5 s after the idle client exited"
  sleep 1
}

measure_bulk() {  # one round: BULK_REPEAT downloads of /big over one connection
  local u=$1 round=$2 r c0 c1 urls=() i total_s total_b codes rate
  for i in $(seq 1 "$BULK_REPEAT"); do urls+=(-o /dev/null "$(base_url "$u")/big"); done
  c0=$(cpu_ticks "${UP_PIDS[@]}")
  # One line per download: seconds of the transfer, bytes, status. curl keeps the connection.
  r=$(load "$NS_C" curl -s --max-time 300 "${CURL_TLS[@]}" \
        -w '%{time_total} %{size_download} %{http_code}\n' "${urls[@]}" || true)
  c1=$(cpu_ticks "${UP_PIDS[@]}")
  read -r total_s total_b codes <<<"$(awk '{ t += $1; b += $2; if ($3 != 200) bad++ } END { printf "%.6f %d %d", t, b, bad + 0 }' <<<"$r")"
  if [ "${codes:-1}" -ne 0 ] || [ "${total_b:-0}" -ne $((BULK_REPEAT * SIZE_MIB * 1048576)) ]; then
    na "$u" "download $round: ${total_b:-0} of $((BULK_REPEAT * SIZE_MIB * 1048576)) bytes, $(tr '\n' ' ' <<<"$r")"; return 0
  fi
  rate=$(awk -v b="$total_b" -v t="$total_s" 'BEGIN { printf "%.0f", b / t / 1e6 }')
  put "$u" bulk "$rate"
  [ "${#UP_PIDS[@]}" -eq 0 ] || put "$u" bulk-cpu "$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v b="$total_b" 'BEGIN { printf "%.2f", (t / hz) / (b / 1e9) }')"
  log "download $round: $rate MB/s ($BULK_REPEAT x $SIZE_MIB MiB in $total_s s)"
}

tcp_segs() {      # TCP segments in and out of the gateway namespace so far: "IN OUT"
  nsx "$NS_G" awk '$1 == "Tcp:" && $2 ~ /^[0-9]/ { print $11, $12 }' /proc/net/snmp 2>/dev/null || echo "0 0"
}

to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
  if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000; printf "%.2f", n }'; }

run_wrk() {       # run_wrk ROW TEST ROUND PATH CONNS [wrk args...]: req/s, p99 and resumed share
                  # (round 0: an extra run under perf, for tlsgate with --perf, not counted)
  local u=$1 test=$2 round=$3 path=$4 conns=$5 out="$RUN/wrk-$1-$2-$3.out" log0 reqs errs c0 c1 s0 s1 segs=""; shift 5
  log0=$(stat -c %s "$RUN/nginx-resumed.log" 2>/dev/null || echo 0)
  [ "$round" -ne 0 ] || perf_start "$test"
  c0=$(cpu_ticks "${UP_PIDS[@]}"); s0=$(tcp_segs)
  if ! load "$NS_C" timeout $((DURATION + 30)) wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s --latency "$@" \
         "$(base_url "$u")$path" >"$out" 2>&1; then
    na "$u" "wrk $test $round failed: $(tail -n 1 "$out")"; perf_stop "$test"; return 0
  fi
  c1=$(cpu_ticks "${UP_PIDS[@]}"); s1=$(tcp_segs)
  if [ "$round" -eq 0 ]; then perf_stop "$test" "$(awk '/requests in/ { print $1 }' "$out")"; return 0; fi    # the profiled run is not counted
  reqs=$(awk '/requests in/ { print $1 }' "$out")
  errs=$(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | paste -sd';' - || true)
  [ -z "$errs" ] || na "$u" "wrk $test $round: $errs"
  put "$u" "$test" "$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")"
  put "$u" "$test-p99" "$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
  if [ "${#UP_PIDS[@]}" -gt 0 ] && [ "${reqs:-0}" -gt 0 ]; then
    put "$u" "$test-cpu" "$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
  fi
  [ "${reqs:-0}" -gt 0 ] && segs=$(awk -v a="$s0" -v b="$s1" -v n="$reqs" 'BEGIN { split(a, x, " "); split(b, y, " ");
    printf "%.1f in, %.1f out", (y[1] - x[1]) / n, (y[2] - x[2]) / n }')
  sleep 1.5                                     # nginx flushes its log buffer every second
  local res
  res=$(tail -c +$((log0 + 1)) "$RUN/nginx-resumed.log" 2>/dev/null | awk '{ n++; if ($1 == "r") r++ }
    END { if (n) printf "%.1f", 100 * r / n }')
  [ "$test" = ka ] || [ -z "$res" ] || put "$u" "$test-res" "$res"
  log "$test $round: $(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out") req/s, p99 $(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")") ms, resumed upstream ${res:-?} %${segs:+, gateway TCP segments per request $segs}${errs:+, $errs}"
}

start_row() {     # start_row ROW CPUS: start the upgrader, wait for it, warm it up
  local u=$1 cpus=$2 i
  case "$u" in
    tlsgate) start_tlsgate "$cpus" 0 ;;
    tlsgate2) start_tlsgate "$cpus" 2 ;;
    haproxy) start_haproxy "$cpus" 1 ;;
    haproxy2) start_haproxy "$cpus" 2 ;;
    stunnel) start_stunnel "$cpus" ;;
    direct) UP_PIDS=(); UP_MAIN="" ;;
  esac || { na "$u" "did not start"; stop_upgrader; return 1; }
  if ! wait_ready "$u"; then
    na "$u" "no request got through"; log "no request got through"; stop_upgrader; return 1
  fi
  for i in $(seq 1 20); do nsx "$NS_C" curl -s -o /dev/null --max-time 5 "${CURL_TLS[@]}" "$(base_url "$u")/small" || true; done
  sleep 1
}

run_round() {     # run_round ROW ROUND: one round of every test for ROW, in a fresh process
                  # (round 0: the extra runs under perf, not counted, with --perf)
  local u=$1 round=$2 base=${1%2} cpus=$GW_CPUS scaling=0
  [ "$u" = "$base" ] || { scaling=1; cpus=$SCALE_CPUS; }
  say "$u, round $round$([ "$round" -eq 0 ] && echo " ($([ "$EXTRA" = allocs ] && echo "allocations counted" || echo profiled), not counted)") (CPUs $([ "$u" = direct ] && echo "-" || echo "$cpus"))"
  [ -n "${LOAD[$u]:-}" ] || LOAD[$u]=$(cut -d' ' -f1 /proc/loadavg)
  if [ -n "${SKIP[$base]:-}" ]; then
    [ "$round" -ne 1 ] || na "$u" "${SKIP[$base]}"
    log "skipped: ${SKIP[$base]}"; return 0
  fi
  CUR_ROW=$u
  start_row "$u" "$cpus" || return 0
  if [ "$round" -gt 0 ] && [ "$u" != direct ]; then
    put "$u" rss "$(rss_kib "${UP_PIDS[@]}")"
    put "$u" pss "$(pss_kib "${UP_PIDS[@]}")"
    put "$u" uniq "$(uniq_kib "${UP_PIDS[@]}")"
    log "RSS at rest: $(rss_each "${UP_PIDS[@]}"); PSS $(fmt "$(awk -v k="$(pss_kib "${UP_PIDS[@]}")" 'BEGIN{print k/1024}')") MiB"
    # Idle memory first, in the fresh process (later, it would reuse what the other tests
    # freed and understate the cost).
    if [ "$scaling" -eq 0 ] && want idle; then measure_idle "$u" "$round"; fi
  fi
  if [ "$round" -gt 0 ] && want bulk; then
    nsx "$NS_C" curl -s -o /dev/null --max-time 60 "${CURL_TLS[@]}" "$(base_url "$u")/big" || true     # warm-up
    measure_bulk "$u" "$round"
  fi
  load "$NS_C" timeout 20 wrk -t1 -c"$CONC" -d1s --timeout 5s -H 'Connection: close' "$(base_url "$u")/small" >/dev/null 2>&1 || true
  if want cps; then run_wrk "$u" cps "$round" /small "$CONC" -H 'Connection: close'; fi
  if [ "$scaling" -eq 0 ] && want full; then
    resumption off
    run_wrk "$u" full "$round" /small "$CONC" -H 'Connection: close'
    resumption on
  fi
  if want ka; then run_wrk "$u" ka "$round" /ka 64; fi
  if [ "$u" != direct ]; then
    log "RSS after the tests: $(rss_each "${UP_PIDS[@]}")"
    case "$u" in tlsgate*)
      log "tlsgate log: $(grep -c 'connection closed' "$RUN/tlsgate.log") connections, $(grep 'connection closed' "$RUN/tlsgate.log" | grep -vc 'result=ok') not ok" ;;
    esac
    stop_upgrader
  fi
}

# ---------------------------------------------------------------- header
T0=$(date +%s)
versions() {
  echo "machine:  $NCPU cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
  echo "versions: tlsgate $("$BIN" --version 2>/dev/null || echo n/a) (tree at $TG_COMMIT), haproxy $(haproxy -v 2>/dev/null | awk 'NR==1 {print $3}' || echo n/a), stunnel $([ -n "$STUNNEL" ] && "$STUNNEL" -version 2>&1 | awk '/^stunnel/ {print $2; exit}' || echo n/a), $(openssl version | awk '{print $1, $2}'), nginx $(nginx -v 2>&1 | sed 's#.*/##'), wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}' || true), curl $(curl --version | awk 'NR==1 {print $2}')"
  echo "setup:    gateway on CPU $GW_CPUS alone (scaling rows: CPUs $SCALE_CPUS), nginx + load on CPU $LOAD_CPUS; $ROUNDS rounds per test, medians; wrk -t1 ${DURATION}s: -c$CONC 'Connection: close' to 513 B (cps, full), -c64 keep-alive to 100 B (ka); bulk ${BULK_REPEAT} x ${SIZE_MIB} MiB; idle $CONNS connections"
}
say "run"
versions | sed 's/^/   /' >&2
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
others_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -vc "^$PREFIX" || true; }
NS_START=$(others_ns)
log "load average at start: $LOAD_START; other network namespaces: $NS_START"

IFS=, read -r -a ORDER <<<"$ONLY"
RAN=()
for u in "${ORDER[@]}"; do
  case "$u" in
    tlsgate|haproxy|stunnel|tlsgate2|haproxy2|direct) RAN+=("$u") ;;
    '') ;;
    *) echo "bench.sh: unknown row '$u' (tlsgate, haproxy, stunnel, tlsgate2, haproxy2, direct)" >&2 ;;
  esac
done
# The rows take turns within every round, in the opposite order in the next round
# (tlsgate, haproxy, stunnel, ..., then ..., stunnel, haproxy, tlsgate): on a shared machine
# the background load drifts, and a row whose rounds all ran in one stretch would carry that
# stretch's luck into its ratio. --perf's profiled runs come first, one per one-CPU row.
if [ "$PERF" -eq 1 ]; then
  for u in "${RAN[@]}"; do case "$u" in tlsgate|haproxy|stunnel) run_round "$u" 0 ;; esac; done
fi
# --allocs: uprobes on libc's allocation functions, in a group of this script's own (removed
# on exit; one left by a killed run is removed first), counted per process by perf stat in
# one more extra run of each one-CPU row.
if [ "$ALLOCS" -eq 1 ]; then
  LIBC=$(ldconfig -p | awk '$1 == "libc.so.6" && /x86-64/ { print $NF; exit }')
  if command -v perf >/dev/null && [ -n "$LIBC" ] \
     && { perf probe -q -d 'tgb_bench:*' >/dev/null 2>&1 || true; } \
     && perf probe -q -x "$LIBC" -a 'tgb_bench:malloc=malloc' -a 'tgb_bench:calloc=calloc' -a 'tgb_bench:realloc=realloc' >/dev/null 2>&1; then
    PROBES_ADDED=1; EXTRA=allocs
    for u in "${RAN[@]}"; do case "$u" in tlsgate|haproxy|stunnel) run_round "$u" 0 ;; esac; done
    perf probe -q -d 'tgb_bench:*' >/dev/null 2>&1 || true; PROBES_ADDED=0
  else
    log "--allocs: cannot add uprobes on libc's malloc (perf probe); no allocation counts"
  fi
  EXTRA=perf
fi
for round in $(seq 1 "$ROUNDS"); do
  turn=("${RAN[@]}")
  if [ $((round % 2)) -eq 0 ]; then turn=(); for u in "${RAN[@]}"; do turn=("$u" "${turn[@]}"); done; fi
  for u in "${turn[@]}"; do run_round "$u" "$round"; done
done
for u in "${RAN[@]}"; do
  settle "$u" rss pss uniq kib bulk bulk-cpu cps cps-p99 cps-res cps-cpu full full-res full-cpu ka ka-p99 ka-cpu \
    cps-allocs full-allocs ka-allocs
  # The rate per gateway core: requests or MB per second of the gateway's CPU time (what
  # the rate would be with the gateway's core the only limit; the inverse of the CPU rows).
  [ -z "${R[$u,ka-cpu]:-}" ] || R[$u,ka-core]=$(awk -v c="${R[$u,ka-cpu]}" 'BEGIN { if (c > 0) printf "%.0f", 1e6 / c }')
  [ -z "${R[$u,bulk-cpu]:-}" ] || R[$u,bulk-core]=$(awk -v c="${R[$u,bulk-cpu]}" 'BEGIN { if (c > 0) printf "%.0f", 1000 / c }')
done

# ---------------------------------------------------------------- table
cell() {          # cell ROW METRIC REF: "value (ratio×)" against REF's value
  local r=$1 m=$2 ref=$3 x=${R[$1,$2]:-} y=${R[$3,$2]:-} ratio=""
  [ -n "$x" ] || { echo "n/a"; return; }
  if [ "$m" = rss ] || [ "$m" = pss ] || [ "$m" = uniq ]; then
    x=$(awk -v k="$x" 'BEGIN { print k / 1024 }'); y=${y:+$(awk -v k="$y" 'BEGIN { print k / 1024 }')}
  fi
  if [ -n "$y" ] && [ "$r" != "$ref" ] && awk -v y="$y" 'BEGIN { exit !(y > 0) }'; then
    ratio=" ($(awk -v x="$x" -v y="$y" 'BEGIN { printf "%.2f", x / y }')x)"
  fi
  echo "$(awk -v v="$x" 'BEGIN { if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else printf "%.2f", v }')$ratio"
}
table() {         # table REF ROW...
  local ref=$1 r; shift
  printf '| %-44s |' "metric (ratio to $ref)"; for r in "$@"; do printf ' %-16s |' "$r"; done; echo
  printf '|%s|' "$(printf -- '-%.0s' $(seq 1 46))"; for r in "$@"; do printf '%s|' "$(printf -- '-%.0s' $(seq 1 18))"; done; echo
  local line
  while IFS='|' read -r m label; do
    local any=0; for r in "$@"; do [ -z "${R[$r,$m]:-}" ] || any=1; done
    [ "$any" -eq 1 ] || continue
    printf '| %-44s |' "$label"; for r in "$@"; do printf ' %-16s |' "$(cell "$r" "$m" "$ref")"; done; echo
  done <<'ROWS'
cps|new conn/s, resumed upstream (higher better)
cps-p99|  p99 ms
cps-res|  upstream resumed %
cps-cpu|  gateway CPU us per connection
cps-allocs|  heap allocations per connection
full|new conn/s, full handshakes only
full-cpu|  gateway CPU us per connection
full-allocs|  heap allocations per connection
ka|keep-alive req/s (64 conns, 100 B)
ka-p99|  keep-alive p99 ms (lower better)
ka-cpu|  gateway CPU us per request
ka-core|  req/s per gateway core (1e6 / CPU us)
ka-allocs|  heap allocations per request
bulk|bulk MB/s (4 downloads, one connection)
bulk-cpu|  gateway CPU s per GB
bulk-core|  MB/s per gateway core (1000 / CPU s)
kib|idle KiB PSS per connection (lower better)
rss|RSS at rest MiB (lower better)
pss|PSS at rest MiB (shared pages split)
uniq|resident at rest MiB, each page once
ROWS
}
{
  echo
  echo "tlsgate bench  $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - T0 )) s: Scripts/bench.sh $ARGS"
  versions
  echo "load:     $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; other network namespaces: $NS_START at start, $(others_ns) at end"
  printf 'load at each start:'; for u in "${RAN[@]}"; do printf ' %s %s' "$u" "${LOAD[$u]:-?}"; done; echo " (1-min load average)"
  echo
  one=(); two=()
  for u in "${RAN[@]}"; do case "$u" in *2) two+=("$u") ;; *) one+=("$u") ;; esac; done
  [ "${#one[@]}" -eq 0 ] || table haproxy "${one[@]}"
  if [ "${#two[@]}" -gt 0 ]; then
    echo; echo "Scaling: the gateway on CPUs $SCALE_CPUS (shared with nginx and the load on CPU $LOAD_CPUS)"
    table haproxy2 "${two[@]}"
    for u in tlsgate haproxy; do
      [ -n "${R[$u,ka]:-}" ] && [ -n "${R[${u}2,ka]:-}" ] || continue
      echo "$u 1 -> 2 threads: keep-alive $(awk -v a="${R[$u,ka]}" -v b="${R[${u}2,ka]}" 'BEGIN { printf "%.2f", b / a }')×, conn/s $(awk -v a="${R[$u,cps]:-0}" -v b="${R[${u}2,cps]:-0}" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }')×, bulk $(awk -v a="${R[$u,bulk]:-0}" -v b="${R[${u}2,bulk]:-0}" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }')×"
    done
  fi
  echo
  echo "Medians of $ROUNDS rounds (values of each round below). RSS = VmRSS summed over the upgrader's processes (tlsgate: supervisor + worker;"
  echo "a library page mapped by both counts twice); PSS = Pss of smaps_rollup summed (a page shared by k processes, other programs'"
  echo "included, counts 1/k in each); each page once = distinct physical pages of the upgrader's processes (Scripts/bench/distinct_kib.py)"
  echo "after start and 20 requests; idle KiB = PSS growth with $CONNS open idle relayed connections / connections."
  echo "Upstream resumed = share of the upgrader's upstream handshakes nginx reported as resumed (full test: nginx without tickets or cache)."
  for u in "${RAN[@]}"; do
    [ "$u" != haproxy ] && [ "$u" != haproxy2 ] || continue
    refrow=haproxy; case "$u" in *2) refrow=haproxy2 ;; esac
    line=""
    for m in cps full ka bulk kib; do
      a=(${RAW[$u,$m]:-}); b=(${RAW[$refrow,$m]:-})
      [ "${#a[@]}" -gt 0 ] && [ "${#a[@]}" -eq "${#b[@]}" ] || continue
      line+=" $m=$(for i in "${!a[@]}"; do awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN { if (y > 0) printf "%.2f\n", x / y }'; done | paste -sd/ -)"
    done
    [ -z "$line" ] || echo "$u/$refrow by round (the rows took turns):$line"
  done
  for u in "${RAN[@]}"; do
    printf '%s rounds:' "$u"
    for m in cps full ka ka-p99 bulk kib rss pss uniq; do [ -z "${RAW[$u,$m]:-}" ] || printf ' %s=%s' "$m" "${RAW[$u,$m]// //}"; done; echo
    [ -z "${NOTE[$u]:-}" ] || echo "$u: n/a or warnings because: ${NOTE[$u]}"
  done
}
