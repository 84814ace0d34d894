#!/usr/bin/env bash
# Builds libtpc and runs the whole cmocka suite several ways: release, ASan+UBSan, TSan (both with
# fault injection built in, for tests/test-faults.c), the release build under valgrind, the
# release build on the epoll backend (TPC_BACKEND=epoll), and the
# portable ucontext context-switch backend, and a shuffled build (each shard runs its ready tasks
# in a seeded random order: code must not rely on an order the API does not promise); runs each libFuzzer target of tests/fuzz for a few
# seconds (built with clang); then the
# aarch64 context switch under qemu, an install + README-example check, and formatting. Prints each failing test's output, then one line
# "N passed, N failed" counting test cases over all runs, and exits non-zero on any failure.
#   scripts/test.sh            everything
#   scripts/test.sh release    only the named configurations (release asan tsan valgrind epoll
#                              ucontext shuffle fuzz aarch64)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bash scripts/setup.sh || exit 1

configs=("$@")
[ ${#configs[@]} -eq 0 ] && configs=(release asan tsan valgrind epoll ucontext shuffle fuzz)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

fail_setup=0
configure() { # name, meson args...
    local dir=build/$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" --werror "$@" >"$dir.setup.log" 2>&1 ||
            { mkdir -p build; cat "$dir.setup.log"; return 1; }
    else # an existing build directory takes this configuration's options too (regenerated
        # first, so that options added since it was set up are known)
        { ninja -C "$dir" build.ninja && meson configure "$dir" "$@"; } >"$dir.setup.log" 2>&1 ||
            { cat "$dir.setup.log"; return 1; }
    fi
    ninja -C "$dir" >"$dir.build.log" 2>&1 || { cat "$dir.build.log"; return 1; }
}

mkdir -p build
summary=()
for cfg in "${configs[@]}"; do
    case $cfg in
    release) dir=build/release setup_name= args=(-Dbuildtype=release) ;;
    asan) dir=build/asan setup_name=slow args=(-Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false -Dfault_injection=true) ;;
    tsan) dir=build/tsan setup_name=slow args=(-Dbuildtype=debugoptimized -Db_sanitize=thread -Db_lundef=false -Dfault_injection=true) ;;
    valgrind) dir=build/release setup_name=valgrind args=(-Dbuildtype=release) ;;
    epoll) dir=build/release setup_name=epoll args=(-Dbuildtype=release) ;;
    ucontext) dir=build/ucontext setup_name= args=(-Dbuildtype=release -Dcontext=ucontext) ;;
    shuffle) dir=build/shuffle setup_name= args=(-Dbuildtype=release -Dshuffle=true) ;;
    fuzz) dir=build/fuzz setup_name= args=(-Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true -Dtests=false -Dbenchmarks=false -Dexamples=false) ;;
    aarch64) continue ;; # below
    *) echo "unknown configuration '$cfg' (release asan tsan valgrind epoll ucontext shuffle fuzz aarch64)" >&2; exit 2 ;;
    esac
    name=${dir#build/}
    echo "== $cfg: building"
    cc=${CC:-cc}
    [ "$cfg" = fuzz ] && cc=clang # libFuzzer (tests/fuzz)
    if ! CC=$cc configure "$name" "${args[@]}"; then
        echo "== $cfg: BUILD FAILED"
        summary+=("$cfg: build failed")
        fail_setup=$((fail_setup + 1))
        continue
    fi
    if [ "$cfg" = release ]; then # the benchmarks and C peers build with it (ninja's default
        # target), so that they cannot rot; scripts/bench.sh runs them, Tokio's peers build there
        missing_bench=""
        for t in bench-core bench-timer bench-xshard bench-idle bench-file bench-floor epoll-server \
            echo-load bench-uv-timer bench-uv-loop uv-server; do
            [ -x "$dir/bench/$t" ] || missing_bench="$missing_bench $t"
        done
        if [ -n "$missing_bench" ]; then
            echo "== release: benchmarks not built:$missing_bench (libuv1-dev missing?)"
            summary+=("bench: not built:$missing_bench")
            fail_setup=$((fail_setup + 1))
        fi
    fi
    echo "== $cfg: testing"
    log=testlog.json
    [ -n "$setup_name" ] && log=testlog-$setup_name.json
    rm -f "$dir/meson-logs/$log"
    (cd "$dir" && meson test ${setup_name:+--setup "$setup_name"} --print-errorlogs --num-processes 2 \
        >"$root/$dir/test-$cfg.log" 2>&1)
    grep -E "^ *[0-9]+/[0-9]+ " "$dir/test-$cfg.log"
    python3 - "$dir/meson-logs/$log" "$cfg" >"$dir/counts-$cfg" <<'PY'
import json, re, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    out = (t.get("stdout") or "") + "\n" + (t.get("stderr") or "")
    p = len(re.findall(r"^\[       OK \] \w+$", out, re.M))
    f = len(set(re.findall(r"^\[  (?:FAILED|ERROR)  ? *\] (\w+)$", out, re.M)))
    if t["result"] == "SKIP":
        skipped += 1
        continue
    if t["result"] != "OK" and f == 0:
        f = 1  # crashed, timed out or leaked: count the executable as one failed case
    if t["result"] != "OK" or f:
        print(f"FAILED {t['name']} ({t['result']})", file=sys.stderr)
        print(out[-8000:], file=sys.stderr)
    passed += p
    failed += f
print(passed, failed, skipped)
PY
    read -r p f s <"$dir/counts-$cfg"
    summary+=("$cfg: $p passed, $f failed, $s skipped executables")
done

# Installing works, and the README's example program builds against the installed library
# through pkg-config and runs.
if [[ " ${configs[*]} " == *" release "* ]]; then
    echo "== install: README example against the installed library"
    dest=$root/build/install-test
    rm -rf "$dest"
    sed -n '/^```c$/,/^```$/p' README.md | sed '1d;$d' >build/readme-example.c
    if DESTDIR=$dest meson install -C build/release --quiet >build/install.log 2>&1 &&
        pc=$(dirname "$(find "$dest" -name libtpc.pc | head -1)") &&
        libdir=$(dirname "$(find "$dest" -name libtpc.so | head -1)") &&
        flags=$(PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$pc pkg-config --cflags --libs libtpc) &&
        cc -Wall -Wextra -Werror build/readme-example.c $flags -Wl,-rpath,"$libdir" \
            -o build/readme-example >>build/install.log 2>&1 &&
        build/readme-example | grep -q "fibers done"; then
        summary+=("install: 1 passed")
        install_pass=1
        # The installed headers compile in every ISO C mode, pedantic, with both compilers.
        cflags=$(PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$pc pkg-config --cflags libtpc)
        for std in c99 c11 c17 c2x; do
            for compiler in gcc clang; do
                if $compiler -std=$std -Wall -Wextra -pedantic -Werror -fsyntax-only \
                    build/readme-example.c $cflags >>build/install.log 2>&1; then
                    install_pass=$((install_pass + 1))
                else
                    echo "== headers: $compiler -std=$std failed"
                    fail_setup=$((fail_setup + 1))
                fi
            done
        done
        summary+=("headers: $((install_pass - 1)) of 8 language modes passed")
    else
        cat build/install.log
        summary+=("install: FAILED")
        fail_setup=$((fail_setup + 1))
    fi
fi

# The aarch64 context switch, cross-built and run under qemu (tests/test-context.c).
if [[ " ${configs[*]} " == *" aarch64 "* ]] || [ $# -eq 0 ]; then
    echo "== aarch64: context switch under qemu"
    if aarch64-linux-gnu-gcc -O2 -static -DTPC_TEST_STANDALONE -Icore tests/test-context.c \
        core/context.c core/switch_aarch64.S -lm -o build/test-context-aarch64 &&
        qemu-aarch64 build/test-context-aarch64 >build/test-context-aarch64.log 2>&1; then
        n=$(grep -c '^\[       OK \]' build/test-context-aarch64.log)
        summary+=("aarch64: $n passed")
        aarch64_pass=$n
    else
        cat build/test-context-aarch64.log 2>/dev/null
        summary+=("aarch64: FAILED")
        fail_setup=$((fail_setup + 1))
    fi
fi

# Formatting is part of the contract: the repo's .clang-format, checked like a test case.
fmt_files=$(git ls-files '*.c' '*.h' 2>/dev/null || find core include tests bench examples -name '*.[ch]')
if command -v clang-format >/dev/null; then
    if clang-format --dry-run --Werror $fmt_files >build/format.log 2>&1; then
        summary+=("format: 1 passed")
        fmt_pass=1
    else
        head -40 build/format.log
        summary+=("format: FAILED (run clang-format -i on the files above)")
        fail_setup=$((fail_setup + 1)) fmt_pass=0
    fi
fi

total_p=$((${fmt_pass:-0} + ${aarch64_pass:-0} + ${install_pass:-0})) total_f=$fail_setup total_s=0
for cfg in "${configs[@]}"; do
    case $cfg in valgrind | epoll) d=build/release ;; *) d=build/$cfg ;; esac
    [ -f "$d/counts-$cfg" ] || continue
    read -r p f s <"$d/counts-$cfg"
    total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
done
echo
printf '%s\n' "${summary[@]}"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
