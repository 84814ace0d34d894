#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz long (the suite runs each for a few seconds):
#   scripts/fuzz.sh [SECONDS [TARGET...]]   default 600 s each, every target
# Builds them with clang (ASan+UBSan) in build/fuzz, runs each with one job per CPU from the
# committed seeds (new inputs go to build/fuzz/corpus-TARGET), and prints the executions done.
# A finding stops that target; libFuzzer leaves the input (crash-*, slow-unit-*, ...) in
# build/fuzz/findings.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(addr wheel ring http proxy-head kv-resp)
if [ ! -f build/fuzz/build.ninja ]; then
    CC=clang meson setup build/fuzz -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
        -Db_lundef=false -Dfuzz=true -Dtests=false -Dbenchmarks=false -Dexamples=false >/dev/null
fi
ninja -C build/fuzz >/dev/null
jobs=$(nproc)
for t in "${targets[@]}"; do
    mkdir -p "build/fuzz/corpus-$t" build/fuzz/findings
    log=build/fuzz/fuzz-$t.log
    echo "fuzz-$t: $seconds s, $jobs jobs"
    status=0
    build/fuzz/tests/fuzz/fuzz-"$t" -max_total_time="$seconds" -jobs="$jobs" -workers="$jobs" \
        -print_final_stats=1 -artifact_prefix=build/fuzz/findings/ "build/fuzz/corpus-$t" "tests/fuzz/corpus/$t" >"$log" 2>&1 || status=$?
    runs=$(cat fuzz-*.log 2>/dev/null | sed -n 's/^stat::number_of_executed_units: *//p' |
        awk '{s += $1} END {print s + 0}')
    rm -f fuzz-*.log
    echo "fuzz-$t: $runs executions, $( [ $status -eq 0 ] && echo "no finding" || echo "FINDING (see $log)")"
done
