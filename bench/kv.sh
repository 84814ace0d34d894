#!/usr/bin/env bash
# tpc-kv (examples/kv, shipped defaults) against redis-server with the unmodified
# redis-benchmark (Debian's redis-tools), as issue 17 asks; scripts/bench.sh runs it as the
# group "kv" (ids kv_*).
#   bash bench/kv.sh
# Conditions: each server alone on CPU 0 (taskset), redis-benchmark on CPU 1; -c 50; each test
# of redis-benchmark's default run on its own (-t NAME), on redis-server then at once on tpc-kv
# (both servers are up, each idle while the other is measured, so that each pair of figures
# comes from the same minute of a shared machine), first a short run that warms the server and
# sizes the measured one to about KV_SECONDS, then the measured run, with the
# server's CPU time (the sum of its threads' run time, /proc/PID/task/*/schedstat, in ns) read
# before and after it. Without persistence (redis-server --appendonly no --save ""), then with
# --appendonly yes and each appendfsync of KV_FSYNC on both (a fresh directory each). Then the
# memory per key: KV_MEM_KEYS keys "key:%012d" with 3-byte values loaded by redis-cli --pipe into
# a fresh server, its Rss (smaps_rollup) after minus before, over the keys.
# With KV_SHARDS=2 tpc-kv runs two shards on CPUs 0 and 1, redis-server and redis-benchmark are
# left free on both (the client then shares the CPUs with the server).
# Environment: KV_SECONDS (3; decimals allowed), KV_PIPELINE ("1 16"), KV_TESTS (the default
# run's 19 tests), KV_FSYNC ("always everysec"; "" for none), KV_FSYNC_TESTS ("set incr lpush
# mset"), KV_FSYNC_PIPELINE ("1 16"), KV_MEM_KEYS (1000000; 0 for none), KV_SERVERS ("redis
# tpc"), KV_SHARDS (1), BUILD (build/release), PORT (18470, and the ports after it), TCP_FLOOR
# (1: perf samples the server during each measured run; _tcp rows give the part of its CPU in the
# kernel's TCP stack, and a table the best ratio that floor allows: bench/lib.sh).
# Prints "bench ID VALUE UNIT | conditions" lines: per test kv_<test>_p<P>_<server> (req/s) and
# ..._cpu (server CPU us/req); per pipeline depth over all its tests kv_p<P>_<server> (requests
# over elapsed seconds) and kv_p<P>_<server>_cpu (server CPU over requests); the same prefixed
# kv_<fsync>_ with persistence; kv_mem_<server> (bytes per key). Then a table of ratios.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_name=kv.sh
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
build=${BUILD:-$repo/build/release}
kv=$build/examples/kv/tpc-kv
port=${PORT:-18470}
seconds=${KV_SECONDS:-3}
read -ra pipelines <<<"${KV_PIPELINE-1 16}"
read -ra fsyncs <<<"${KV_FSYNC-always everysec}"
read -ra fsync_tests <<<"${KV_FSYNC_TESTS-set incr lpush mset}"
read -ra fsync_pipelines <<<"${KV_FSYNC_PIPELINE-1 16}"
read -ra servers <<<"${KV_SERVERS-redis tpc}"
read -ra tests <<<"${KV_TESTS-ping_inline ping_mbulk set get incr lpush rpush lpop rpop sadd hset spop zadd zpopmin lrange_100 lrange_300 lrange_500 lrange_600 mset}"
mem_keys=${KV_MEM_KEYS-1000000}
shards=${KV_SHARDS:-1}
for tool in redis-server redis-benchmark redis-cli taskset awk; do
    command -v $tool >/dev/null || { echo "kv.sh: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
floor_need
[ -x "$kv" ] || { echo "kv.sh: build $kv first (ninja -C $build)" >&2; exit 1; }
awk -v s="$seconds" 'BEGIN { exit !(s + 0 > 0) }' || { echo "kv.sh: KV_SECONDS must be > 0" >&2; exit 1; }
case $shards in
1) server_cpus=0 client_cpus=1 where="server on CPU 0, client on CPU 1" ;;
2) server_cpus=0,1 client_cpus=0,1 where="2 shards on CPUs 0-1, client on the same CPUs" ;;
*) echo "kv.sh: KV_SHARDS must be 1 or 2" >&2; exit 1 ;;
esac

dir=$(mktemp -d)
tmp=$dir # lib.sh's floor_* write there
declare -A pids ports
n=0
for server in "${servers[@]}"; do
    ports[$server]=$((port + n))
    n=$((n + 1))
done
stop() { # server
    local p=${pids[$1]:-}
    [ -n "$p" ] || return 0
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    pids[$1]=
}
stop_all() {
    local s
    for s in "${servers[@]}"; do stop "$s"; done
}
trap 'stop_all; rm -rf "$dir"' EXIT

