#!/usr/bin/env bash
# Reverse proxies side by side (issue 16): tpc-proxy (examples/proxy, the shipped defaults: no
# TPC_* variable, one shard) against HAProxy 2.6 and nginx 1.22, each configured as its users
# would for the job, in TCP mode and in HTTP mode.
#   bash bench/proxy.sh
# Conditions: the proxy alone on CPU 0; the backend (examples/http's tpc-http, one shard) and
# wrk (-t1 -c$CONNS, keep-alive, --latency) on CPU 1. Per round, per mode, every proxy once in
# an order rotated from round to round: requests per second, the proxy's CPU per request
# (utime+stime of it and its children from /proc/PID/stat), wrk's p50 and p99, then the user-space
# memory per idle proxied connection: $IDLE_N connections opened through the proxy, each carrying
# one request and answer and then left idle, the proxy's resident memory (Rss of
# /proc/PID/smaps_rollup, itself and its children) before and one second after, divided by
# $IDLE_N.
# Peers:
# - HAProxy: nbthread 1; mode tcp, or mode http with option http-keep-alive, http-reuse always
#   and option forwardfor; maxconn 9000.
# - nginx: worker_processes 1; stream { proxy_pass } (module ngx_stream, Debian's
#   libnginx-mod-stream), or http { proxy_pass } to an upstream with keepalive 64,
#   proxy_http_version 1.1, Connection "" and X-Forwarded-For; worker_connections 19000.
# - tpc-proxy: frontend mode tcp or http, one backend server, check none.
# Mode close: the HTTP configuration, and wrk sends Connection: close (a connection per request,
# as from clients that do not keep connections: each one accepted, proxied and closed).
# Environment: PROXY_SERVERS ("tpc haproxy nginx"), PROXY_MODES ("tcp http close"), PROXY_SECONDS
# (per wrk run, 5), ROUNDS (3), CONNS (64), IDLE_N (5000; 0: no memory measurement),
# PROXY_ROTATE (added to the round that rotates the order: scripts/bench.sh passes its round),
# BUILD (build/release), PORT (base port, 18300), JOBS, TCP_FLOOR (1: perf samples the proxy
# during each wrk run; _tcp rows give the part of its CPU in the kernel's TCP stack, and a table
# the best ratio that floor allows: bench/lib.sh).
# Prints "bench proxy_<mode>_<server>[_cpu|_p50|_p99|_idle_bytes] VALUE UNIT | conditions" lines
# (scripts/bench.sh's group "proxy" reads them), then a table with ratios to tpc.
set -euo pipefail

bench_name=proxy.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

servers=(${PROXY_SERVERS:-tpc haproxy nginx})
modes=(${PROXY_MODES:-tcp http close})
dur=${PROXY_SECONDS:-5}
rounds=${ROUNDS:-3}
conns=${CONNS:-64}
idle_n=${IDLE_N:-5000}
port0=${PORT:-18300}
build=$(abs_path "${BUILD:-$repo/build/release}")
for v in dur rounds conns; do need_count "$v" "${!v}"; done
case $idle_n in '' | *[!0-9]*) die "IDLE_N must be a whole number (got '$idle_n')" ;; esac
need_cpus_0_1 "the proxy on CPU 0, backend and load on CPU 1"
need_tool wrk wrk
need_tool python3 python3-minimal
floor_need
for s in "${servers[@]}"; do
    case $s in
    tpc) ;;
    haproxy) need_tool haproxy haproxy ;;
    nginx)
        need_tool nginx nginx-light
        [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || install_pkg libnginx-mod-stream
        ;;
    *) die "unknown proxy '$s' (tpc haproxy nginx)" ;;
    esac
done
for m in "${modes[@]}"; do
    case $m in tcp | http | close) ;; *) die "unknown mode '$m' (tcp http close)" ;; esac
done
[ -f "$build/build.ninja" ] || configure "$build" -Dbuildtype=release
ninja_build "$build" examples/tpc-http examples/proxy/tpc-proxy
tpc_http=$build/examples/tpc-http
tpc_proxy=$build/examples/proxy/tpc-proxy

