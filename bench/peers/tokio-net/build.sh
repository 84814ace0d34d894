#!/usr/bin/env bash
# Builds the Tokio network peer tokio-server (bench/net.sh's HTTP and echo peer) offline, from
# Debian 12's packaged crates, the way ../tokio/build.sh builds bench-tokio-xshard.
#   bash build.sh [outdir]     outdir: cargo target dir, default <repo>/build-tokio-net
# Installs cargo, rustc and the crates (librust-*-dev) with apt-get if they are missing (needs
# root), builds in release mode with -j1 (JOBS=n to change), and prints the binary's path on its
# last line. Uses Debian's /usr/bin/cargo and /usr/bin/rustc even when a rustup toolchain is on
# PATH, so every machine builds with the same compiler and the same crates.
set -euo pipefail

die() { echo "build.sh: error: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
outdir=${1:-$repo/build-tokio-net}
case $outdir in /*) ;; *) outdir=$PWD/$outdir ;; esac

# 1. Packages: the toolchain and tokio with the features rt, net and io-util. Debian packages
#    one crate per librust-*-dev and names each feature as a virtual package that the crate's
#    package provides (librust-tokio+net-dev: librust-tokio-dev, which depends on mio and
#    socket2; +io-util pulls in bytes and memchr).
pkgs="cargo rustc librust-tokio-dev librust-tokio+net-dev librust-tokio+io-util-dev"
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

# 2. Build, offline: .cargo/config.toml here replaces crates-io with /usr/share/cargo/registry.
cd "$here"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
start=$(date +%s)
/usr/bin/cargo build --release --offline -j "${JOBS:-1}" --target-dir "$outdir" >&2 \
    || die "cargo build failed (see above)"
bin=$outdir/release/tokio-server
[ -x "$bin" ] || die "cargo succeeded but $bin is missing"
tokio=$(grep -A1 '^name = "tokio"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
echo "build.sh: built with $(/usr/bin/rustc --version), tokio ${tokio:-?}, in $(( $(date +%s) - start )) s" >&2
echo "$bin"