cpu_ns() { # the run time of every thread of $1, ns
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}
rss_kib() { awk '$1 == "Rss:" { print $2 }' /proc/"$1"/smaps_rollup; }

start() { # server fsync: starts it on its port, in a fresh directory
    local d=$dir/data-$1 p=${ports[$1]}
    rm -rf "$d" && mkdir -p "$d"
    local persist=(--appendonly no)
    [ -n "$2" ] && persist=(--appendonly yes --appendfsync "$2")
    if [ "$1" = redis ]; then
        taskset -c $server_cpus redis-server --port "$p" --bind 127.0.0.1 --save "" \
            --dir "$d" "${persist[@]}" >/dev/null 2>&1 &
    else
        TPC_CPUS=$server_cpus taskset -c $server_cpus "$kv" --port "$p" --shards "$shards" \
            --dir "$d" "${persist[@]}" >/dev/null 2>&1 &
    fi
    pids[$1]=$!
    for _ in $(seq 200); do
        redis-cli -p "$p" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "kv.sh: $1 did not start" >&2
    exit 1
}

weight() { # how much slower than a SET a test is, roughly: sizes the warm-up run
    case $1 in
    lrange_100) echo 4 ;; lrange_300) echo 10 ;; lrange_500) echo 16 ;; lrange_600) echo 20 ;;
    mset) echo 2 ;; *) echo 1 ;;
    esac
}

# bench SERVER TEST P -> "req/s requests elapsed_ms cpu_ns [tcp_share]" (the share: TCP_FLOOR=1)
bench() {
    local pid=${pids[$1]} port=${ports[$1]} t=$2 p=$3 n0 out r n c0 c1 s0 s1
    n0=$(((p == 1 ? 4000 : 40000) / $(weight "$t")))
    out=$(taskset -c $client_cpus redis-benchmark -p "$port" -c 50 -n "$n0" -P "$p" -t "$t" --csv -q 2>/dev/null | tail -1)
    r=$(awk -F'","' '{ gsub(/"/, "", $2); print $2 + 0 }' <<<"$out")
    n=$(awk -v r="$r" -v s="$seconds" -v n0="$n0" 'BEGIN { n = int(r * s); if (n < n0) n = n0; print n }')
    floor_start "$server_cpus" "$pid"
    c0=$(cpu_ns "$pid")
    s0=$(date +%s%N)
    out=$(taskset -c $client_cpus redis-benchmark -p "$port" -c 50 -n "$n" -P "$p" -t "$t" --csv -q 2>/dev/null | tail -1)
    s1=$(date +%s%N)
    c1=$(cpu_ns "$pid")
    floor_stop
    r=$(awk -F'","' '{ gsub(/"/, "", $2); print $2 + 0 }' <<<"$out")
    [ "${r%.*}" -gt 0 ] 2>/dev/null || { echo "kv.sh: redis-benchmark -t $t -P $p failed: $out" >&2; exit 1; }
    echo "$r $n $(((s1 - s0) / 1000000)) $((c1 - c0)) $floor_share"
}

declare -A rps cpu tcpc
# series PREFIX FSYNC P TESTS...: both servers up (each idle while the other is measured), each
# test on one then the other, the lines
series() {
    local prefix=$1 fs=$2 p=$3 server t r n ms c f us res cond
    declare -A totn totms totc tott
    shift 3
    cond="-c 50 -P $p${fs:+, appendonly appendfsync $fs}, $where"
    for server in "${servers[@]}"; do
        start "$server" "$fs"
        totn[$server]=0 totms[$server]=0 totc[$server]=0 tott[$server]=0
    done
    for t in "$@"; do
        for server in "${servers[@]}"; do
            res=$(bench "$server" "$t" "$p")
            read -r r n ms c f <<<"$res"
            us=$(awk -v c="$c" -v n="$n" 'BEGIN { printf "%.3f", c / 1000 / n }')
            rps[$prefix$t,$p,$server]=$r cpu[$prefix$t,$p,$server]=$us
            echo "bench ${prefix}${t}_p${p}_${server} $r req/s | $cond, -n $n"
            echo "bench ${prefix}${t}_p${p}_${server}_cpu $us us/req | $cond, -n $n"
            totn[$server]=$((totn[$server] + n)) totms[$server]=$((totms[$server] + ms))
            totc[$server]=$((totc[$server] + c))
            if [ -n "$f" ]; then
                tott[$server]=$(awk -v t="${tott[$server]}" -v c="$c" -v f="$f" 'BEGIN { printf "%.0f", t + c * f }')
                echo "bench ${prefix}${t}_p${p}_${server}_tcp $(awk -v c="$c" -v f="$f" -v n="$n" 'BEGIN { printf "%.3f", c * f / 1000 / n }') us/req | the kernel TCP stack's part of the CPU (TCP_FLOOR=1, perf), $cond, -n $n"
            fi
        done
    done
    stop_all
    for server in "${servers[@]}"; do
        echo "bench ${prefix}p${p}_${server} $(awk -v n="${totn[$server]}" -v ms="${totms[$server]}" 'BEGIN { printf "%.0f", n * 1000 / ms }') req/s | $cond, tests: $*"
        echo "bench ${prefix}p${p}_${server}_cpu $(awk -v n="${totn[$server]}" -v c="${totc[$server]}" 'BEGIN { printf "%.3f", c / 1000 / n }') us/req | $cond, tests: $*"
        cpu[${prefix}all,$p,$server]=$(awk -v n="${totn[$server]}" -v c="${totc[$server]}" 'BEGIN { printf "%.3f", c / 1000 / n }')
        [ "$tcp_floor" = 1 ] || continue
        tcpc[${prefix}all,$p,$server]=$(awk -v n="${totn[$server]}" -v c="${tott[$server]}" 'BEGIN { printf "%.3f", c / 1000 / n }')
        echo "bench ${prefix}p${p}_${server}_tcp ${tcpc[${prefix}all,$p,$server]} us/req | the kernel TCP stack's part of the CPU (TCP_FLOOR=1, perf), $cond, tests: $*"
    done
}

