#!/usr/bin/env bash
# The one driver for every benchmark against its peers (issue 7, issue 15):
#   scripts/bench.sh              every workload, ROUNDS=5: about 25 minutes on the 2-core VM at
#                                 load average 2-4, builds done (bench/README.md: how measured),
#                                 and about 12 more for the kv group (2.5 minutes a round)
#   scripts/bench.sh --quick      a subset with short runs, ROUNDS=3, no warm-up (about 2 minutes
#                                 on an idle VM, 9 at load average 9)
#   scripts/bench.sh ID...        only those workload ids (scripts/bench-report.py plan lists them)
# Headline rows measure libtpc's shipped defaults: a plain release build (-Dbuildtype=release)
# and no TPC_* environment variable. A setting other than the defaults gets a row of its own
# whose id says which: "-tuned" (the servers with TPC_SPIN_NS=-1: no spinning before sleeping),
# "-nobatch" (the shipped defaults with wake-up batching off, TPC_COALESCE_US=-1),
# "-epoll" (the -tuned servers on the epoll backend, TPC_BACKEND=epoll) and "-lto" (bench-idle
# built with -Db_lto=true). Every peer runs in both.
# 1. Builds what is missing, with -j1 (JOBS=n): libtpc's release build in build/release (BUILD=dir)
#    with its C benchmarks and the libuv/epoll peers; for idle_loop-lto, bench-idle with LTO in
#    build/release-lto (BUILD_LTO=dir); and the Tokio peers (bench/peers/tokio*/build.sh, fat
#    LTO). Installs fio, wrk, nginx-light, libuv1-dev, gnuplot-nox and (for the HTTP workloads
#    with NET_PEERS naming it) haproxy if missing, through scripts/setup.sh (apt-get).
# 2. Runs each group of workloads for libtpc and for every peer that has an equivalent, one after
#    the other (libtpc, peer, libtpc, peer ...): a warm-up round that is thrown away, then ROUNDS
#    rounds, each process pinned with taskset (one-shard benchmarks on CPU 0; two-shard ones and
#    their peers on CPUs 0 and 1). bench-file alternates with fio itself (one call per workload
#    and round), bench-storage likewise (its shard on CPU 0 of 0-1: its io-wq workers may go to
#    CPU 1); bench/net.sh alternates the servers itself (one call per round, servers on CPU 0,
#    load on CPU 1, in an order rotated from round to round); bench/kv.sh runs redis-server, then
#    tpc-kv, per pipeline depth and appendfsync mode (about 2.5 minutes a round; the durable rows
#    with SET and MSET only).
# 3. Prints one table (median, min–max and the ratio to libtpc, > 1 = libtpc wins) and writes
#    bench/results/latest.json (a list of workload objects), latest-machine.json and latest.png.
#    The Tokio peers run every workload in several variants, one after the other in the same
#    process (current_thread, and multi_thread for the cross-thread ones; with and without the
#    I/O and time drivers): the best variant's median is Tokio's figure; the report names it.
# Environment: ROUNDS, WARMUP (warm-up rounds: 1, or 0 with --quick), NET_PEERS (bench/net.sh's
# peers: "epoll tokio nginx libuv haproxy", or "epoll" with --quick; the echo workloads leave
# out nginx and haproxy), JOBS, BUILD, BUILD_LTO, OUT (default bench/results), NET_SECONDS and
# FILE_SECONDS (seconds per measurement), CORE_N, TIMER_N, IDLE_N, XSHARD_N (iterations),
# PROXY_IDLE_N (idle connections for the proxies' memory per connection, bench/proxy.sh),
# IDLE_CONNS (idle keep-alive connections for idle_conn_bytes, bench/idle-conn.sh), KV_SECONDS
# (seconds per redis-benchmark test in bench/kv.sh: 1, 0.5 with --quick) and KV_MEM_KEYS (keys
# for kv_mem_bytes: 1000000, 100000 with --quick; measured in round 1 only: it does not vary).
# The kv group (tpc-kv against redis-server) has no warm-up round: bench/kv.sh warms each test.
# The helpers it shares with bench/net.sh are in bench/lib.sh.
set -euo pipefail

bench_name=bench.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
cd "$repo"

quick=false
ids=()
for a in "$@"; do
    case $a in
    --quick) quick=true ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option '$a' (--quick, or workload ids)" ;;
    *) ids+=("$a") ;;
    esac
