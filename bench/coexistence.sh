#!/usr/bin/env bash
# The droplet's own mirror and update traffic beside roamgw, in one run: mirror downloads idle
# and during changes and restarts (nftables and firewalld), the droplet's and the laptop's own
# downloads, and sharing of a shaped uplink. Writes docs/benchmarks.md (as root, ~4 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-coexistence)
echo "$report"
splice_report coexistence "Coexistence: the droplet's mirror and updates" "$report"
