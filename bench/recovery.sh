#!/usr/bin/env bash
# Recovery after roaming: laptop address change, CGNAT mapping loss, gateway move by DNS name;
# roamer vs stock wg-quick + wireguard-go, in one run; roamer RSS. Writes docs/benchmarks.md
# (as root, ~10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps tcpdump
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-recovery)
echo "$report"
splice_report recovery "Recovery after roaming" "$report"