bench_tmp tpc-proxy-bench
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
proxy_pid=""
bench_on_exit() {
    stop_proxy
    stop_all
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port PORT PID LOG
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$2" 2>/dev/null || { sed 's/^/    /' "$3" >&2; die "process $2 exited (log above)"; }
        port_open "$1" && return 0
        sleep 0.05
    done
    die "nothing answers on port $1 after 10 s"
}
children_of() { cat /proc/"$1"/task/*/children 2>/dev/null || true; }

backend=$((port0))
ulimit -n 20000 2>/dev/null || true
taskset -c 1 "$tpc_http" --shards 1 --listen "127.0.0.1:$backend" >"$tmp/backend.log" 2>&1 &
pids+=($!)
wait_port "$backend" "${pids[0]}" "$tmp/backend.log"

conf() { # conf SERVER MODE PORT: writes the proxy's configuration, prints its command line
    local s=$1 m=$2 p=$3 d=$tmp/$1-$2
    mkdir -p "$d"
    case $s in
    tpc)
        cat >"$d/proxy.ini" <<EOF
[frontend bench]
listen = 127.0.0.1:$p
mode = $m
maxconn = 9000
timeout_client_idle = 300s
timeout_server_idle = 300s
backend = app
[backend app]
server = app1 127.0.0.1:$backend
EOF
        echo "$tpc_proxy -c $d/proxy.ini"
        ;;
    haproxy)
        {
            echo "global"
            echo "    nbthread 1"
            echo "    maxconn 9000"
            echo "defaults"
            echo "    mode $m"
            echo "    timeout connect 5s"
            echo "    timeout client 300s"
            echo "    timeout server 300s"
            if [ "$m" = http ]; then
                echo "    option http-keep-alive"
                echo "    option forwardfor"
                echo "    http-reuse always"
                echo "    timeout http-keep-alive 300s"
            fi
            echo "frontend bench"
            echo "    bind 127.0.0.1:$p"
            echo "    maxconn 9000"
            echo "    default_backend app"
            echo "backend app"
            echo "    server app1 127.0.0.1:$backend"
        } >"$d/haproxy.cfg"
        echo "$(tool_path haproxy) -db -f $d/haproxy.cfg"
        ;;
    nginx)
        {
            [ "$m" = tcp ] && echo "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
            echo "daemon off; worker_processes 1; worker_rlimit_nofile 20000;"
            echo "pid $d/nginx.pid; error_log $d/error.log warn;"
            echo "events { worker_connections 19000; }"
            if [ "$m" = tcp ]; then
                echo "stream { upstream app { server 127.0.0.1:$backend; }"
                echo "  server { listen 127.0.0.1:$p backlog=4096; proxy_pass app; proxy_timeout 300s; } }"
            else
                echo "http { access_log off; keepalive_requests 1000000000; keepalive_timeout 300s;"
                echo "  upstream app { server 127.0.0.1:$backend; keepalive 64; }"
                echo "  server { listen 127.0.0.1:$p backlog=4096;"
                echo "    location / { proxy_pass http://app; proxy_http_version 1.1;"
                echo "      proxy_set_header Connection \"\";"
                echo "      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }"
            fi
        } >"$d/nginx.conf"
        echo "$(tool_path nginx) -p $d -c $d/nginx.conf -e $d/error.log"
        ;;
    esac
}

start_proxy() { # start_proxy SERVER MODE PORT
    local cmd log=$tmp/$1-$2.log
    cmd=$(conf "$1" "${2/close/http}" "$3")
    port_open "$3" && die "port $3 is already in use (PORT=n picks other ports)"
    # shellcheck disable=SC2086 # the command line is words
    taskset -c 0 $cmd >>"$log" 2>&1 &
    proxy_pid=$!
    wait_port "$3" "$proxy_pid" "$log"
}
stop_proxy() {
    [ -n "$proxy_pid" ] || return 0
    local p=$proxy_pid i
    proxy_pid=""
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

clk_tck=$(getconf CLK_TCK)
cpu_us() { # CPU time of the proxy and its children in µs
    local total=0 p stat f
    for p in "$proxy_pid" $(children_of "$proxy_pid"); do
        stat=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        read -ra f <<<"${stat##*) }"
        total=$((total + f[11] + f[12]))
    done
    echo $((total * 1000000 / clk_tck))
}
rss_kb() { # resident memory of the proxy and its children, KiB
    local total=0 p v
    for p in "$proxy_pid" $(children_of "$proxy_pid"); do
        v=$(awk '$1 == "Rss:" { print $2 }' /proc/"$p"/smaps_rollup 2>/dev/null) || continue
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

declare -A results
add() { results[$1|$2]="${results[$1|$2]:-} $3"; }
median() {
    local v=${results[$1|$2]:-}
    [ -n "$v" ] || return 0
    tr ' ' '\n' <<<"$v" | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 }
        END { if (NR) printf "%.3f\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
to_us() { # wrk's "2.05ms" as µs
    awk -v v="$1" 'BEGIN { m = 1; if (v ~ /ms$/) m = 1000; else if (v ~ /us$/) m = 1;
        else if (v ~ /s$/) m = 1000000; sub(/[a-z]+$/, "", v); printf "%.1f", v * m }'
}

run_wrk() { # run_wrk SERVER MODE PORT
    local s=$1 m=$2 p=$3 out before after rps reqs extra=()
    [ "$m" = close ] && extra=(-H "Connection: close")
    # shellcheck disable=SC2046 # the pids are words
    floor_start 0 "$proxy_pid" $(children_of "$proxy_pid")
    before=$(cpu_us)
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${dur}s" --latency "${extra[@]}" "http://127.0.0.1:$p/" 2>&1) ||
        die "wrk failed against $s ($m): $out"
    after=$(cpu_us)
    floor_stop
    kill -0 "$proxy_pid" 2>/dev/null || die "$s ($m) exited during wrk: $out"
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
    reqs=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' <<<"$out")
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "no requests counted against $s ($m): $out"
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        die "$s ($m): errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ')"
    fi
    add "${m}" "$s" "$rps"
    add "${m}_cpu" "$s" "$(awk -v c=$((after - before)) -v n="$reqs" 'BEGIN { printf "%.3f", c / n }')"
    [ -z "$floor_share" ] || add "${m}_tcp" "$s" "$(awk -v c=$((after - before)) -v n="$reqs" -v f="$floor_share" 'BEGIN { printf "%.3f", c * f / n }')"
    add "${m}_p50" "$s" "$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")"
    add "${m}_p99" "$s" "$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
    note "  $s $m: $rps req/s, $((after - before)) us CPU for $reqs requests"
}

run_idle() { # run_idle SERVER MODE PORT
    local s=$1 m=$2 p=$3 r0 r1 line
    [ "$idle_n" -gt 0 ] && [ "$m" != close ] || return 0 # (close: the http mode's figure)
    r0=$(rss_kb)
    coproc IDLE { taskset -c 1 python3 "$here/idle-conns.py" "$p" "$idle_n" 2>&1; }
    read -r line <&"${IDLE[0]}" || true
    case $line in "ready "*) ;; *) die "idle-conns against $s ($m): $line" ;; esac
    sleep 1 # idle, as such connections are: a proxy may settle them (tpc-proxy parks after 50 ms)
    r1=$(rss_kb)
    echo >&"${IDLE[1]}"
    wait "$IDLE_PID" 2>/dev/null || true
    add "${m}_idle" "$s" "$(awk -v a="$r0" -v b="$r1" -v n="$idle_n" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')"
    note "  $s $m: $idle_n idle connections: Rss $r0 -> $r1 KiB"
}

note "$rounds round(s) of ${dur} s per run; proxies on CPU 0, tpc-http backend and wrk on CPU 1"
for ((r = 0; r < rounds; r++)); do
    note "round $((r + 1)) of $rounds"
    i=0
    for m in "${modes[@]}"; do
        for s in $(rotate "$((r + ${PROXY_ROTATE:-0}))" "${servers[@]}"); do
            i=$((i + 1))
            p=$((port0 + 10 * r + i)) # a port per run: no run meets another's TIME_WAITs
            start_proxy "$s" "$m" "$p"
            run_wrk "$s" "$m" "$p"
            run_idle "$s" "$m" "$p"
            stop_proxy
        done
    done
done

sysinfo="$(nproc --all) cpus, $(uname -r)"
base="proxy on cpu 0, tpc-http backend and wrk -t1 -c$conns -d${dur}s on cpu 1, median of $rounds rounds, $sysinfo"
for m in "${modes[@]}"; do
    for s in "${servers[@]}"; do
        for k in "" _cpu _tcp _p50 _p99 _idle; do
            v=$(median "$m$k" "$s")
            [ -n "$v" ] || continue
            case $k in
            "") u=req/s c="keep-alive requests through the proxy"
                [ "$m" = close ] && c="requests through the proxy, a connection each" ;;
            _cpu) u=us/req c="the proxy's utime+stime per request" ;;
            _tcp) u=us/req c="the part of that CPU in the kernel's TCP stack (TCP_FLOOR=1, perf)" ;;
            _p50 | _p99) u=us c="wrk's ${k#_} latency" ;;
            _idle) u=bytes c="proxy Rss per idle proxied connection, $idle_n connections" ;;
            esac
            id="proxy_${m}_$s${k/_idle/_idle_bytes}"
            echo "bench $id $v $u | $m mode, $c, $base"
        done
    done
done
echo
echo "Reverse proxies: proxy on CPU 0; tpc-http and wrk -c$conns on CPU 1; median of $rounds"
printf '%-5s %-8s %10s %8s %10s %8s %9s %9s %12s %8s\n' mode proxy req/s vs-tpc cpu-us/req vs-tpc \
    p50-us p99-us idle-bytes vs-tpc
ratio() { # value(server) / value(tpc)
    local a b
    a=$(median "$1" "$2")
    b=$(median "$1" tpc)
    if [ -n "$a" ] && [ -n "$b" ]; then awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; else echo -; fi
}
for m in "${modes[@]}"; do
    for s in "${servers[@]}"; do
        printf '%-5s %-8s %10s %8s %10s %8s %9s %9s %12s %8s\n' "$m" "$s" "$(median "$m" "$s")" \
            "$(ratio "$m" "$s")" "$(median "${m}_cpu" "$s")" "$(ratio "${m}_cpu" "$s")" \
            "$(median "${m}_p50" "$s")" "$(median "${m}_p99" "$s")" "$(median "${m}_idle" "$s")" \
            "$(ratio "${m}_idle" "$s")"
    done
done
for m in "${modes[@]}"; do
    floor_table "$m mode" "${m}_cpu" "${m}_tcp" "${servers[@]}"
done
