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
    if declare -F bench_on_exit >/dev/null; then bench_on_exit "$rc"; fi
    rm -rf "$tmp"
    exit $rc
}
