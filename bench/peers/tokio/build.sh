#!/usr/bin/env bash
# Builds the Tokio peers bench-tokio-xshard and bench-tokio-core (bench-core's and bench-idle's
# peer) offline, from Debian 12's packaged crates (../cargo-build.sh says how).
#   bash build.sh [outdir]     outdir: cargo target dir, default <repo>/build-tokio
# Prints bench-tokio-xshard's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# tokio (rt, rt-multi-thread, sync, time, net) and libc: Debian names each tokio feature as a
# virtual package that librust-tokio-dev provides (net pulls in mio and socket2, rt-multi-thread
# num_cpus).
exec bash "$here/../cargo-build.sh" "$here" "${1:-$repo/build-tokio}" \
    "cargo rustc librust-tokio-dev librust-tokio+net-dev librust-tokio+rt-multi-thread-dev librust-libc-dev" \
    bench-tokio-xshard bench-tokio-core
