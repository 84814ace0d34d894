#!/usr/bin/env bash
# Runs one libFuzzer target briefly for the suite: run.sh TARGET SEED_CORPUS SECONDS
# New inputs go to a temporary directory (the committed seeds stay as they are). Prints a line
# that scripts/test.sh counts as a passed case, with the executions done; a finding fails it,
# and libFuzzer leaves the input (crash-*, slow-unit-*, ...) in findings/ beside the target.
set -euo pipefail
target=$1 seeds=$2 seconds=$3
name=$(basename "$target")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
findings=$(dirname "$target")/findings
mkdir -p "$findings"
if "$target" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$findings/" "$work" "$seeds" >"$work/log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
    echo "# $name: $runs executions in $seconds s, no finding"
    echo "[       OK ] ${name//-/_}"
else
    tail -40 "$work/log"
    echo "# $name: the input is in $findings"
    echo "[  FAILED  ] ${name//-/_}"
    exit 1
fi
