#!/usr/bin/env bash
# Runs every fuzz target under libFuzzer for a bounded time, from the committed corpus.
#
# Usage: Scripts/fuzz.sh [SECONDS] [TARGET...]     (default 60 s per target; all targets)
#
# Targets (Sources/tlsgate-fuzz): policy (TOML reader + policy decoder), config (TOML reader
# + global config decoder), http-host (the HTTP Host sniffer, whole vs split), starttls (the
# STARTTLS reply parsers and PostgreSQL's client preamble). Builds with
# libFuzzer (coverage, ASan) into .build-fuzz (the ordinary .build is left alone); seeds from
# Tests/fuzz/corpus/TARGET, new inputs go to a scratch copy, never into the repository.
# A crash leaves its input in .build-fuzz/crashes/TARGET/ and fails the script; replay it with
#   TLSGATE_FUZZ_TARGET=TARGET .build-fuzz/debug/tlsgate-fuzz FILE
# or, without libFuzzer, `.build/debug/tlsgate-fuzz TARGET FILE`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH=/opt/swift/usr/bin:$PATH
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(policy config http-host starttls)
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a number" >&2; exit 2;; esac

scratch=.build-fuzz
# Coverage-instrumented with ASan; linked with libFuzzer's driver without its main
# (fuzzer_no_main): main.swift calls LLVMFuzzerRunDriver under -DTLSGATE_LIBFUZZER.
# (-sanitize=fuzzer would link libFuzzer's own main next to SwiftPM's.)
fuzzer_lib=$(ls /opt/swift/usr/lib/swift/clang/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null \
  || ls "$(dirname "$(command -v swift)")"/../lib/swift/clang/lib/linux/libclang_rt.fuzzer_no_main-*.a | head -1)
swift build -c debug --scratch-path "$scratch" --product tlsgate-fuzz --sanitize=address \
  -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table -Xswiftc -DTLSGATE_LIBFUZZER \
  -Xlinker "$fuzzer_lib" -Xlinker -lstdc++ 2>&1 | tail -3
bin="$scratch/debug/tlsgate-fuzz"
[ -x "$bin" ] || { echo "fuzz.sh: $bin was not built" >&2; exit 1; }

# No Swift backtracer on a crash: libFuzzer reports it and the backtracer would stall 30 s.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
fail=0
for t in "${targets[@]}"; do
  seeds="Tests/fuzz/corpus/$t"
  [ -d "$seeds" ] || { echo "fuzz.sh: no corpus $seeds" >&2; exit 2; }
  work=$(mktemp -d)
  crashes="$scratch/crashes/$t"
  mkdir -p "$crashes"
  log="$scratch/fuzz-$t.log"
  start=$(date +%s)
  set +e
  TLSGATE_FUZZ_TARGET=$t "$bin" "$work" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  rm -rf "$work"
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: clean seconds=$(( $(date +%s) - start )) runs=${runs:-?} coverage=${cov:-?}"
  else
    echo "fuzz $t: CRASH (exit $rc) after $(( $(date +%s) - start )) s; inputs in $crashes/, log $log:"
    grep -a -E "ERROR|Fatal error|SUMMARY|Test unit written" "$log" | head -8
    fail=1
  fi
done
exit "$fail"
