#!/usr/bin/env bash
# Builds the Tokio network peer tokio-server (bench/net.sh's HTTP and echo peer) offline, from
# Debian 12's packaged crates (../cargo-build.sh says how).
#   bash build.sh [outdir]     outdir: cargo target dir, default <repo>/build-tokio-net
# Prints the binary's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# tokio with rt, net and io-util: Debian names each feature as a virtual package that
# librust-tokio-dev provides (net pulls in mio and socket2; io-util bytes and memchr).
exec bash "$here/../cargo-build.sh" "$here" "${1:-$repo/build-tokio-net}" \
    "cargo rustc librust-tokio-dev librust-tokio+net-dev librust-tokio+io-util-dev librust-httparse-dev" tokio-server
