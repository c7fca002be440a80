#!/usr/bin/env bash
# add-port until live: roamgw at 10 / 1,000 / 10,000 forwards (CLI alone and with roamgw run)
# vs the manual rich-rule way on a real firewalld, in one run. Writes docs/benchmarks.md (root).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-add-port)
echo "$report"
splice_report add-port "add-port until live" "$report"
