#!/usr/bin/env bash
# Builds the Tokio peer benchmarks bench-tokio-xshard and bench-tokio-core offline, from Debian
# 12's packaged crates.
#   bash build.sh [outdir]     outdir: cargo target dir, default <repo>/build-tokio
# Installs cargo, rustc and the crates (librust-*-dev) with apt-get if they are missing (needs
# root), builds in release mode with -j1 (JOBS=n to change), and prints bench-tokio-xshard's path
# on its last line (bench-tokio-core is beside it). Uses Debian's /usr/bin/cargo and
# /usr/bin/rustc even when a rustup toolchain is on PATH, so every machine builds with the same
# compiler and the same crates.
set -euo pipefail

die() { echo "build.sh: error: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
outdir=${1:-$repo/build-tokio}
case $outdir in /*) ;; *) outdir=$PWD/$outdir ;; esac

# 1. Packages: the toolchain and the crates tokio (rt, sync, time) and libc need.
pkgs="cargo rustc librust-tokio-dev librust-libc-dev"
missing=""
for p in $pkgs; do
    status=$(dpkg -s "$p" 2>/dev/null || true)
    case $status in *"Status: install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || die "missing Debian packages:$missing (run as root, or: apt-get install$missing)"
    echo "build.sh: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y $missing >&2; then
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y $missing >&2 || die "apt-get install$missing failed"
    fi
fi
[ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] || die "/usr/bin/cargo or /usr/bin/rustc missing after install"
[ -d /usr/share/cargo/registry ] || die "/usr/share/cargo/registry missing (librust-*-dev packages)"

# 2. Build, offline: .cargo/config.toml here replaces crates-io with /usr/share/cargo/registry.
cd "$here"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
start=$(date +%s)
/usr/bin/cargo build --release --offline -j "${JOBS:-1}" --target-dir "$outdir" >&2 \
    || die "cargo build failed (see above)"
bin=$outdir/release/bench-tokio-xshard
for b in "$bin" "$outdir/release/bench-tokio-core"; do
    [ -x "$b" ] || die "cargo succeeded but $b is missing"
done
tokio=$(grep -A1 '^name = "tokio"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
echo "build.sh: built with $(/usr/bin/rustc --version), tokio ${tokio:-?}, in $(( $(date +%s) - start )) s" >&2
echo "$bin"
