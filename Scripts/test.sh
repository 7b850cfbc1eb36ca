#!/usr/bin/env bash
# Runs everything tlsgate's CI checks, in order:
#   1. Scripts/setup.sh        dependencies (Debian packages)
#   2. swift build             the package, debug (gives .build/debug/tlsgate)
#   3. swift test              unit tests
#   3b. fuzz                   Scripts/fuzz.sh 20: every fuzz target 20 s under libFuzzer
#                              from the committed corpus (its own build in .build-fuzz)
#   4. integration tests       /usr/bin/python3 -m pytest -v Tests/integration
#                              (root: network namespaces + nftables; under CI=...
#                              a missing requirement fails instead of skipping)
# Usage: Scripts/test.sh            (from anywhere; as root for the integration tests)
# Every step runs even if an earlier one failed (except: no build -> no tests that need it);
# prints a summary and exits non-zero if any step failed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi

declare -a names=() results=() times=()
failed=0

step() {
  local name=$1; shift
  local t0 rc
  t0=$(date +%s)
  echo
  echo "===== test.sh: $name: $*"
  set +e
  "$@"
  rc=$?
  set -e
  names+=("$name"); times+=("$(( $(date +%s) - t0 ))s")
  if [ "$rc" -eq 0 ]; then
    results+=("ok")
  else
    results+=("FAILED (exit $rc)"); failed=$((failed + 1))
  fi
  return "$rc"
}

skip() {
  names+=("$1"); results+=("not run: $2"); times+=("-"); failed=$((failed + 1))
}

# Runs a command with its output shown and copied to $1; keeps the command's status.
run_logged() {
  local log=$1; shift
  mkdir -p "$(dirname "$log")"
  "$@" 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}

summary() {
  echo
  echo "===== test.sh summary"
  local i
  for i in "${!names[@]}"; do
    printf '  %-20s %-22s %s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
  done
  if [ -s .build/swift-test.log ] && grep -qE '✘|error:|unexpected signal' .build/swift-test.log; then
    echo "  swift test failures (from .build/swift-test.log):"
    grep -E '✘|error:|unexpected signal' .build/swift-test.log | tail -n 30 | sed 's/^/    /'
  fi
  if [ "$failed" -eq 0 ]; then
    echo "test.sh: all steps ok"
  else
    echo "test.sh: $failed step(s) failed or not run"
  fi
}

setup_ok=1; build_ok=1
rm -f .build/swift-test.log
step setup bash Scripts/setup.sh || setup_ok=0
if [ "$setup_ok" -eq 1 ]; then
  step "swift build" swift build || build_ok=0
else
  skip "swift build" "setup failed"; build_ok=0
fi
if [ "$build_ok" -eq 1 ]; then
  # The output is kept (.build/swift-test.log) and its failures are repeated in the
  # summary: CI shows only the tail of the run.
  step "swift test" run_logged .build/swift-test.log swift test || true
  step fuzz bash Scripts/fuzz.sh 20 || true
  # pytest exit 5 (no test collected) is a failure here too.
  step integration /usr/bin/python3 -m pytest -v Tests/integration || true
else
  skip "swift test" "no build"
  skip fuzz "no build"
  skip integration "no build"
fi

summary
[ "$failed" -eq 0 ]
