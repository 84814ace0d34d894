# Helpers shared by the benchmark driver scripts/bench.sh and bench/net.sh (sourced, never run).
# The sourcing script sets, before it sources this file:
#   bench_name   the prefix of its messages ("bench.sh", "net.sh")
#   repo         the repository's root
# and may define bench_on_exit, which runs with the exit status (before the temporary directory
# goes) when the script exits for any reason. JOBS (ninja's -j, 1 by default) is read here.
# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # jobs, tmp, bench_reconfigure are for the sourcing script;
# bench_name and repo come from it

jobs=${JOBS:-1}
bench_reconfigure=false # set when a package meson looks for (libuv) was installed just now

die() {
    echo "$bench_name: error: $*" >&2
    exit 1
}
note() { echo "$bench_name: $*" >&2; }

abs_path() { # abs_path PATH: PATH made absolute against the current directory
    case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac
}

need_count() { # need_count NAME VALUE: VALUE must be a whole number > 0
    case $2 in '' | *[!0-9]* | 0) die "$1 must be a whole number > 0 (got '$2')" ;; esac
}

need_cpus_0_1() { # every benchmark pins to CPU 0, or to CPUs 0 and 1
    command -v taskset >/dev/null || die "taskset (util-linux) is missing"
    if [ "$(nproc --all)" -lt 2 ] || ! taskset -c 0,1 true 2>/dev/null; then
        die "needs CPUs 0 and 1${1:+ ($1)}"
    fi
}

kernel_at_least() { # kernel_at_least MAJOR MINOR: true on Linux MAJOR.MINOR or later
    local maj min
    IFS=. read -r maj min _ <<<"$(uname -r)"
    min=${min%%[!0-9]*}
    [ "${maj:-0}" -gt "$1" ] || { [ "${maj:-0}" -eq "$1" ] && [ "${min:-0}" -ge "$2" ]; }
}

# ---------------------------------------------------------------------------------------------
# Tools and builds

install_pkg() { # install_pkg PACKAGE: through the project's installer (apt-get, as root)
    bash "$repo/scripts/setup.sh" "$1" || die "could not install $1 (scripts/setup.sh)"
}

need_tool() { # need_tool COMMAND PACKAGE: installs PACKAGE if COMMAND is missing
    command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || install_pkg "$2"
}

tool_path() { # tool_path COMMAND: its path (nginx and haproxy live in /usr/sbin)
    command -v "$1" || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || die "$1 is missing"
}

need_libuv() { # the libuv peers are built only when meson finds libuv
    if ! pkg-config --exists libuv; then
        install_pkg libuv1-dev
        bench_reconfigure=true
    fi
}

configure() { # configure DIR [MESON OPTION...]: a release build of libtpc in DIR, log beside it
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        note "configuring $dir (release${*:+ $*})"
        mkdir -p "$(dirname "$dir")"
        meson setup "$dir" "$repo" -Dbuildtype=release "$@" >"$dir.setup.log" 2>&1 \
            || { cat "$dir.setup.log" >&2; die "meson setup failed"; }
    elif $bench_reconfigure; then # libuv was not there when meson looked for it
        { meson configure "$dir" --clearcache && meson setup --reconfigure "$dir" "$repo"; } \
            >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log" >&2; die "meson reconfigure failed"; }
    fi
}

ninja_build() { # ninja_build DIR [TARGET...]: ninja -j$jobs, quiet; the log's tail if it fails
    local dir=$1
    shift
    ninja -C "$dir" -j"$jobs" "$@" >"$dir.bench-build.log" 2>&1 \
        || { tail -40 "$dir.bench-build.log" >&2; die "ninja failed (log: $dir.bench-build.log)"; }
}

# ---------------------------------------------------------------------------------------------
# Runs

rotate() { # rotate N ITEM...: the items, starting at index N modulo their count, walking
    # backwards in odd rounds, so that no item always runs first or follows the same one
    local n=$1
    shift
    local items=("$@") i c=$#
    for ((i = 0; i < c; i++)); do
        if ((n % 2)); then echo "${items[((n - i) % c + c) % c]}"; else echo "${items[(i + n) % c]}"; fi
    done
}

