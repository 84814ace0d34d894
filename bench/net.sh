#!/usr/bin/env bash
# Network benchmarks: libtpc's tpc-http and tpc-echo (examples/) against a raw epoll server in C
# (bench/peers/epoll), libuv (bench/peers/libuv/uv-server.c), Tokio (bench/peers/tokio-net),
# nginx and HAProxy (HTTP only), one server core each.
#   bash bench/net.sh            SECONDS=5 ROUNDS=3 by default; SECONDS=2 ROUNDS=1 for a smoke run
# 1. HTTP plaintext: each server on CPU 0, wrk on CPU 1 (-t1 -c64), requests one per write,
#    then pipelined 16 per write (bench/pipeline.lua). Requests/s, and the server's CPU time
#    (utime+stime from /proc/PID/stat, itself and its children) per request.
# 2. Echo ping-pong: bench/echo-load with 1 and 100 connections, 64-byte messages, against
#    tpc-echo, epoll-server echo, uv-server echo and tokio-server echo. Round trips/s, median and
#    p99 round trip, server CPU per round trip.
# Every round runs every server, in an order that rotates from round to round; the lines printed
# are medians over the rounds: "bench <id> <value> <unit> | <conditions>" (bench/bench.h's
# format), then summary tables with ratios against epoll and against tpc, and, with more than
# one round, the CPU per request of each of libtpc's servers over each peer's within each round
# (median and range), which the VM's speed phases disturb less.
# libtpc's servers: tpc is tpc-http/tpc-echo with the shipped defaults (no TPC_* variable);
# tpc-nb is tpc with wake-up batching off (TPC_COALESCE_US=-1: a wake-up per completion), the
# base of the adaptive batching's targets; tpc-tuned adds TPC_SPIN_NS=-1 (never spin before
# sleeping; NET_TPC_SPIN_NS to change; by default a shard spins only while messages pass between
# shards, which these one-shard servers never do); tpc-co is tpc-tuned with a fixed coalescing
# window instead of the adaptive batching (TPC_COALESCE_US, 50 µs unless
# NET_TPC_COALESCE_US says otherwise); tpc-ep is tpc-tuned on the epoll backend (TPC_BACKEND=epoll:
# what runs where io_uring cannot, against the raw epoll peer); tpc-nostall (not in the default lists) is tpc with the stall
# detector off (TPC_STALL_MS=-1), to measure the detector's cost. The HTTP lines also give the system part of the CPU per
# request and wrk's 99th percentile latency.
# Builds what is missing: libtpc and the C peers in build/release (BUILD=dir to change),
# tokio-server with bench/peers/tokio-net/build.sh, all with -j1 (JOBS=n to change). Installs wrk,
# and when selected nginx-light, haproxy and libuv1-dev (for uv-server), if missing, through
# scripts/setup.sh (apt-get).
# nginx and haproxy run in the foreground from a config generated in a temporary directory (one
# worker process; one thread). Environment: SECONDS, ROUNDS, BUILD, JOBS, PORT (first of the
# ports used, 18080), NET_SERVERS (default "tpc tpc-tuned tpc-co tpc-ep epoll tokio nginx libuv
# haproxy"), NET_ECHO_SERVERS ("tpc tpc-tuned tpc-co tpc-ep epoll tokio libuv"); set but empty, they
# select no server; tpc-nb and tpc-nostall run when named; NET_ECHO_CONNS (the echo runs'
# connection counts, "1 8 16 32 100"), TCP_FLOOR (1: perf samples the server during each HTTP
# run; _tcp rows give the part of its CPU in the kernel's TCP stack, and a table the best ratio
# that floor allows: bench/lib.sh). scripts/bench.sh, the one driver of every benchmark, calls this once per
# round with the servers in its rotated order; the helpers both use are in bench/lib.sh.
set -euo pipefail

bench_name=net.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

