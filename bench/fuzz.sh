#!/usr/bin/env bash
# Runs every property test long: each target for up to $SECONDS_PER_TARGET s (default 600)
# with $PROPTEST_CASES cases (default 2,000,000, so the time limit is what usually stops it).
# A failure is saved by proptest next to its test (*.proptest-regressions, committed: the suite
# replays them first) and this script exits non-zero. Prints, per target, the cases run.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_PER_TARGET:-600}
export PROPTEST_CASES=${PROPTEST_CASES:-2000000}
# The test binaries, built once (running them directly keeps cargo's locks free).
binaries=$(cargo test --release --locked --no-run --message-format=json \
    -p roamgw-common -p roamgw-wg -p roamgw-gateway --test properties 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "properties":
        print(m["executable"])')
[[ -n $binaries ]] || { echo "fuzz: could not build the property tests" >&2; exit 1; }
status=0
for binary in $binaries; do
  for target in $("$binary" --list 2>/dev/null | sed -n 's/: test$//p'); do
    start=$(date +%s)
    timeout "$seconds" "$binary" --exact "$target" >"/tmp/fuzz-$target.log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    case $rc in
      0) echo "$target: $PROPTEST_CASES cases, no failure ($took s)" ;;
      124) echo "$target: no failure in $seconds s (stopped by the time limit before $PROPTEST_CASES cases)" ;;
      *) echo "$target: FAILED (/tmp/fuzz-$target.log; the case is saved in the regressions file)"; status=1 ;;
    esac
  done
done
exit $status
