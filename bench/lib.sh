# Shared by the bench scripts: their extra packages, and putting a report into
# docs/benchmarks.md between <!-- NAME:begin --> and <!-- NAME:end --> (a new section if absent).

install_bench_deps() {
  bash scripts/install-deps
  local p
  # python3-matplotlib: bench/plot.py draws each report's plot with Debian's python3.
  for p in python3-matplotlib "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  done
}

# splice_report NAME "Section title" "report text"; then, when bench/plot.py has a plot for
# NAME, draws docs/bench/NAME.svg from the tables just written and shows it in the section.
splice_report() {
  local plotted=no
  grep -q "^    \"$1\": plot_" bench/plot.py && plotted=yes
  python3 - "$1" "$2" "$3" "$plotted" <<'PY'
import re, sys, datetime
name, title, report, plotted = sys.argv[1:5]
path = "docs/benchmarks.md"
text = open(path).read()
image = f"![{name}](bench/{name}.svg)\n\n" if plotted == "yes" else ""
block = f"<!-- {name}:begin -->\nMeasured {datetime.date.today()} by `bash bench/{name}.sh`.\n\n{image}{report}\n<!-- {name}:end -->"
pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->.*<!-- {re.escape(name)}:end -->", re.S)
new, n = pattern.subn(lambda m: block, text)
if n == 0:
    new = text.rstrip() + f"\n\n## {title}\n\n" + block + "\n"
open(path, "w").write(new)
PY
  if [ "$plotted" = yes ]; then /usr/bin/python3 bench/plot.py "$1"; fi
}
