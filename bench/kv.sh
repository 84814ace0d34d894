#!/usr/bin/env bash
# tpc-kv (examples/kv, one shard, shipped defaults) against redis-server with the unmodified
# redis-benchmark (Debian's redis-tools), as issue 17 asks.
#   bash bench/kv.sh
# Conditions: each server alone on CPU 0 (taskset), redis-benchmark on CPU 1; -c 50; each test
# of redis-benchmark's default run separately (-t NAME), so that the server's CPU time
# (utime+stime from /proc/PID/stat) can be read before and after it. Both servers without
# persistence, or both with --appendonly yes and the same appendfsync (KV_FSYNC=always or
# everysec; a fresh directory each).
# Environment: KV_PIPELINE ("1 16"), KV_REQUESTS (100000), KV_FSYNC ("" none), KV_TESTS (the
# default run's tests), BUILD (build/release), PORT (18470).
# Prints "bench kv_<P>_<test>_<server> RPS req/s CPU us/req" lines, then per test the ratio of
# tpc-kv's requests per CPU-second to redis-server's.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$repo/build/release}
kv=$build/examples/kv/tpc-kv
port=${PORT:-18470}
requests=${KV_REQUESTS:-100000}
pipelines=(${KV_PIPELINE:-1 16})
fsync=${KV_FSYNC:-}
tests=(${KV_TESTS:-ping_inline ping_mbulk set get incr lpush rpush lpop rpop sadd hset spop zadd zpopmin lrange_100 lrange_300 lrange_500 lrange_600 mset})
for tool in redis-server redis-benchmark taskset; do
    command -v $tool >/dev/null || { echo "kv.sh: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -x "$kv" ] || { echo "kv.sh: build $kv first (ninja -C $build)" >&2; exit 1; }

dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
pid=

cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }

start() { # server name -> pid
    rm -rf "$dir/data" && mkdir -p "$dir/data"
    local persist=()
    if [ "$1" = redis ]; then
        [ -n "$fsync" ] && persist=(--appendonly yes --appendfsync "$fsync") || persist=(--appendonly no)
        taskset -c 0 redis-server --port $port --bind 127.0.0.1 --save "" --dir "$dir/data" \
            "${persist[@]}" >/dev/null 2>&1 &
    else
        [ -n "$fsync" ] && persist=(--appendonly yes --appendfsync "$fsync")
        TPC_CPUS=0 taskset -c 0 "$kv" --port $port --shards 1 --dir "$dir/data" "${persist[@]}" \
            >/dev/null 2>&1 &
    fi
    pid=$!
    for _ in $(seq 100); do
        redis-cli -p $port ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "kv.sh: $1 did not start" >&2
    exit 1
}

hz=$(getconf CLK_TCK)
declare -A rps cpu
for p in "${pipelines[@]}"; do
    for server in redis tpc; do
        start $server
        for t in "${tests[@]}"; do
            c0=$(cpu_ticks $pid)
            line=$(taskset -c 1 redis-benchmark -p $port -c 50 -n $requests -P $p -t $t --csv -q 2>/dev/null |
                   grep -v '^"test"' | tail -1)
            c1=$(cpu_ticks $pid)
            r=$(echo "$line" | awk -F'","' '{gsub(/"/, "", $2); print $2}')
            us=$(awk -v c=$((c1 - c0)) -v hz=$hz -v n=$requests 'BEGIN{printf "%.2f", c / hz * 1e6 / n}')
            rps[$p,$t,$server]=$r
            cpu[$p,$t,$server]=$us
            echo "bench kv_P${p}_${t}_${server} $r req/s $us us/req | -c 50 -n $requests -P $p${fsync:+ appendfsync $fsync}, server on CPU 0, client on CPU 1"
        done
        kill $pid
        wait $pid 2>/dev/null || true
        pid=
    done
done
echo
printf '%-12s %4s %14s %14s %12s %12s %10s %10s\n' test P tpc_req/s redis_req/s tpc_us/req redis_us/req rps_ratio cpu_ratio
for p in "${pipelines[@]}"; do
    for t in "${tests[@]}"; do
        awk -v t=$t -v p=$p -v a=${rps[$p,$t,tpc]} -v b=${rps[$p,$t,redis]} -v c=${cpu[$p,$t,tpc]} -v d=${cpu[$p,$t,redis]} \
            'BEGIN{printf "%-12s %4s %14.0f %14.0f %12.2f %12.2f %10.2f %10.2f\n", t, p, a, b, c, d, a / b, (c > 0 ? d / c : 0)}'
    done
done
