#!/usr/bin/env bash
# The userspace data path against wireguard-go 0.0.20250522 (../shared/anchors): both
# directions, mixed pairs, CPU per GB, RSS, small packets, latency under load, in one run.
# Writes docs/benchmarks.md (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-datapath)
echo "$report"
splice_report datapath "Data path against wireguard-go 0.0.20250522" "$report"