done
if $quick; then
    [ ${#ids[@]} -gt 0 ] || ids=(yield spawn_join chan_pingpong idle_loop xshard_rtt wakeup
        http_plain_cpu http_plain_rps file_randread_qd32)
    rounds=${ROUNDS:-3} warmup=${WARMUP:-0} net_s=${NET_SECONDS:-1} file_s=${FILE_SECONDS:-1}
    net_peers=${NET_PEERS:-epoll}
    core_n=${CORE_N:-1000000} timer_n=${TIMER_N:-100000} idle_n=${IDLE_N:-500000}
    proxy_idle_n=${PROXY_IDLE_N:-1000} idle_conns=${IDLE_CONNS:-2000}
    xshard_n=${XSHARD_N:-2000000}
    kv_s=${KV_SECONDS:-0.5} kv_mem_keys=${KV_MEM_KEYS:-100000}
else
    rounds=${ROUNDS:-5} warmup=${WARMUP:-1} net_s=${NET_SECONDS:-3} file_s=${FILE_SECONDS:-3}
    net_peers=${NET_PEERS:-epoll tokio nginx libuv haproxy}
    core_n=${CORE_N:-2000000} timer_n=${TIMER_N:-1000000} idle_n=${IDLE_N:-1000000}
    proxy_idle_n=${PROXY_IDLE_N:-5000} idle_conns=${IDLE_CONNS:-10000}
    xshard_n=${XSHARD_N:-10000000}
    kv_s=${KV_SECONDS:-1} kv_mem_keys=${KV_MEM_KEYS:-1000000}
fi
for v in rounds net_s file_s core_n timer_n idle_n xshard_n; do
    need_count "$v" "${!v}"
done
case $warmup in 0 | 1) ;; *) die "WARMUP must be 0 or 1 (got '$warmup')" ;; esac
build=$(abs_path "${BUILD:-$repo/build/release}")
lto_build=$(abs_path "${BUILD_LTO:-$repo/build/release-lto}")
out=$(abs_path "${OUT:-$repo/bench/results}")
command -v python3 >/dev/null || die "python3 is missing"
need_cpus_0_1 "one-shard runs on CPU 0, two-shard runs on CPUs 0 and 1"

# The plan: "<group> <id>" per selected workload (exits 2 on an unknown id).
plan=$(python3 scripts/bench-report.py plan ${ids[@]+"${ids[@]}"}) || die "bad workload ids"
groups=$(awk '{ print $1 }' <<<"$plan" | awk '!seen[$0]++' | tr '\n' ' ')
wants() { [[ " $groups " == *" $1 "* ]]; }
idle_servers() { # tpc-http and the peers asked for that idle-conn.sh knows
    local s out=tpc
    for s in $net_peers; do case $s in tokio | nginx) out+=" $s" ;; esac; done
    echo "$out"
}
wants_id() { grep -qx "[a-z]* $1" <<<"$plan"; }
file_ids=$(awk '$1 == "file" { print $2 }' <<<"$plan")
storage_ids=$(awk '$1 == "storage" { print $2 }' <<<"$plan")
net_http=false net_echo=false net_tuned=false net_epoll=false net_nobatch=false
grep -q '^net http' <<<"$plan" && net_http=true
grep -q '^net echo' <<<"$plan" && net_echo=true
grep -q '^net .*-tuned$' <<<"$plan" && net_tuned=true
grep -q '^net .*-epoll$' <<<"$plan" && net_epoll=true
grep -q '^net .*-nobatch$' <<<"$plan" && net_nobatch=true

# ---------------------------------------------------------------------------------------------
# Tools and builds

need_tool fio fio
need_tool wrk wrk
need_tool nginx nginx-light
need_tool gnuplot gnuplot-nox
if $net_http && wants net && [[ " $net_peers " == *" haproxy "* ]]; then
    need_tool haproxy haproxy
fi
need_libuv
if wants kv; then
    need_tool redis-server redis-server
    need_tool redis-benchmark redis-tools
fi

configure "$build"
note "building libtpc, its benchmarks and the C peers in $build (-j$jobs)"
ninja_build "$build"
b=$build/bench
for t in bench-core bench-timer bench-idle bench-xshard bench-file bench-storage bench-uv-timer \
    bench-uv-loop; do
    [ -x "$b/$t" ] || die "$b/$t was not built (libuv peers need libuv1-dev when meson configures)"
done
# LTO is not the shipped build: it has a row of its own (idle_loop-lto). Measured on the 2-core
# VM (alternating, 2-3 runs each, docs/benchmarks.md): the idle loop 132 -> 90-95 ns, but yield
# 9.5 -> 10.6-11.0 ns and timer_churn 10.9 -> 12.9-14.2 ns.
if wants_id idle_loop-lto; then
    configure "$lto_build" -Db_lto=true
    note "building bench-idle with LTO in $lto_build (-j$jobs)"
    ninja_build "$lto_build" bench/bench-idle
