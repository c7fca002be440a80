#!/usr/bin/env bash
# Restarts and reboots: time until the forward works again after kill -9, SIGTERM + start and a
# simulated reboot, for a stock wg-quick laptop and for roamer, with and without the remembered
# endpoints; drift repair times (nftables and firewalld). Writes docs/benchmarks.md
# (as root, ~12 minutes: a stock laptop without remembered endpoints waits for its rekey).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
install_bench_deps
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-restart)
echo "$report"
splice_report restart "Restarts, reboots and drift" "$report"
