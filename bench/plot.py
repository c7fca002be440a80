"""Plots of the benchmark reports: reads the tables a bench script wrote into
docs/benchmarks.md (between <!-- NAME:begin --> and <!-- NAME:end -->) and draws
docs/bench/NAME.svg. The table is the record; the plot is drawn from it, so both always
come from the same run.

    /usr/bin/python3 bench/plot.py [NAME ...]     (default: every report with a plot)

Needs Debian's python3-matplotlib (bench/lib.sh installs it).
"""

import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

DOC = Path("docs/benchmarks.md")
OUT = Path("docs/bench")
# Reproducible SVGs: the same tables draw the same bytes.
matplotlib.rcParams.update({
    "svg.hashsalt": "roamgw",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
})
OURS, THEIRS, OTHER = "#0969da", "#cf222e", "#8c959f"


def section(name):
    text = DOC.read_text()
    m = re.search(rf"<!-- {re.escape(name)}:begin -->(.*?)<!-- {re.escape(name)}:end -->", text, re.S)
    if not m:
        sys.exit(f"no {name} report in {DOC}: run bash bench/{name}.sh first")
    return m.group(1)


def tables(block):
    """Every markdown table of the block as (header, rows), cells stripped of ** and `."""
    out, current = [], None
    for line in block.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip().replace("**", "").replace("`", "") for c in line.strip().strip("|").split("|")]
        if current is None:
            current = (cells, [])
            out.append(current)
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            current[1].append(cells)
    return out


def number(text):
    """The first number of a cell ("4,714" -> 4714, "0.11 s (…)" -> 0.11); None if none."""
    m = re.search(r"-?[\d,]*\.?\d+", text)
    return float(m.group(0).replace(",", "")) if m else None


def numbers(text):
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*", text)]


def save(fig, name):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.svg"
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
    print(f"wrote {path}")


