#!/usr/bin/env bash
# User-space memory per idle keep-alive HTTP connection: tpc-http (examples/http, the shipped
# defaults), Tokio's HTTP responder (bench/peers/tokio-net) and nginx (one worker, enough
# worker_connections), each alone on CPU 0. bench/idle-conns.py (on CPU 1) opens N connections,
# each sends one GET and reads its answer, then stays open and silent; the server's resident
# memory (Rss of /proc/PID/smaps_rollup, itself and its children) is read before the
# connections and two seconds after the last went idle (tpc-http parks a connection idle for
# 50 ms), and the difference divided by N is the figure. Kernel socket memory is not in it.
#   IDLE_CONNS=N (10000), ROUNDS=R (1), IDLE_SERVERS="tpc tokio nginx", BUILD, JOBS, PORT (18600)
# Prints "bench idle_conn_bytes_<server> VALUE bytes | ..." lines, for
# scripts/bench.sh, then a table of medians and ratios to tpc.
set -euo pipefail
bench_name=idle-conn.sh
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
cd "$repo"

n=${IDLE_CONNS:-10000}
rounds=${ROUNDS:-1}
port=${PORT:-18600}
read -ra servers <<<"${IDLE_SERVERS-tpc tokio nginx}"
build=$(abs_path "${BUILD:-$repo/build/release}")
need_count IDLE_CONNS "$n"
need_count ROUNDS "$rounds"
need_cpus_0_1 "the server on CPU 0, the clients on CPU 1"
need_tool python3 python3-minimal
[ -f "$build/build.ninja" ] || configure "$build" -Dbuildtype=release
ninja_build "$build" examples/tpc-http
tokio_server=""
for s in "${servers[@]}"; do
    case $s in
    tpc) ;;
    tokio)
        note "building tokio-server (bench/peers/tokio-net/build.sh)"
        tokio_server=$(JOBS=$jobs bash "$here/peers/tokio-net/build.sh" | tail -n1) \
            || die "the Tokio build failed"
        ;;
    nginx) need_tool nginx nginx-light ;;
    *) die "unknown server '$s' (tpc tokio nginx)" ;;
    esac
done
ulimit -n 20000 2>/dev/null || die "needs 20000 descriptors (ulimit -n)"

bench_tmp tpc-idle
pid=""
bench_on_exit() { stop; }
stop() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
rss_kib() { # Rss of $1 and its children, KiB
    local total=0 p v
    for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        v=$(awk '$1 == "Rss:" { print $2 }' /proc/"$p"/smaps_rollup 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
start() { # start SERVER
    local cmd
    case $1 in
    tpc) cmd=("$build/examples/tpc-http" --shards 1 --listen "127.0.0.1:$port") ;;
    tokio) cmd=("$tokio_server" http "127.0.0.1:$port") ;;
    nginx)
        mkdir -p "$tmp/nginx"
        cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off; worker_processes 1; worker_rlimit_nofile 20000;
pid $tmp/nginx/nginx.pid; error_log $tmp/nginx/error.log warn;
events { worker_connections 19000; }
http { access_log off; keepalive_requests 1000000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$port backlog=4096;
    location / { default_type text/plain; return 200 "Hello, World!"; } } }
EOF
        cmd=("$(tool_path nginx)" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log")
        ;;
    esac
    taskset -c 0 "${cmd[@]}" >"$tmp/$1.log" 2>&1 &
    pid=$!
    local i
    for ((i = 0; i < 200; i++)); do
        port_open "$port" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    cat "$tmp/$1.log" >&2
    die "$1 does not answer on port $port"
}

declare -A got
for ((r = 0; r < rounds; r++)); do
    for s in $(rotate "$r" "${servers[@]}"); do
        start "$s"
        python3 "$here/idle-conns.py" "$port" 64 </dev/null >/dev/null # warm: a first batch
        sleep 1
        r0=$(rss_kib "$pid")
        exec {fd}> >(exec taskset -c 1 python3 "$here/idle-conns.py" "$port" "$n" >"$tmp/ready")
        for ((i = 0; i < 1200; i++)); do
            grep -q ready "$tmp/ready" 2>/dev/null && break
            sleep 0.05
        done
        grep -q ready "$tmp/ready" || die "$s: the $n connections did not all get an answer"
        sleep 2
        r1=$(rss_kib "$pid")
        exec {fd}>&- # the clients close their connections
        rm -f "$tmp/ready"
        v=$(((r1 - r0) * 1024 / n))
        got[$s]="${got[$s]:-} $v"
        note "$s: $n idle connections: Rss $r0 -> $r1 KiB: $v bytes each"
        echo "bench idle_conn_bytes_$s $v bytes | $n idle keep-alive HTTP connections" \
            "(one request each), Rss before and 2 s after, the server alone on cpu 0"
        stop
        sleep 0.5
    done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "Memory per idle keep-alive connection ($n connections, median of $rounds):"
base=$(median "${got[tpc]:-}")
for s in "${servers[@]}"; do
    m=$(median "${got[$s]}")
    printf '  %-6s %8s bytes  %s\n' "$s" "$m" \
        "$( [ -n "$base" ] && [ "$base" -gt 0 ] && awk -v a="$m" -v b="$base" 'BEGIN { printf "%.2fx tpc", a / b }')"
done