# SECONDS is bash's own clock of the shell's age: take the value from our initial environment.
dur=$(tr '\0' '\n' </proc/$$/environ | sed -n 's/^SECONDS=//p')
dur=${dur:-5}
rounds=${ROUNDS:-3}
build=$(abs_path "${BUILD:-$repo/build/release}")
port0=${PORT:-18080}
tpc_spin=${NET_TPC_SPIN_NS:--1}
tpc_coalesce=${NET_TPC_COALESCE_US:-50}
read -ra http_servers <<<"${NET_SERVERS-tpc tpc-tuned tpc-co tpc-ep epoll tokio nginx libuv haproxy}"
read -ra echo_servers <<<"${NET_ECHO_SERVERS-tpc tpc-tuned tpc-co tpc-ep epoll tokio libuv}"
# tpc-co needs the kernel's minimum wait (Linux 6.12): before that, leave it out.
if ! kernel_at_least 6 12; then
    for list in http_servers echo_servers; do
        declare -n l=$list
        for i in "${!l[@]}"; do
            if [ "${l[$i]}" = tpc-co ]; then
                unset 'l[i]'
                note "leaving out tpc-co: wake-up coalescing needs Linux 6.12 ($(uname -r) here)"
            fi
        done
        l=(${l[@]+"${l[@]}"})
        unset -n l
    done
fi
conns=64
depth=16
read -ra echo_conns <<<"${NET_ECHO_CONNS:-1 8 16 32 100}"
echo_bytes=64
need_count SECONDS "$dur"
need_count ROUNDS "$rounds"

# ---------------------------------------------------------------------------------------------
# Tools and builds

need_cpus_0_1 "server on 0, load generator on 1"
need_tool wrk wrk
floor_need
nginx_bin="" haproxy_bin="" want_libuv=false
for s in ${http_servers[@]+"${http_servers[@]}"}; do
    case $s in
    nginx)
        need_tool nginx nginx-light
        nginx_bin=$(tool_path nginx)
        ;;
    haproxy)
        need_tool haproxy haproxy
        haproxy_bin=$(tool_path haproxy)
        ;;
    esac
done
for s in ${http_servers[@]+"${http_servers[@]}"} ${echo_servers[@]+"${echo_servers[@]}"}; do
    if [ "$s" = libuv ]; then want_libuv=true; fi
done
if $want_libuv; then need_libuv; fi

configure "$build"
targets=(examples/tpc-http examples/tpc-echo bench/epoll-server bench/echo-load)
if $want_libuv; then
    grep -q '^build bench/uv-server:' "$build/build.ninja" \
        || die "$build has no uv-server target (was libuv1-dev missing when meson configured it?)"
    targets+=(bench/uv-server)
fi
note "building libtpc's servers and the C peers in $build (-j$jobs)"
ninja_build "$build" "${targets[@]}"
tpc_http=$build/examples/tpc-http
tpc_echo=$build/examples/tpc-echo
epoll_server=$build/bench/epoll-server
uv_server=$build/bench/uv-server
echo_load=$build/bench/echo-load
tokio_server=""
for s in "${http_servers[@]}" "${echo_servers[@]}"; do
    if [ "$s" = tokio ] && [ -z "$tokio_server" ]; then
        note "building tokio-server (bench/peers/tokio-net/build.sh)"
        tokio_server=$(JOBS=$jobs bash "$here/peers/tokio-net/build.sh" | tail -n1) \
            || die "the Tokio build failed"
        [ -x "$tokio_server" ] || die "the Tokio build did not produce tokio-server"
    fi
done

# ---------------------------------------------------------------------------------------------
# Servers

bench_tmp tpc-net
server_pid=""
bench_on_exit() { stop_server; }

