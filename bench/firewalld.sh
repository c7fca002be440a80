#!/usr/bin/env bash
# The firewalld backend: add-port until live vs the manual rich-rule way, on a real firewalld.
# Writes docs/benchmarks.md (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-firewalld)
echo "$report"
splice_report firewalld "firewalld backend" "$report"
