#!/usr/bin/env bash
# Runs every property test long: each target for up to $SECONDS_PER_TARGET s (default 600) with
# $PROPTEST_CASES cases (default 2,000,000: the time limit is what stops it). A failure is
# saved by proptest next to its test (*.proptest-regressions, committed: replayed first in the
# suite) and this script exits non-zero. Prints cases per target.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_PER_TARGET:-600}
export PROPTEST_CASES=${PROPTEST_CASES:-2000000}
cargo build --release --locked -q -p roamgw-common -p roamgw-gateway --tests || exit 1
status=0
for suite in "roamgw-common properties" "roamgw-gateway properties"; do
  set -- $suite
  package=$1 test=$2
  targets=$(cargo test --release --locked -q -p "$package" --test "$test" -- --list 2>/dev/null | sed -n 's/: test$//p')
  for target in $targets; do
    start=$(date +%s)
    if timeout "$seconds" cargo test --release --locked -q -p "$package" --test "$test" -- --exact "$target" >/tmp/fuzz-$target.log 2>&1; then
      echo "$package $target: $PROPTEST_CASES cases passed in $(( $(date +%s) - start )) s"
    elif [[ $? -eq 124 ]]; then
      echo "$package $target: no failure in ${seconds} s (stopped by the time limit)"
    else
      echo "$package $target: FAILED — see /tmp/fuzz-$target.log; the case is saved in the regressions file"
      status=1
    fi
  done
done
exit $status
