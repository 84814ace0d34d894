#!/usr/bin/env bash
# Builds one of the Rust peers offline, from Debian 12's packaged crates (used by
# tokio/build.sh and tokio-net/build.sh):
#   bash cargo-build.sh PKGDIR OUTDIR "DEBIAN PACKAGES" BIN...
# Installs the packages with apt-get if missing (needs root; a package may be a virtual one,
# like librust-tokio+net-dev, that an installed package provides), builds PKGDIR in release mode
# with -j1 (JOBS=n to change) into the cargo target dir OUTDIR, checks that every BIN was built
# and prints the first one's path on its last line. Uses Debian's /usr/bin/cargo and rustc even
# when a rustup toolchain is on PATH, so every machine builds with the same compiler and crates;
# PKGDIR/.cargo/config.toml replaces crates-io with /usr/share/cargo/registry.
set -euo pipefail

die() { echo "build.sh: error: $*" >&2; exit 1; }

[ $# -ge 4 ] || die "usage: cargo-build.sh PKGDIR OUTDIR PACKAGES BIN..."
pkgdir=$1 outdir=$2 pkgs=$3
shift 3
case $outdir in /*) ;; *) outdir=$PWD/$outdir ;; esac

installed() { # a package, or a virtual package that an installed package provides
    local st all re
    st=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] && return 0
    all=$(dpkg-query -W -f='${Status}|${Provides}\n' 2>/dev/null || true)
    re="^install ok installed\|(.*, )?$(printf '%s' "$1" | sed 's/[+.]/\\&/g')( \(|,|$)"
    grep -Eq "$re" <<<"$all"
}
missing=""
for p in $pkgs; do
    installed "$p" || missing="$missing $p"
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

cd "$pkgdir"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
start=$(date +%s)
/usr/bin/cargo build --release --offline -j "${JOBS:-1}" --target-dir "$outdir" >&2 \
    || die "cargo build failed (see above)"
for b in "$@"; do
    [ -x "$outdir/release/$b" ] || die "cargo succeeded but $outdir/release/$b is missing"
done
tokio=$(grep -A1 '^name = "tokio"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
echo "build.sh: built with $(/usr/bin/rustc --version), tokio ${tokio:-?}, in $(( $(date +%s) - start )) s" >&2
echo "$outdir/release/$1"
