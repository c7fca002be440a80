#!/usr/bin/env bash
# The roamer on networks that pass no UDP: WireGuard over TCP against UDP in one run (join time,
# throughput clean and with 1 % loss, ping-pong, time back to UDP, 1,000 idle connections).
# Writes docs/benchmarks.md (as root, ~6 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-transport)
echo "$report"
splice_report transport "WireGuard over TCP" "$report"
