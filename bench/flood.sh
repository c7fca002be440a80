#!/usr/bin/env bash
# The gateway under handshake floods (junk, one host's valid-mac1 initiations, 1,000 forged
# sources): an established forward's round trips, the gateway's CPU and a new handshake,
# roamgw against wireguard-go 0.0.20250522 in one run. Writes docs/benchmarks.md (as root,
# ~3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-flood)
echo "$report"
splice_report flood "Handshake floods" "$report"