children_of() { # the child processes of $1 (nginx's worker; haproxy -db has none)
    local f st rest
    if [ -e /proc/"$1"/task/"$1"/children ]; then
        cat /proc/"$1"/task/*/children 2>/dev/null || true
        return 0
    fi
    for f in /proc/[0-9]*/stat; do # no CONFIG_PROC_CHILDREN: look for parent PID $1
        st=$(cat "$f" 2>/dev/null) || continue
        rest=${st##*) }
        rest=${rest#* }
        [ "${rest%% *}" = "$1" ] && echo "${f//[!0-9]/}"
    done
    return 0
}

stop_server() {
    [ -n "$server_pid" ] || return 0
    local pid=$server_pid kids i
    server_pid=""
    kids=$(children_of "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "server $pid ignored SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for k in $kids; do # children that outlived their parent (only after a SIGKILL)
        kill -KILL "$k" 2>/dev/null || true
    done
}

nginx_conf() { # $1 port; writes the config and prints its directory
    local dir=$tmp/nginx
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/net.sh
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$1 backlog=4096;
        location / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
    }
}
EOF
    echo "$dir"
}

haproxy_conf() { # $1 port; writes the config and prints its directory
    local dir=$tmp/haproxy
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
# generated by bench/net.sh; run with -db (foreground, one process), SIGTERM stops it at once
global
    nbthread 1
    maxconn 4096
    pidfile $dir/haproxy.pid
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 300s
    timeout http-keep-alive 300s
frontend bench
    bind 127.0.0.1:$1
    backlog 4096
    maxconn 4096
    http-request return status 200 content-type text/plain string "Hello, World!"
EOF
    echo "$dir"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server NAME http|echo PORT: starts it on CPU 0 and waits until the port answers.
start_server() {
    local name=$1 kind=$2 port=$3 log=$tmp/$1-$2.log cmd=() dir i
    port_open "$port" && die "port $port is already in use (PORT=n picks other ports)"
    case $name-$kind in
    tpc-*) # tpc: the shipped defaults; tpc-tuned and tpc-co: the same programs, tuned
        cmd=(env)
        case $name in
        tpc-tuned) cmd+=(TPC_SPIN_NS="$tpc_spin") ;;
        tpc-co) cmd+=(TPC_SPIN_NS="$tpc_spin" TPC_COALESCE_US="$tpc_coalesce") ;;
        tpc-nostall) cmd+=(TPC_STALL_MS=-1) ;;
        tpc-nb) cmd+=(TPC_COALESCE_US=-1) ;;
        tpc-ep) cmd+=(TPC_SPIN_NS="$tpc_spin" TPC_BACKEND=epoll) ;;
        esac
        if [ "$kind" = http ]; then cmd+=("$tpc_http"); else cmd+=("$tpc_echo"); fi
        cmd+=(--shards 1 --listen "127.0.0.1:$port")
        ;;
    epoll-*) cmd=("$epoll_server" "$kind" "127.0.0.1:$port") ;;
    libuv-*) cmd=("$uv_server" "$kind" "127.0.0.1:$port") ;;
    tokio-*) cmd=("$tokio_server" "$kind" "127.0.0.1:$port") ;;
    nginx-http)
        dir=$(nginx_conf "$port")
        cmd=("$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log")
        log=$dir/error.log
        ;;
    haproxy-http)
        dir=$(haproxy_conf "$port")
        cmd=("$haproxy_bin" -db -f "$dir/haproxy.cfg")
        ;;
    *) die "no $kind server called '$name'" ;;
    esac
    # env and taskset exec what they run: $! is the server's own PID.
    taskset -c 0 "${cmd[@]}" >>"$log" 2>&1 &
    server_pid=$!
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            wait "$server_pid" 2>/dev/null || true
            server_pid=""
            echo "net.sh: error: $name ($kind) failed to start: ${cmd[*]}" >&2
            sed 's/^/    /' "$log" >&2 || true
            exit 1
        fi
        port_open "$port" && return 0
        sleep 0.05
    done
    echo "net.sh: error: $name ($kind) does not answer on port $port after 10 s" >&2
    sed 's/^/    /' "$log" >&2 || true
    exit 1
}

clk_tck=$(getconf CLK_TCK)
cpu_us() { # CPU time of the server and its children in µs: "user+system system"
    local total=0 sys=0 p stat f
    for p in "$server_pid" $(children_of "$server_pid"); do
        stat=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        read -ra f <<<"${stat##*) }" # fields from 3 (state) on: utime is 14, stime 15
        total=$((total + f[11] + f[12]))
        sys=$((sys + f[12]))
    done
    echo $((total * 1000000 / clk_tck)) $((sys * 1000000 / clk_tck))
}

# ---------------------------------------------------------------------------------------------
# Results: results[metric|server] holds one value per round.

declare -A results
declare -A notes
add() { results[$1|$2]="${results[$1|$2]:-} $3"; }
stats() { # "median min max" of the numbers on stdin, one a line; "- - -" if none
    sort -g | awk '{ a[NR] = $1 }
        END { if (!NR) { print "- - -"; exit }
              m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
              printf "%.2f %.2f %.2f\n", m, a[1], a[NR] }'
}
median() { # of the values in results[$1|$2]; empty if none
    local v=${results[$1|$2]:-}
    [ -n "$v" ] || return 0
    tr ' ' '\n' <<<"$v" | sed '/^$/d' | stats | cut -d' ' -f1
}

