#!/usr/bin/env bash
# One command for every benchmark against its peers (issue 7):
#   scripts/bench.sh              every workload, ROUNDS=5 (about 17 minutes on a 2-core VM)
#   scripts/bench.sh --quick      a subset with short runs, ROUNDS=3, no warm-up (under 2 minutes)
#   scripts/bench.sh ID...        only those workload ids (scripts/bench-report.py plan lists them)
# 1. Builds what is missing, with -j1 (JOBS=n): libtpc's release build in build/release (BUILD=dir)
#    with its C benchmarks and the libuv/epoll peers, bench-idle with LTO in build/release-lto
#    (BUILD_LTO=dir; below: why only it), and the Tokio peers (bench/peers/tokio*/build.sh, fat
#    LTO). Installs fio, wrk, nginx-light, libuv1-dev, gnuplot-nox and (for the HTTP workloads
#    with NET_PEERS naming it) haproxy if missing, through scripts/setup.sh (apt-get).
# 2. Runs each group of workloads for libtpc and for every peer that has an equivalent, one after
#    the other (libtpc, peer, libtpc, peer ...): a warm-up round that is thrown away, then ROUNDS
#    rounds, each process pinned with taskset (one-shard benchmarks on CPU 0; two-shard ones and
#    their peers on CPUs 0 and 1). bench-file alternates with fio itself (one call per workload
#    and round); bench/net.sh alternates the servers itself (one call per round, servers on CPU 0,
#    load on CPU 1).
# 3. Prints one table (median, min–max and the ratio to libtpc, > 1 = libtpc wins) and writes
#    bench/results/latest.json (a list of workload objects), latest-machine.json and latest.png.
#    The Tokio peers run every workload in several variants, one after the other in the same
#    process (current_thread, and multi_thread for the cross-thread ones; with and without the
#    I/O and time drivers): the best variant's median is Tokio's figure; the report names it.
# Environment: ROUNDS, WARMUP (warm-up rounds: 1, or 0 with --quick), NET_PEERS (bench/net.sh's
# peers: "epoll tokio nginx libuv haproxy", or "epoll" with --quick; the echo workloads leave
# out nginx and haproxy), JOBS, BUILD, BUILD_LTO, OUT (default bench/results), NET_SECONDS and FILE_SECONDS
# (seconds per measurement), CORE_N, TIMER_N, IDLE_N, XSHARD_N (iterations).
set -euo pipefail

die() {
    echo "bench.sh: error: $*" >&2
    exit 1
}
note() { echo "bench.sh: $*" >&2; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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
    xshard_n=${XSHARD_N:-2000000}
else
    rounds=${ROUNDS:-5} warmup=${WARMUP:-1} net_s=${NET_SECONDS:-3} file_s=${FILE_SECONDS:-3}
    net_peers=${NET_PEERS:-epoll tokio nginx libuv haproxy}
    core_n=${CORE_N:-2000000} timer_n=${TIMER_N:-1000000} idle_n=${IDLE_N:-1000000}
    xshard_n=${XSHARD_N:-10000000}
fi
for v in rounds net_s file_s core_n timer_n idle_n xshard_n; do
    case ${!v} in '' | *[!0-9]* | 0) die "$v must be a whole number > 0 (got '${!v}')" ;; esac