memory() { # server -> bytes per key
    start "$1" ""
    local before after pid=${pids[$1]} port=${ports[$1]}
    before=$(rss_kib "$pid")
    awk -v n="$mem_keys" 'BEGIN { for (i = 0; i < n; i++) printf "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$3\r\nxxx\r\n", i }' |
        taskset -c $client_cpus redis-cli -p "$port" --pipe >/dev/null
    [ "$(redis-cli -p "$port" dbsize)" = "$mem_keys" ] || { echo "kv.sh: $1 did not take $mem_keys keys" >&2; exit 1; }
    after=$(rss_kib "$pid")
    stop "$1"
    echo "bench kv_mem_$1 $(((after - before) * 1024 / mem_keys)) bytes | $mem_keys keys key:%012d with 3-byte values, Rss after minus before, $where"
}

for p in "${pipelines[@]}"; do
    series kv_ "" "$p" "${tests[@]}"
done
for fs in "${fsyncs[@]}"; do
    for p in "${fsync_pipelines[@]}"; do
        series "kv_${fs}_" "$fs" "$p" "${fsync_tests[@]}"
    done
done
if [ "$mem_keys" -gt 0 ]; then
    for server in "${servers[@]}"; do memory "$server"; done
fi

# The table: tpc-kv against redis-server where both ran.
[[ " ${servers[*]} " == *" redis "* && " ${servers[*]} " == *" tpc "* ]] || exit 0
echo
echo "tpc-kv / redis-server: req/s ratio, and requests per CPU-second ratio (redis CPU/req over tpc-kv's)"
printf '%-22s %4s %12s %12s %10s %10s %9s %9s\n' test P tpc_req/s redis_req/s tpc_us/req redis_us/req rps_ratio cpu_ratio
row() {
    awk -v t="$1" -v p="$2" -v a="${rps[$1,$2,tpc]}" -v b="${rps[$1,$2,redis]}" -v c="${cpu[$1,$2,tpc]}" \
        -v d="${cpu[$1,$2,redis]}" 'BEGIN { printf "%-22s %4s %12.0f %12.0f %10.3f %10.3f %9.2f %9.2f\n", t, p, a, b, c, d, a / b, (c > 0 ? d / c : 0) }'
}
for p in "${pipelines[@]}"; do
    for t in "${tests[@]}"; do row "kv_$t" "$p"; done
done
for fs in "${fsyncs[@]}"; do
    for p in "${fsync_pipelines[@]}"; do
        for t in "${fsync_tests[@]}"; do row "kv_${fs}_$t" "$p"; done
    done
done
floor_kv() { # floor_kv PREFIX P: lib.sh's floor table from this script's figures
    local -A results=()
    local s
    for s in tpc redis; do
        results[cpu|$s]=${cpu[$1all,$2,$s]:-} results[tcp|$s]=${tcpc[$1all,$2,$s]:-}
    done
    median() { echo "${results[$1|$2]}"; }
    floor_table "${1%_} -P $2, all its tests" cpu tcp tpc redis
}
for p in "${pipelines[@]}"; do floor_kv kv_ "$p"; done
for fs in "${fsyncs[@]}"; do
    for p in "${fsync_pipelines[@]}"; do floor_kv "kv_${fs}_" "$p"; done
done