checked=""
check_http() { # once per server: the answers must be tpc-http's, byte for byte (nginx's and
    # haproxy's have headers of their own: a 200 with the body will do)
    local name=$1 port=$2 out
    case " $checked " in *" $name "*) return 0 ;; esac
    checked="$checked $name"
    if [ "$name" = nginx ] || [ "$name" = haproxy ]; then
        out=$(exec 3<>"/dev/tcp/127.0.0.1/$port" &&
            printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 && timeout 2 cat <&3) || true
        case $out in "HTTP/1.1 200 OK"*"Hello, World!") ;;
        *) notes[$name]="${notes[$name]:-}does not answer 200 'Hello, World!'; " ;; esac
        return 0
    fi
    command -v python3 >/dev/null || {
        note "python3 missing: not checking that $name answers as tpc-http"
        return 0
    }
    local only=()
    [ "$name" = tokio ] && only=(--gets) # it answers the benchmark's GETs only as tpc-http does
    if ! out=$(python3 "$here/http-check.py" "${only[@]}" "127.0.0.1:$port" 2>&1); then
        echo "$out" >&2
        notes[$name]="${notes[$name]:-}ANSWERS DIFFER FROM TPC-HTTP'S (see above); "
    fi
}

run_wrk() { # run_wrk NAME PORT plain|pipe
    local name=$1 port=$2 how=$3 args=() out before after rps reqs errs metric
    if [ "$how" = pipe ]; then
        args=(-s "$here/pipeline.lua" -- "$depth")
        metric=http_pipe$depth
    else
        metric=http
    fi
    # shellcheck disable=SC2046 # the pids are words
    floor_start 0 "$server_pid" $(children_of "$server_pid")
    read -r before before_sys < <(cpu_us)
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${dur}s" --latency "http://127.0.0.1:$port/" "${args[@]}" 2>&1) \
        || die "wrk failed against $name: $out"
    read -r after after_sys < <(cpu_us)
    floor_stop
    kill -0 "$server_pid" 2>/dev/null || die "$name exited during wrk: $out"
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
    reqs=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' <<<"$out")
    if [ -z "$rps" ] || [ -z "$reqs" ] || [ "$reqs" -le 0 ]; then
        die "no requests counted by wrk against $name: $out"
    fi
    errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ';' || true)
    [ -z "$errs" ] || notes[$name]="${notes[$name]:-}wrk ($how):$errs "
    add "$metric" "$name" "$rps"
    add "${metric}_cpu" "$name" "$(awk -v c=$((after - before)) -v n="$reqs" 'BEGIN { printf "%.3f", c / n }')"
    [ -z "$floor_share" ] || add "${metric}_tcp" "$name" "$(awk -v c=$((after - before)) -v n="$reqs" -v f="$floor_share" 'BEGIN { printf "%.3f", c * f / n }')"
    add "${metric}_sys" "$name" "$(awk -v c=$((after_sys - before_sys)) -v n="$reqs" 'BEGIN { printf "%.3f", c / n }')"
    # wrk's 99th percentile latency ("99%   2.05ms"), in microseconds; wrk cannot time
    # pipelined requests (it prints 0 for the upper percentiles), so plain ones only
    [ "$how" = pipe ] || add "${metric}_p99" "$name" "$(awk '$1 == "99%" { v = $2; m = 1
        if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1000000
        sub(/[a-z]+$/, "", v); printf "%.1f", v * m }' <<<"$out")"
    note "  $name $how: $rps req/s, $((after - before)) us CPU for $reqs requests"
}

