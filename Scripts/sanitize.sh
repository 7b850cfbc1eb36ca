#!/usr/bin/env bash
# Builds the package and its unit tests with AddressSanitizer and ThreadSanitizer and runs
# the unit tests under each; prints one line per sanitizer:
#   sanitize address: clean (tests passed, no report)      or   sanitize address: UNCLEAN (...)
#
# Usage: Scripts/sanitize.sh [address] [thread]     (default: both)
#
# Separate scratch paths (.build-asan, .build-tsan): the ordinary .build is left alone.
# Logs: .build-asan/sanitize.log, .build-tsan/sanitize.log. Suppressions, each with its
# reason, are in Scripts/sanitize/*.supp (empty when there is nothing to suppress).
# Exits non-zero if any sanitizer is unclean.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi
sanitizers=("$@")
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(address thread)

# Reports go to the log; a report fails the run even if the test still passed.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:suppressions=$repo/Scripts/sanitize/asan.supp"
export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$repo/Scripts/sanitize/tsan.supp"
export SWIFT_BACKTRACE=enable=no

fail=0
for s in "${sanitizers[@]}"; do
  case "$s" in
    address) scratch=.build-asan; pattern='ERROR: AddressSanitizer' ;;
    thread) scratch=.build-tsan; pattern='WARNING: ThreadSanitizer' ;;
    *) echo "sanitize.sh: unknown sanitizer $s (address, thread)" >&2; exit 2 ;;
  esac
  mkdir -p "$scratch"
  log="$scratch/sanitize.log"
  start=$(date +%s)
  if ! swift build --build-tests --scratch-path "$scratch" --sanitize="$s" >"$log" 2>&1; then
    echo "sanitize $s: UNCLEAN (the build failed; see $log)"
    tail -n 20 "$log"
    fail=1
    continue
  fi
  swift test --skip-build --scratch-path "$scratch" --sanitize="$s" >>"$log" 2>&1
  rc=$?
  reports=$(grep -c -- "$pattern" "$log")
  seconds=$(( $(date +%s) - start ))
  passed=$(grep -a -oE 'Test run with [0-9]+ tests? in [0-9]+ suites? passed' "$log" | tail -1)
  if [ "$rc" -eq 0 ] && [ "$reports" -eq 0 ]; then
    echo "sanitize $s: clean (${passed:-tests passed}, no report, ${seconds}s)"
  else
    echo "sanitize $s: UNCLEAN (swift test exit $rc, $reports report(s), ${seconds}s; see $log)"
    grep -a -A12 -- "$pattern" "$log" | head -n 60
    grep -a -E '✘|error:' "$log" | head -n 20
    fail=1
  fi
done
exit "$fail"
