#!/usr/bin/env bash
# add-port until live: roamgw at 10 / 1,000 / 10,000 forwards vs the manual rich-rule way on a
# real firewalld, in one run. Writes the report into docs/benchmarks.md (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps
for p in firewalld dbus; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done
report=$(cargo run --locked --release -q -p roamgw-e2e --bin bench-add-port)
echo "$report"
python3 - "$report" <<'PY'
import re, sys, datetime
report = sys.argv[1]
path = "docs/benchmarks.md"
text = open(path).read()
block = f"<!-- add-port:begin -->\nMeasured {datetime.date.today()} by `bash bench/add-port.sh`.\n\n{report}\n<!-- add-port:end -->"
new, n = re.subn(r"<!-- add-port:begin -->.*<!-- add-port:end -->", lambda m: block, text, flags=re.S)
if n == 0:
    new = text.rstrip() + "\n\n## add-port until live\n\n" + block + "\n"
open(path, "w").write(new)
PY
