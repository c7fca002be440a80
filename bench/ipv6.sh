#!/usr/bin/env bash
# The tunnel over IPv6 against over IPv4 in one run: forwarded throughput and CPU per GB, the
# move from an IPv4-only to an IPv6-only network, the happy-eyeballs race's time.
# Writes docs/benchmarks.md (as root, ~3 minutes after the build).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-ipv6)
echo "$report"
splice_report ipv6 "The tunnel over IPv6" "$report"