done
case $warmup in 0 | 1) ;; *) die "WARMUP must be 0 or 1 (got '$warmup')" ;; esac
jobs=${JOBS:-1}
build=${BUILD:-$repo/build/release}
out=${OUT:-$repo/bench/results}
case $build in /*) ;; *) build=$PWD/$build ;; esac
case $out in /*) ;; *) out=$PWD/$out ;; esac
command -v python3 >/dev/null || die "python3 is missing"
command -v taskset >/dev/null || die "taskset (util-linux) is missing"
[ "$(nproc --all)" -ge 2 ] && taskset -c 0,1 true 2>/dev/null || die "needs CPUs 0 and 1"

# The plan: "<group> <id>" per selected workload (exits 2 on an unknown id).
plan=$(python3 scripts/bench-report.py plan ${ids[@]+"${ids[@]}"}) || die "bad workload ids"
groups=$(awk '{ print $1 }' <<<"$plan" | awk '!seen[$0]++')
wants() { grep -qx "$1" <<<"$groups"; }
file_ids=$(awk '$1 == "file" { print $2 }' <<<"$plan")
net_http=false net_echo=false
grep -q '^net \(http\)' <<<"$plan" && net_http=true
grep -q '^net echo' <<<"$plan" && net_echo=true

# ---------------------------------------------------------------------------------------------
# Tools and builds

install_pkg() { # the project's installer: what libtpc needs, and this package
    bash "$repo/scripts/setup.sh" "$1" || die "could not install $1 (scripts/setup.sh)"
}
command -v fio >/dev/null || install_pkg fio
command -v wrk >/dev/null || install_pkg wrk
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || install_pkg nginx-light
command -v gnuplot >/dev/null || install_pkg gnuplot-nox
if $net_http && wants net && [[ " $net_peers " == *" haproxy "* ]]; then
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || install_pkg haproxy
fi
reconfigure=false
if ! pkg-config --exists libuv; then
    install_pkg libuv1-dev
    reconfigure=true
fi

configure() { # configure DIR [MESON OPTION...]: a release build of libtpc in DIR
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        note "configuring $dir (release $*)"
        mkdir -p "$(dirname "$dir")" # for the log beside it, in a fresh checkout
        meson setup "$dir" "$repo" -Dbuildtype=release "$@" >"$dir.setup.log" 2>&1 \
            || { cat "$dir.setup.log" >&2; die "meson setup failed"; }
    elif $reconfigure; then # libuv was not there when meson looked for it
        { meson configure "$dir" --clearcache && meson setup --reconfigure "$dir" "$repo"; } \
            >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log" >&2; die "meson reconfigure failed"; }
    fi
}
configure "$build"
note "building libtpc, its benchmarks and the C peers in $build (-j$jobs)"
ninja -C "$build" -j"$jobs" >"$build.bench-build.log" 2>&1 \
    || { tail -40 "$build.bench-build.log" >&2; die "ninja failed (log: $build.bench-build.log)"; }
b=$build/bench
for t in bench-core bench-timer bench-idle bench-xshard bench-file bench-uv-timer bench-uv-loop; do
    [ -x "$b/$t" ] || die "$b/$t was not built (libuv peers need libuv1-dev when meson configures)"
done
# LTO where it helps. Measured on the 2-core VM (alternating, 2-3 runs each): the idle loop
# 132 -> 90-95 ns; but yield 9.5 -> 10.6-11.0 ns, timer_churn 10.9 -> 12.9-14.2 ns, timer
# inserts +7 %, xshard_stream -10 %, chan_pingpong 28 -> 21 ns. Only bench-idle, whose whole
# workload gains, is built with LTO (BUILD_LTO, default build/release-lto).
lto_build=${BUILD_LTO:-$repo/build/release-lto}
case $lto_build in /*) ;; *) lto_build=$PWD/$lto_build ;; esac
if wants idle; then
    configure "$lto_build" -Db_lto=true
    note "building bench-idle with LTO in $lto_build (-j$jobs)"
    ninja -C "$lto_build" -j"$jobs" bench/bench-idle >"$lto_build.bench-build.log" 2>&1 \
        || { tail -40 "$lto_build.bench-build.log" >&2; die "ninja failed (log: $lto_build.bench-build.log)"; }
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

tmp=$(mktemp -d /tmp/tpc-bench.XXXXXX)
raw=$tmp/raw
: >"$raw"
child=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

rotate() { # rotate N items...: the items, starting at index N modulo their count, walking
    # backwards in odd rounds, so that no item always follows the same one
    local n=$1
    shift
    local items=("$@") i c=$#
    for ((i = 0; i < c; i++)); do
        if ((n % 2)); then echo "${items[((n - i) % c + c) % c]}"; else echo "${items[(i + n) % c]}"; fi
    done
}

echo_peers="" # net.sh's echo peers: NET_PEERS but the HTTP-only ones
for p in $net_peers; do
    case $p in nginx | haproxy) ;; *) echo_peers="$echo_peers $p" ;; esac
done

start=$(date +%s)
note "groups: $(echo $groups); $rounds rounds after $warmup warm-up round(s)"
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
            run "$r" idle libtpc taskset -c 0,1 "$lto_build/bench/bench-idle" "$idle_n"
            run "$r" idle libuv taskset -c 0 "$b/bench-uv-loop" "$idle_n" idle
            run "$r" idle tokio taskset -c 0 "$tokio_dir/bench-tokio-core" "$idle_n" idle
            ;;
        xshard)
            run "$r" xshard libtpc taskset -c 0,1 "$b/bench-xshard" "$xshard_n"
            run "$r" xshard tokio taskset -c 0,1 "$tokio_dir/bench-tokio-xshard" "$xshard_n"
            run "$r" xshard libuv taskset -c 0,1 "$b/bench-uv-loop" 1 rtt
            ;;
        file) # bench-file runs ours, then fio, once each per call
            for id in $file_ids; do
                case $id in
                file_randread_qd*_buffered | file_seqwrite) bid=$id ;;
                *) bid=${id}_direct ;;
                esac
                run "$r" file libtpc taskset -c 0 "$b/bench-file" "$fs" "$bid" 1
            done
            ;;
        net) # net.sh runs each server once per call, in the order given
            http_servers="" echo_servers=""
            $net_http && http_servers=$(rotate "$r" tpc $net_peers | tr '\n' ' ')
            $net_echo && echo_servers=$(rotate "$r" tpc $echo_peers | tr '\n' ' ')
            run "$r" net net env SECONDS="$ns" ROUNDS=1 BUILD="$build" JOBS="$jobs" \
                NET_SERVERS="$http_servers" NET_ECHO_SERVERS="$echo_servers" bash bench/net.sh
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
    "$(echo $groups)" "${ids[*]+${ids[*]}}" "$rounds" "$quick" "$net_s" "$file_s" "$core_n" \
    "$timer_n" "$idle_n" "$xshard_n" "$net_peers" "$warmup")
mkdir -p "$out"
cp "$raw" "$out/latest-raw.txt"
BENCH_META=$meta python3 scripts/bench-report.py report "$raw" "$out" \
    || die "the report failed (raw lines kept in $out/latest-raw.txt)"
gnuplot "$out/latest.gp" 2>"$tmp/gnuplot.log" || { cat "$tmp/gnuplot.log" >&2; die "gnuplot failed"; }
rm -f "$out/latest.gp" "$out/latest.dat"
note "wrote $out/latest.json, latest-machine.json, latest-raw.txt and latest.png"