def plot_throughput():
    header, rows = tables(section("throughput"))[0]
    labels = [r[0].split(")")[0] + ")" for r in rows]
    runs = [numbers(r[1]) for r in rows]
    medians = [number(r[2]) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    colors = [OTHER if l == "(a)" else THEIRS if l in ("(b)", "(g)") else OURS for l in labels]
    y = range(len(rows))
    ax.barh(y, medians, color=colors, alpha=0.85)
    for i, values in enumerate(runs):
        ax.plot(values, [i] * len(values), "k.", markersize=4)
        ratios = f"{rows[i][3]} of (b)" + (f", {rows[i][4]} of (g)" if len(rows[i]) > 4 else "")
        ax.text(medians[i] * 1.08, i, f"{medians[i]:,.0f} Mbit/s  ({ratios})", va="center", fontsize=8)
    ax.set_yticks(list(y), [r[0][:70] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(right=max(medians) * 12)
    ax.set_xlabel("Mbit/s, log scale (bar: median, dots: runs)")
    fig.suptitle("Forwarded throughput (blue: roamgw, red: manual setups, grey: no tunnel)")
    save(fig, "throughput")


def plot_add_port():
    (header, rows), (_, manual) = tables(section("add-port"))[:2]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for mode, color, marker in [("CLI alone", OTHER, "s"), ("roamgw run", OURS, "o")]:
        points = [(number(r[0]), number(r[2]), number(r[3])) for r in rows if mode in r[1]]
        xs, p50, p95 = zip(*points)
        ax.plot(xs, p50, marker=marker, color=color, label=f"roamgw add-port, {rows[0][1] if mode == 'CLI alone' else 'roamgw run up'} (p50)")
        ax.fill_between(xs, p50, p95, color=color, alpha=0.15)
    xs = [number(r[0]) for r in manual]
    ax.plot(xs, [number(r[1]) for r in manual], marker="^", color=THEIRS,
            label="manual: firewall-cmd --add-rich-rule (p50)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forwards (or rich rules) already present")
    ax.set_ylabel("until live, ms (band: p50–p95)")
    fig.suptitle("add-port until live against the number of forwards")
    ax.legend(fontsize=7)
    save(fig, "add-port")


def trials(cell, cap):
    """Trial values of a recovery cell; "> 20" (not recovered) becomes the cap; a cell
    without trials ("—": not measured for that laptop) has none."""
    inner = re.search(r"\((.*)\)", cell)
    values = []
    for part in (inner.group(1) if inner else "").split("/"):
        part = part.strip()
        if part:
            values.append(cap if part.startswith(">") else float(part))
    return values


def plot_recovery():
    header, rows = tables(section("recovery"))[0]
    cap = 20.0
    fig, ax = plt.subplots(figsize=(8, 3))
    for i, row in enumerate(rows):
        for offset, cell, color, who in [(-0.15, row[1], OURS, "roamer run"), (0.15, row[2], THEIRS, "wg-quick + wireguard-go")]:
            values = trials(cell, cap)
            ax.scatter(values, [i + offset] * len(values), color=color, s=18,
                       label=who if i == 0 else None, marker="o")
            lost = [v for v in values if v >= cap]
            if lost:
                ax.scatter(lost, [i + offset] * len(lost), color=color, marker="x", s=40)
    ax.axvline(cap, color=OTHER, linestyle=":", linewidth=1)
    ax.text(cap + 0.3, -0.45, "not recovered\nwithin 20 s (x)", fontsize=7, va="top")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds until the forward answers again (each dot a trial)")
    ax.set_xlim(0, cap + 4)
    fig.suptitle("Recovery after roaming")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    save(fig, "recovery")


def plot_restart():
    (_, rows), (_, drift) = tables(section("restart"))[:2]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3), gridspec_kw={"width_ratios": [3, 2]})
    labels = [f"{r[0].replace('stock ', '')}: {r[1]}" for r in rows]
    y = list(range(len(rows)))
    left.barh([i - 0.2 for i in y], [number(r[2]) for r in rows], height=0.4, color=OURS, label="remembered endpoints")
    left.barh([i + 0.2 for i in y], [number(r[3]) for r in rows], height=0.4, color=OTHER, label="without (as before)")
    left.set_yticks(y, labels, fontsize=7)
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlabel("restart ready → forward answers, s (median, log)")
    left.legend(fontsize=7)
    left.set_title("Restarts")
    y = list(range(len(drift)))
    right.barh(y, [number(r[2]) for r in drift], color=OURS)
    right.set_yticks(y, [f"{r[0]}: {r[1].replace(' (from the command', '')[:40]}" for r in drift], fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("drift → forward back, s (median)")
    right.set_title("Drift repaired")
    save(fig, "restart")


def plot_firewalld():
    header, rows = tables(section("firewalld"))[0]
    fig, ax = plt.subplots(figsize=(6, 3))
    kinds = [("CLI alone", OTHER, "s"), ("roamgw run", OURS, "o"), ("manual", THEIRS, "^")]
    for kind, color, marker in kinds:
        points = [(number(r[0]), number(r[2])) for r in rows if kind in r[1] and "ratio" not in r[1]]
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker=marker, color=color, label=next(r[1] for r in rows if kind in r[1]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forwards present")
    ax.set_ylabel("add-port until live, ms (p50)")
    fig.suptitle("firewalld backend against manual rich rules")
    ax.legend(fontsize=7)
    save(fig, "firewalld")


def plot_coexistence():
    header, rows = tables(section("coexistence"))[0]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    y = list(range(len(rows)))
    ax.barh(y, [number(r[1]) for r in rows], color=[OTHER if r[0].startswith("idle") else OURS for r in rows])
    for i, r in enumerate(rows):
        ax.text(number(r[1]) + 3, i, r[2], va="center", fontsize=7)
    ax.set_yticks(y, [r[0][:60] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(number(r[1]) for r in rows) * 1.15)
    ax.set_xlabel("mirror download, Mbit/s (uplink shaped to 300 Mbit/s; grey: idle)")
    fig.suptitle("The droplet's mirror while roamgw changes, restarts and reloads")
    save(fig, "coexistence")


def plot_datapath():
    header, rows = tables(section("datapath"))[0]
    labels = [f"{r[0].replace(' 0.0.20250522', '')} → {r[1].replace(' 0.0.20250522', '')}, {r[2]}" for r in rows]
    ours = ["roamgw" in r[0] and "roamgw" in r[1] for r in rows]
    reference = ["roamgw" not in r[0] and "roamgw" not in r[1] for r in rows]
    colors = [OURS if o else THEIRS if ref else OTHER for o, ref in zip(ours, reference)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    y = list(range(len(rows)))
    medians = [number(r[4]) for r in rows]
    left.barh(y, medians, color=colors)
    for i, r in enumerate(rows):
        runs = numbers(r[3])
        left.plot(runs, [i] * len(runs), "k.", markersize=4)
        left.text(max(runs + [medians[i]]) * 1.03, i, r[5], va="center", fontsize=7)
    left.set_xlim(0, max(max(numbers(r[3])) for r in rows) * 1.2)
    left.set_yticks(y, labels, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("Mbit/s (bar: median, dots: runs; vs wireguard-go both ends)")
    cpu = [number(r[6]) for r in rows]
    right.barh(y, cpu, color=colors)
    for i, r in enumerate(rows):
        right.text(cpu[i] * 1.02, i, r[7], va="center", fontsize=7)
    right.set_xlim(0, max(cpu) * 1.2)
    right.set_xlabel("CPU s per GB, both ends (lower is better)")
    fig.suptitle("Data path: roamgw (blue) against wireguard-go 0.0.20250522 (red), mixed pairs grey")
    save(fig, "datapath")


def plot_failover():
    header, rows = tables(section("failover"))[0]
    labels = [f"{r[0]}, API delay {r[1]}" for r in rows]
    parts = [[number(r[2]), number(r[3]), number(r[4])] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 2.8))
    y = range(len(rows))
    left = [0.0] * len(rows)
    for k, (name, color) in enumerate(
        [("detection (keepalived)", OTHER), ("provider API", THEIRS), ("data plane (roamgw)", OURS)]
    ):
        widths = [(p[k] or 0.0) for p in parts]
        ax.barh(y, widths, left=left, color=color, alpha=0.85, label=name)
        left = [l + w for l, w in zip(left, widths)]
    for i, r in enumerate(rows):
        ax.text(left[i] + 0.1, i, f"roamer {number(r[5]):.2f} s, stock {number(r[6]):.2f} s", va="center", fontsize=8)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(right=max(left) * 1.6)
    ax.set_xlabel("seconds from the event to a working forward (medians)")
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Failover of a pair: where the time goes")
    save(fig, "failover")


PLOTS = {
    "throughput": plot_throughput,
    "add-port": plot_add_port,
    "recovery": plot_recovery,
    "restart": plot_restart,
    "firewalld": plot_firewalld,
    "coexistence": plot_coexistence,
    "datapath": plot_datapath,
    "failover": plot_failover,
}

if __name__ == "__main__":
    for name in sys.argv[1:] or PLOTS:
        if name in PLOTS:
            PLOTS[name]()
        else:
            print(f"no plot for {name}", file=sys.stderr)
