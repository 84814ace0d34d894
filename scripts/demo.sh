#!/usr/bin/env bash
# The main job: installs what is missing, builds a release, and runs the demo program on every
# CPU of this machine. Extra arguments go to the demo (numbers per shard).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -f build/release/build.ninja ]; then
    meson setup build/release -Dbuildtype=release >/dev/null
fi
ninja -C build/release >/dev/null
echo "== examples/hello-shards.c: fibers on every shard"
./build/release/examples/tpc-hello-shards "$@"