bench_tmp() { # bench_tmp PREFIX: a temporary directory in $tmp, removed when the script exits
    tmp=$(mktemp -d "/tmp/$1.XXXXXX")
    trap bench_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_exit() {
    local rc=$?
    trap - EXIT INT TERM
    [ -z "${floor_pid:-}" ] || kill -INT "$floor_pid" 2>/dev/null || true
    if declare -F bench_on_exit >/dev/null; then bench_on_exit "$rc"; fi
    rm -rf "$tmp"
    exit $rc
}

# ---------------------------------------------------------------------------------------------
# TCP_FLOOR=1: the share of each measured server's CPU spent in the kernel's TCP stack, sampled
# by perf during the run (bench/tcp-share.py says what counts). A run's CPU per request times that
# share is the part no user-space design removes; the scripts print it as a _tcp row and a
# table of the best ratio the lowest such floor leaves against each peer. Off by default: perf
# costs the sampled server a few per cent of CPU.

tcp_floor=${TCP_FLOOR:-0}
floor_pid="" floor_pids=""

floor_need() { # installs perf (linux-perf) when TCP_FLOOR=1
    [ "$tcp_floor" = 1 ] || return 0
    need_tool perf linux-perf
    need_tool python3 python3-minimal
}

floor_start() { # floor_start CPUS PID...: perf samples CPUS (call chains) in the background;
    # floor_stop keeps the samples of those processes. A system-wide record of the server's CPUs
    # rather than perf -p: per-task events cost each context switch of the task, which would
    # charge a server that sleeps and wakes often more than one that does not.
    [ "$tcp_floor" = 1 ] || return 0
    local cpus=$1
    shift
    floor_pids=$(echo "$@" | tr -s ' ' ',')
    perf record -q -g -F 250 -C "$cpus" -o "$tmp/floor.data" >"$tmp/floor.log" 2>&1 &
    floor_pid=$!
}

floor_stop() { # sets floor_share to the share (0 to 1) of the recorded samples that were TCP
    # work (not in $(...): perf must be waited for by the shell that started it)
    floor_share=""
    [ "$tcp_floor" = 1 ] && [ -n "$floor_pid" ] || return 0
    kill -INT "$floor_pid" 2>/dev/null || true
    wait "$floor_pid" 2>/dev/null || true
    floor_pid=""
    floor_share=$(perf script -i "$tmp/floor.data" --pid="$floor_pids" 2>/dev/null |
        python3 "$repo/bench/tcp-share.py" | cut -d' ' -f1) \
        || die "perf recorded nothing of $floor_pids ($(tr '\n' ' ' <"$tmp/floor.log"))"
}

floor_table() { # floor_table TITLE CPU_METRIC TCP_METRIC SERVER...: uses the script's median
    [ "$tcp_floor" = 1 ] || return 0
    local title=$1 cpu=$2 tcpm=$3 s c t low="" ours
    shift 3
    ours=$(median "$cpu" "$1")
    for s in "$@"; do
        t=$(median "$tcpm" "$s")
        [ -n "$t" ] || continue
        if [ -z "$low" ] || awk -v a="$t" -v b="$low" 'BEGIN { exit !(a < b) }'; then low=$t; fi
    done
    [ -n "$low" ] || return 0
    echo
    echo "$title: CPU per request, its TCP-stack part (perf) and what the lowest floor ($low us) allows"
    printf '%-10s %10s %10s %7s %16s %16s\n' server cpu-us/req tcp-us/req share "now vs $1" "best vs $1"
    for s in "$@"; do
        c=$(median "$cpu" "$s") t=$(median "$tcpm" "$s")
        [ -n "$c" ] && [ -n "$t" ] || continue
        awk -v s="$s" -v c="$c" -v t="$t" -v o="$ours" -v low="$low" 'BEGIN {
            printf "%-10s %10.2f %10.2f %6.0f%% %15.2fx %15.2fx\n", s, c, t, 100 * t / c, o / c, low / c }'
    done
    echo "(now: $1's CPU per request over the server's; best: the lowest TCP floor over the server's,"
    echo " the least CPU per request $1 could need relative to it if everything above the TCP stack cost nothing)"
}
