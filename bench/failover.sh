#!/usr/bin/env bash
# Failover of a pair (roamgw ha): the active droplet killed, and a planned handover, with the
# fake provider API's delay at 0 and 3 s; roamer and stock wg-quick laptops in one run.
# Writes docs/benchmarks.md (as root, ~5 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-failover)
echo "$report"
splice_report failover "Failover of a pair" "$report"