run_echo() { # run_echo NAME PORT CONNS
    local name=$1 port=$2 c=$3 out before after total rate p50 p99
    read -r before _ < <(cpu_us)
    out=$(taskset -c 1 "$echo_load" "127.0.0.1:$port" "$c" "$dur" "$echo_bytes" 2>&1) \
        || die "echo-load failed against $name: $out"
    read -r after _ < <(cpu_us)
    kill -0 "$server_pid" 2>/dev/null || die "$name exited during echo-load: $out"
    rate=$(awk -v id="echo_rtt_$c" '$1 == "bench" && $2 == id { print $3 }' <<<"$out")
    p50=$(awk -v id="echo_rtt_${c}_p50" '$1 == "bench" && $2 == id { print $3 }' <<<"$out")
    p99=$(awk -v id="echo_rtt_${c}_p99" '$1 == "bench" && $2 == id { print $3 }' <<<"$out")
    total=$(sed -n 's/^echo-load: \([0-9]*\) round trips.*/\1/p' <<<"$out")
    if [ -z "$rate" ] || [ -z "$total" ] || [ "$total" -le 0 ]; then
        die "echo-load printed no result against $name: $out"
    fi
    add "echo_rtt_$c" "$name" "$rate"
    add "echo_rtt_${c}_p50" "$name" "$p50"
    add "echo_rtt_${c}_p99" "$name" "$p99"
    add "echo_rtt_${c}_cpu" "$name" "$(awk -v c=$((after - before)) -v n="$total" 'BEGIN { printf "%.3f", c / n }')"
    note "  $name echo x$c: $rate round trips/s, $((after - before)) us CPU for $total round trips"
}

port_of() { # a port per server and kind, so that no run meets the previous one's TIME_WAITs
    local i=0 s
    for s in tpc epoll tokio nginx libuv haproxy tpc-co tpc-tuned tpc-ep tpc-nb tpc-nostall; do
        [ "$s" = "$1" ] && break
        i=$((i + 1))
    done
    echo $((port0 + i + ${2:-0}))
}

# ---------------------------------------------------------------------------------------------
# Runs

note "$rounds round(s), ${dur} s per run; servers on CPU 0, load on CPU 1; tpc with the defaults"
for ((r = 0; r < rounds; r++)); do
    note "round $((r + 1)) of $rounds"
    for s in $(rotate "$r" "${http_servers[@]}"); do
        port=$(port_of "$s")
        start_server "$s" http "$port"
        check_http "$s" "$port"
        run_wrk "$s" "$port" plain
        run_wrk "$s" "$port" pipe
        stop_server
    done
    for s in $(rotate "$r" "${echo_servers[@]}"); do
        port=$(port_of "$s" 10)
        start_server "$s" echo "$port"
        for c in "${echo_conns[@]}"; do
            run_echo "$s" "$port" "$c"
        done
        stop_server
    done
done

# ---------------------------------------------------------------------------------------------
# Report

sysinfo="$(nproc --all) cpus, $(uname -r)"
rounds_text="median of $rounds round$([ "$rounds" = 1 ] || echo s)"
spin_text="--shards 1, TPC_SPIN_NS=$tpc_spin"
cpu_text="server CPU = utime+stime of its process and children (/proc/PID/stat, CLK_TCK $clk_tck)"
emit() { # emit ID METRIC SERVER UNIT CONDITIONS
    local v
    v=$(median "$2" "$3")
    if [ -n "$v" ]; then echo "bench $1 $v $4 | $5"; fi
}
spin_of() {
    case $1 in
    tpc) echo ", --shards 1, the shipped defaults (no TPC_* variable)" ;;
    tpc-tuned) echo ", $spin_text" ;;
    tpc-co) echo ", $spin_text, TPC_COALESCE_US=$tpc_coalesce" ;;
    tpc-nostall) echo ", --shards 1, the stall detector off (TPC_STALL_MS=-1)" ;;
    tpc-nb) echo ", --shards 1, wake-up batching off (TPC_COALESCE_US=-1)" ;;
    tpc-ep) echo ", $spin_text, the epoll backend (TPC_BACKEND=epoll)" ;;
    esac
}
for s in "${http_servers[@]}"; do
    base="server $s on cpu 0, wrk -t1 -c$conns -d${dur}s on cpu 1, $rounds_text$(spin_of "$s"), $sysinfo"
    emit "net_http_$s" http "$s" req/s "1 request per write, $base"
    emit "net_http_${s}_cpu" http_cpu "$s" us/req "1 request per write, $cpu_text, $base"
    emit "net_http_${s}_sys" http_sys "$s" us/req "1 request per write, the stime part only, $base"
    emit "net_http_${s}_tcp" http_tcp "$s" us/req "1 request per write, the kernel TCP stack's part (TCP_FLOOR=1, perf), $base"
    emit "net_http_pipe${depth}_${s}_tcp" "http_pipe${depth}_tcp" "$s" us/req \
        "$depth requests per write, the kernel TCP stack's part (TCP_FLOOR=1, perf), $base"
    emit "net_http_${s}_p99" http_p99 "$s" us "1 request per write, wrk's 99th percentile latency, $base"
    emit "net_http_pipe${depth}_$s" "http_pipe$depth" "$s" req/s "$depth requests per write, $base"
    emit "net_http_pipe${depth}_${s}_cpu" "http_pipe${depth}_cpu" "$s" us/req \
        "$depth requests per write, $cpu_text, $base"
    emit "net_http_pipe${depth}_${s}_sys" "http_pipe${depth}_sys" "$s" us/req \
        "$depth requests per write, the stime part only, $base"
