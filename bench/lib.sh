# Shared by the bench scripts: their extra packages, and putting a report into
# docs/benchmarks.md between <!-- NAME:begin --> and <!-- NAME:end --> (a new section if absent).

install_bench_deps() {
  bash scripts/install-deps
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  done
}

# splice_report NAME "Section title" "report text"
splice_report() {
  python3 - "$1" "$2" "$3" <<'PY'
import re, sys, datetime
name, title, report = sys.argv[1:4]
path = "docs/benchmarks.md"
text = open(path).read()
block = f"<!-- {name}:begin -->\nMeasured {datetime.date.today()} by `bash bench/{name}.sh`.\n\n{report}\n<!-- {name}:end -->"
pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->.*<!-- {re.escape(name)}:end -->", re.S)
new, n = pattern.subn(lambda m: block, text)
if n == 0:
    new = text.rstrip() + f"\n\n## {title}\n\n" + block + "\n"
open(path, "w").write(new)
PY
}