fi
tokio_dir=""
if wants core || wants idle || wants xshard; then
    note "building the Tokio peers (bench/peers/tokio/build.sh)"
    xs=$(JOBS=$jobs bash bench/peers/tokio/build.sh | tail -n1) || die "the Tokio peer build failed"
    tokio_dir=$(dirname "$xs")
    [ -x "$tokio_dir/bench-tokio-core" ] || die "the Tokio build did not produce bench-tokio-core"
fi
if wants net && { $net_http || $net_echo; } && [[ " $net_peers " == *" tokio "* ]]; then
    note "building the Tokio network peer (bench/peers/tokio-net/build.sh)"
    JOBS=$jobs bash bench/peers/tokio-net/build.sh >/dev/null || die "the tokio-server build failed"
fi

# ---------------------------------------------------------------------------------------------
# Runs: every line goes to $raw as "<round> <group> <impl> bench ..."

bench_tmp tpc-bench
raw=$tmp/raw
: >"$raw"
child=""
bench_on_exit() { # stops a benchmark still running; after a failure, keeps what was measured
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    if [ "$1" -ne 0 ] && [ -s "$raw" ] && mkdir -p "$out" && cp "$raw" "$out/failed-raw.txt"; then
        note "the lines measured before the failure are in $out/failed-raw.txt"
    fi
}

# run ROUND GROUP IMPL CMD...: runs CMD in the background (so that a signal reaches it through
# the trap), keeps its bench lines, and fails with its output if it fails or prints none.
run() {
    local rnd=$1 group=$2 impl=$3 log=$tmp/out t0=$SECONDS
    shift 3
    "$@" >"$log" 2>&1 &
    child=$!
    if ! wait "$child"; then
        child=""
        sed 's/^/    /' "$log" | tail -30 >&2
        die "$impl ($group) failed: $*"
    fi
    child=""
    grep -q '^bench ' "$log" || { sed 's/^/    /' "$log" | tail -30 >&2; die "$impl ($group) printed no result: $*"; }
    grep '^bench ' "$log" | sed "s/^/$rnd $group $impl /" >>"$raw"
    note "  $group $impl: $((SECONDS - t0)) s"
}

read -ra http_peers <<<"$net_peers"
echo_peers=() # net.sh's echo peers: NET_PEERS but the HTTP-only ones
for p in "${http_peers[@]}"; do
    case $p in nginx | haproxy) ;; *) echo_peers+=("$p") ;; esac
done
ours=(tpc)
$net_tuned && ours+=(tpc-tuned)
$net_epoll && ours+=(tpc-ep)
$net_nobatch && ours+=(tpc-nb)