done
for s in "${echo_servers[@]}"; do
    for c in "${echo_conns[@]}"; do
        base="echo-load $c conn(s), $echo_bytes-byte ping-pong, ${dur} s, server $s on cpu 0, load on cpu 1, $rounds_text$(spin_of "$s"), $sysinfo"
        emit "net_echo_rtt_${c}_$s" "echo_rtt_$c" "$s" ops/s "$base"
        emit "net_echo_rtt_${c}_${s}_p50" "echo_rtt_${c}_p50" "$s" ns "$base"
        emit "net_echo_rtt_${c}_${s}_p99" "echo_rtt_${c}_p99" "$s" ns "$base"
        emit "net_echo_rtt_${c}_${s}_cpu" "echo_rtt_${c}_cpu" "$s" us/rtt "$cpu_text, $base"
    done
done

ratio() { # ratio METRIC SERVER REFERENCE: value(server) / value(reference), or -
    local a b
    a=$(median "$1" "$2")
    b=$(median "$1" "$3")
    if [ -n "$a" ] && [ -n "$b" ] && awk -v b="$b" 'BEGIN { exit !(b > 0) }'; then
        awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }'
    else
        echo -
    fi
}
echo
echo "HTTP plaintext: wrk -t1 -c$conns -d${dur}s on cpu 1, server on cpu 0, $rounds_text"
echo "(ratios: server / epoll and server / tpc; for req/s higher is better, for cpu lower is)"
printf '%-8s %-9s %12s %8s %8s %11s %8s %8s %11s %8s\n' load server req/s vs-epoll vs-tpc cpu-us/req \
    vs-epoll vs-tpc sys-us/req p99-ms
for m in http "http_pipe$depth"; do
    label=plain
    [ "$m" = http ] || label="pipe$depth"
    for s in "${http_servers[@]}"; do
        p99=$(median "${m}_p99" "$s")
        printf '%-8s %-9s %12s %8s %8s %11s %8s %8s %11s %8s\n' "$label" "$s" "$(median "$m" "$s")" \
            "$(ratio "$m" "$s" epoll)" "$(ratio "$m" "$s" tpc)" "$(median "${m}_cpu" "$s")" \
            "$(ratio "${m}_cpu" "$s" epoll)" "$(ratio "${m}_cpu" "$s" tpc)" "$(median "${m}_sys" "$s")" \
            "$(awk -v v="$p99" 'BEGIN { if (v != "") printf "%.2f", v / 1000; else print "-" }')"
    done
done
echo
echo "Echo ping-pong: echo-load, $echo_bytes-byte messages, ${dur} s on cpu 1, server on cpu 0, $rounds_text"
printf '%-6s %-9s %12s %8s %8s %10s %10s %11s %8s %8s\n' conns server rtt/s vs-epoll vs-tpc \
    p50-us p99-us cpu-us/rtt vs-epoll vs-tpc
for c in "${echo_conns[@]}"; do
    m=echo_rtt_$c
    for s in "${echo_servers[@]}"; do
        p50=$(median "${m}_p50" "$s")
        p99=$(median "${m}_p99" "$s")
        printf '%-6s %-9s %12s %8s %8s %10s %10s %11s %8s %8s\n' "$c" "$s" "$(median "$m" "$s")" \
            "$(ratio "$m" "$s" epoll)" "$(ratio "$m" "$s" tpc)" \
            "$(awk -v v="$p50" 'BEGIN { printf "%.1f", v / 1000 }')" \
            "$(awk -v v="$p99" 'BEGIN { printf "%.1f", v / 1000 }')" \
            "$(median "${m}_cpu" "$s")" "$(ratio "${m}_cpu" "$s" epoll)" "$(ratio "${m}_cpu" "$s" tpc)"
    done
