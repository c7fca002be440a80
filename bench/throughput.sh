#!/usr/bin/env bash
# Forwarded throughput: raw path, the manual setup (wg-quick + wireguard-go + firewalld rich
# rules), and roamgw run, in one run; RSS of roamgw run. Writes docs/benchmarks.md (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-throughput)
echo "$report"
splice_report throughput "Forwarded throughput" "$report"
