#!/usr/bin/env bash
# Forwarded throughput: raw path, the manual setup (wg-quick + wireguard-go + firewalld rich
# rules), and roamgw run, in one run; RSS of roamgw run. Writes docs/benchmarks.md (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps
for p in firewalld dbus iperf3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-throughput)
echo "$report"
python3 - "$report" <<'PY'
import re, sys, datetime
report = sys.argv[1]
path = "docs/benchmarks.md"
text = open(path).read()
block = f"<!-- throughput:begin -->\nMeasured {datetime.date.today()} by `bash bench/throughput.sh`.\n\n{report}\n<!-- throughput:end -->"
new, n = re.subn(r"<!-- throughput:begin -->.*<!-- throughput:end -->", lambda m: block, text, flags=re.S)
if n == 0:
    new = text.rstrip() + "\n\n## Forwarded throughput\n\n" + block + "\n"
open(path, "w").write(new)
PY
