#!/usr/bin/env bash
# The main job: installs what is missing, builds a release, runs the demo program on every CPU
# of this machine, then starts examples/http.c (tpc-http) on every shard, drives it with wrk for
# a few seconds and prints requests/s and the requests each shard served.
#   scripts/demo.sh [numbers per shard...]      DEMO_SECONDS=n: the wrk run's length (default 5)
set -euo pipefail
case "${1:-}" in
-h | --help)
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
cd "$(dirname "$0")/.."
bash scripts/setup.sh wrk
if [ ! -f build/release/build.ninja ]; then
    meson setup build/release -Dbuildtype=release >/dev/null
fi
ninja -C build/release >/dev/null
echo "== examples/hello-shards.c: fibers on every shard"
./build/release/examples/tpc-hello-shards "$@"

echo
echo "== examples/http.c: tpc-http on every shard, driven by wrk for ${DEMO_SECONDS:-5} s"
port=${DEMO_PORT:-18080}
log=$(mktemp)
./build/release/examples/tpc-http --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do # until it listens (at most 5 s)
    grep -q listening "$log" && break
    kill -0 $server 2>/dev/null || { cat "$log"; echo "demo: tpc-http failed to start" >&2; exit 1; }
    sleep 0.05
done
grep -q listening "$log" || { echo "demo: tpc-http did not start listening" >&2; exit 1; }
head -1 "$log"
# wrk shares the CPUs with the server here: this shows the server working, it is not the
# benchmark (bench/net.sh pins them apart and measures CPU per request).
wrk -t1 -c64 -d"${DEMO_SECONDS:-5}s" "http://127.0.0.1:$port/" | grep -E "requests in|Requests/sec|Latency"
kill -TERM $server
wait $server || { echo "demo: tpc-http exited with an error" >&2; exit 1; }
trap - EXIT
tail -n +2 "$log"
rm -f "$log"