start=$(date +%s)
note "groups: ${groups% }; $rounds rounds after $warmup warm-up round(s)"
for ((r = 1 - warmup; r <= rounds; r++)); do
    what="round $r of $rounds"
    [ "$r" -gt 0 ] || what="warm-up round (thrown away)"
    note "$what ($(($(date +%s) - start)) s so far)"
    fs=$file_s ns=$net_s
    [ "$r" -gt 0 ] || fs=1 ns=1 # the warm-up of the long ones is short
    for g in $groups; do
        case $g in
        core)
            run "$r" core libtpc taskset -c 0 "$b/bench-core" "$core_n"
            run "$r" core tokio taskset -c 0 "$tokio_dir/bench-tokio-core" "$core_n" core
            ;;
        timer)
            run "$r" timer libtpc taskset -c 0 "$b/bench-timer" "$timer_n"
            run "$r" timer libuv taskset -c 0 "$b/bench-uv-timer" "$timer_n"
            ;;
        idle)
            if wants_id idle_loop || wants_id idle_loop_32shards; then
                run "$r" idle libtpc taskset -c 0,1 "$b/bench-idle" "$idle_n"
            fi
            if wants_id idle_loop-lto; then
                run "$r" idle libtpc-lto taskset -c 0,1 "$lto_build/bench/bench-idle" "$idle_n"
            fi
            run "$r" idle libuv taskset -c 0 "$b/bench-uv-loop" "$idle_n" idle
            run "$r" idle tokio taskset -c 0 "$tokio_dir/bench-tokio-core" "$idle_n" idle
            ;;
        xshard)
            run "$r" xshard libtpc taskset -c 0,1 "$b/bench-xshard" "$xshard_n"
            run "$r" xshard tokio taskset -c 0,1 "$tokio_dir/bench-tokio-xshard" "$xshard_n"
            run "$r" xshard libuv taskset -c 0,1 "$b/bench-uv-loop" 1 rtt
            ;;
        file) # bench-file runs ours and fio once each per call (file_seqwrite: fio first in odd rounds)
            for id in $file_ids; do
                case $id in
                file_randread_qd*_buffered | file_seqwrite) bid=$id ;;
                file_randread_qd*_fixed) bid=${id%_fixed}_direct_fixed ;;
                *) bid=${id}_direct ;;
                esac
                run "$r" file libtpc env BENCH_ROUND="$r" taskset -c 0 "$b/bench-file" "$fs" "$bid" 1
            done
            ;;
        storage) # bench-storage: the shard on CPU 0, its io-wq workers free to use CPU 1
            for id in $storage_ids; do
                run "$r" storage libtpc taskset -c 0,1 "$b/bench-storage" "$fs" "$id" 1
            done
            ;;
        net) # net.sh runs each server once per call, in the order given
            http_servers="" echo_servers=""
            if $net_http; then
                http_servers=$(rotate "$r" "${ours[@]}" "${http_peers[@]}" | tr '\n' ' ')
            fi
            if $net_echo; then
                echo_servers=$(rotate "$r" "${ours[@]}" ${echo_peers[@]+"${echo_peers[@]}"} | tr '\n' ' ')
            fi
            run "$r" net net env SECONDS="$ns" ROUNDS=1 BUILD="$build" JOBS="$jobs" \
                NET_SERVERS="$http_servers" NET_ECHO_SERVERS="$echo_servers" bash bench/net.sh
            ;;
        idleconn) # idle-conn.sh: tpc-http, and the peers among tokio and nginx
            run "$r" idleconn idleconn env ROUNDS=1 BUILD="$build" JOBS="$jobs" \
                IDLE_CONNS="$idle_conns" IDLE_SERVERS="$(idle_servers)" bash bench/idle-conn.sh
            ;;
        proxy) # proxy.sh runs every proxy once per mode per call, in an order rotated by round
            run "$r" proxy proxy env PROXY_SECONDS="$ns" ROUNDS=1 PROXY_ROTATE="$r" \
                BUILD="$build" JOBS="$jobs" IDLE_N="$proxy_idle_n" bash bench/proxy.sh
            ;;
        kv) # kv.sh: redis-server and tpc-kv, one after the other per depth and fsync mode
            [ "$r" -gt 0 ] || continue
            kv_fsync=""
            for f in always everysec; do
                grep -q "^kv kv_${f}_" <<<"$plan" && kv_fsync+="$f "
            done
            kv_mem=0
            [ "$r" -eq 1 ] && wants_id kv_mem_bytes && kv_mem=$kv_mem_keys
            run "$r" kv kv env KV_SECONDS="$kv_s" KV_FSYNC="$kv_fsync" KV_FSYNC_TESTS="set mset" \
                KV_MEM_KEYS="$kv_mem" \
                BUILD="$build" bash bench/kv.sh
            ;;
        esac
    done
done
note "measured in $(($(date +%s) - start)) s"

# ---------------------------------------------------------------------------------------------
# Report

meta=$(python3 -c 'import json, sys
a = sys.argv
print(json.dumps({"groups": a[1].split(), "ids": a[2].split(), "rounds": int(a[3]),
                  "absent": sorted({"epoll", "tokio", "nginx", "libuv", "haproxy"}
                                   - set(a[11].split())),
                  "warmup_rounds": int(a[12]),
                  "quick": a[4] == "true", "durations": {"net_seconds": int(a[5]),
                  "file_seconds": int(a[6]), "core_n": int(a[7]), "timer_n": int(a[8]),
                  "idle_n": int(a[9]), "xshard_n": int(a[10])}}))' \
    "$groups" "${ids[*]+${ids[*]}}" "$rounds" "$quick" "$net_s" "$file_s" "$core_n" \
    "$timer_n" "$idle_n" "$xshard_n" "$net_peers" "$warmup")
mkdir -p "$out"
cp "$raw" "$out/latest-raw.txt"
BENCH_META=$meta python3 scripts/bench-report.py report "$raw" "$out" \
    || die "the report failed (raw lines kept in $out/latest-raw.txt)"
gnuplot "$out/latest.gp" 2>"$tmp/gnuplot.log" || { cat "$tmp/gnuplot.log" >&2; die "gnuplot failed"; }
rm -f "$out/latest.gp" "$out/latest.dat"
note "wrote $out/latest.json, latest-machine.json, latest-raw.txt and latest.png"
