#!/usr/bin/env bash
# The newcomer's first run, `bash scripts/demo`, timed on a fresh Debian bookworm root: made
# by mmdebstrap with what a fresh cloud image has plus a C toolchain (Rust links with cc), the
# checkout copied in (git archive HEAD), this machine's Rust toolchain bound in read-only, an
# empty cargo registry and target directory. So apt fetches every package the demo needs,
# cargo every crate, and the release build starts from nothing; the phases are timed apart.
# What it cannot make fresh: the network and the CPU are this machine's.
# Then, as the baseline, the build the demo did before: the demo program and the binaries
# in two cargo builds. Writes docs/benchmarks.md (as root, ~20 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
command -v mmdebstrap >/dev/null || install_bench_deps
work=$(mktemp -d /var/tmp/roamgw-first-run.XXXXXX)
root=$work/root
cleanup() {
  for m in run/netns run sys proc dev opt/rust/rustup opt/rust/cargo-bin; do
    umount -R -l "$root/$m" 2>/dev/null || true
  done
  umount -R -l "$root" 2>/dev/null || true
  # Never delete through a mount that is still there (/dev, /sys are this machine's).
  if grep -q " $root" /proc/mounts; then
    echo "first-run: mounts left under $root; not deleting it" >&2
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT

mmdebstrap --variant=apt --include=ca-certificates,gcc,libc6-dev --mode=root --quiet \
  bookworm "$root" http://deb.debian.org/debian
# A mount point of its own: `ip netns exec` remounts / inside (as on a real machine).
mount --bind "$root" "$root"
mkdir -p "$root/src" && git archive HEAD | tar -x -C "$root/src"
mkdir -p "$root/opt/rust/rustup" "$root/opt/rust/cargo-bin"
mount --bind -o ro "${RUSTUP_HOME:-$HOME/.rustup}" "$root/opt/rust/rustup"
mount --bind -o ro "${CARGO_HOME:-$HOME/.cargo}/bin" "$root/opt/rust/cargo-bin"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs run "$root/run"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The network is this machine's: so are the certificate authorities it adds (a proxy's).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi

in_root() {
  chroot "$root" env -i PATH=/opt/rust/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root RUSTUP_HOME=/opt/rust/rustup CARGO_HOME=/root/.cargo LANG=C.UTF-8 \
    bash -c "cd /src && $1"
}
# The demo's own steps (scripts/demo), timed one by one.
phase() {
  local start end
  start=$(date +%s.%N)
  in_root "$2" >"$work/$1.log" 2>&1 || { echo "first-run: $1 failed:" >&2; tail -30 "$work/$1.log" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.0f}')"
}
packages=$(phase packages 'bash scripts/demo packages')
fetch=$(phase fetch 'cargo fetch --locked')
build=$(phase build 'bash scripts/demo build')
run=$(phase run 'bash scripts/demo run')
grep -q "the laptop.s address): roamer" "$work/run.log" || { echo "first-run: the demo said nothing of the laptop:" >&2; cat "$work/run.log" >&2; exit 1; }
# The baseline, in the same root (crates already fetched) and a target directory of its own:
# the demo program and the binaries built apart, as scripts/demo did before.
apart_demo=$(phase apart-demo 'CARGO_TARGET_DIR=/root/apart cargo build --locked --release -q -p roamgw-e2e --bin demo')
apart_bins=$(phase apart-bins 'CARGO_TARGET_DIR=/root/apart cargo build --locked --release -q --bins -p roamgw-gateway -p roamgw-roamer')
apart=$((apart_demo + apart_bins))
total=$((packages + fetch + build + run))
fmt() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }
ratio=$(python3 -c "print(f'{$build / $apart:.2f}')")
report="| step of \`bash scripts/demo\` | wall time |
|---|---|
| apt: the demo's packages (\`scripts/demo packages\`, lists fetched fresh) | $(fmt "$packages") |
| cargo: every crate fetched (\`cargo fetch\`, which the build would do) | $(fmt "$fetch") |
| the demo program, roamgw and roamer in one release build from nothing (\`scripts/demo build\`) | $(fmt "$build") |
| the scenario: namespaces, init, add-port, a client through the floating IP, a move, teardown (\`scripts/demo run\`) | $(fmt "$run") |
| **total** | **$(fmt "$total")** |

Baseline in the same run, the same root, crates already fetched: the demo program built
first and roamgw and roamer after it, in two cargo builds (as scripts/demo did before):
$(fmt "$apart_demo") + $(fmt "$apart_bins") = $(fmt "$apart"). One build takes **${ratio}x**
the time of the two.

A fresh Debian bookworm root (mmdebstrap: apt, ca-certificates, gcc, libc6-dev) with this
machine's Rust toolchain bound in read-only and nothing else: an empty cargo registry, no
target directory, apt lists fetched by the demo. $(nproc) cores; the network is this machine's."
echo "$report"
splice_report first-run "The first run on a fresh machine" "$report"
