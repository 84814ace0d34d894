#!/usr/bin/env bash
# Builds the Tokio peers bench-tokio-xshard and bench-tokio-core offline, from Debian 12's
# packaged crates (../cargo-build.sh says how).
#   bash build.sh [outdir]     outdir: cargo target dir, default <repo>/build-tokio
# Prints bench-tokio-xshard's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# tokio (rt, sync, time) and libc.
exec bash "$here/../cargo-build.sh" "$here" "${1:-$repo/build-tokio}" \
    "cargo rustc librust-tokio-dev librust-libc-dev" bench-tokio-xshard bench-tokio-core