done
floor_table "HTTP plaintext" http_cpu http_tcp "${http_servers[@]}"
floor_table "HTTP pipelined $depth deep" "http_pipe${depth}_cpu" "http_pipe${depth}_tcp" "${http_servers[@]}"
paired() { # paired METRIC OURS PEER: "median min max" of the per-round ratios ours / peer
    awk -v a="${results[$1|$2]:-}" -v b="${results[$1|$3]:-}" 'BEGIN {
        na = split(a, x, " "); nb = split(b, y, " ")
        for (i = 1; i <= na && i <= nb; i++) if (y[i] > 0) print x[i] / y[i] }' | stats
}
if [ "$rounds" -gt 1 ]; then
    echo
    echo "CPU per request, ours / peer within each round (every round runs every server once, so"
    echo "a pair shares more of the VM's speed phase than the medians above do): median [range]"
    for m in http_cpu "http_pipe${depth}_cpu"; do
        label=plain
        [ "$m" = http_cpu ] || label="pipe$depth"
        for ours in tpc tpc-nb tpc-tuned tpc-co tpc-ep; do
            [[ " ${http_servers[*]} " == *" $ours "* ]] || continue
            line=""
            for s in "${http_servers[@]}"; do
                case $s in tpc*) continue ;; esac
                read -r med lo hi < <(paired "$m" "$ours" "$s")
                line+=$(printf ' %s %s [%s-%s]' "$s" "$med" "$lo" "$hi")
            done
            printf '%-8s %-9s%s\n' "$label" "$ours" "$line"
        done
    done
fi
echo
echo "Notes:"
echo "- tpc: libtpc's shipped defaults: adaptive wake-up batching (a shard batches its wake-ups"
echo "  only while many operations complete), a spin before sleeping only while shards exchange"
echo "  messages (never here). tpc-nb: the same with batching off (TPC_COALESCE_US=-1)."
echo "- tpc-tuned: TPC_SPIN_NS=$tpc_spin (-1: never spin before sleeping)."
echo "- tpc-co: tpc-tuned with a fixed coalescing window (TPC_COALESCE_US=$tpc_coalesce) instead of the"
echo "  adaptive one: it costs latency where few requests are in flight (the echo lines with 8-32"
echo "  connections). p99-ms: wrk's 99th percentile."
echo "- tpc-ep: tpc-tuned on the epoll backend (TPC_BACKEND=epoll), as where io_uring cannot run."
echo "- sys-us/req: the kernel's part of cpu-us/req (stime), mostly loopback TCP, which no server"
echo "  avoids; the rest is the server's own user time."
echo "- epoll-server: level-triggered epoll, one read per wakeup. uv-server: one libuv loop,"
echo "  uv_read_start into a per-connection buffer, uv_try_write (uv_write only when the socket is"
echo "  full). tokio-server: current_thread runtime, a task per connection, httparse. The first"
echo "  two answer byte for byte as tpc-http on every case of bench/http-check.py; tokio-server"
echo "  on the keep-alive GETs the benchmark sends (http-check.py --gets): it does not carry"
echo "  tpc-http's HEAD, HTTP/1.0, Connection: close, body and error answers."
echo "- nginx: its own response headers (Server: nginx/<version>, Date, Connection), so about 60"
echo "  bytes more per response; it answers pipelined requests one write each."
echo "- haproxy: nbthread 1, a mode http frontend that answers with http-request return (no"
echo "  backend): 78-byte responses (content-length and content-type only), 17 bytes fewer than"
echo "  tpc-http's; it answers pipelined requests one write each."
echo "- $cpu_text; resolution 1/$clk_tck s per run. On loopback the kernel work of delivering"
echo "  a packet is charged to the sender, so part of the peer's TCP receive path counts too."
for s in "${!notes[@]}"; do
    echo "WARNING: $s: ${notes[$s]}"
done
