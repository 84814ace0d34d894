#!/usr/bin/env bash
# Installs what libtpc needs to build, test and demo, on Debian 12 as root. Idempotent: installs
# only packages that are missing, and runs `apt-get update` only when it has to install.
set -euo pipefail

pkgs=(gcc libc6-dev meson ninja-build pkg-config python3 liburing-dev libhwloc-dev
      libcmocka-dev valgrind clang clang-format libuv1-dev
      libclang-rt-14-dev # libFuzzer (tests/fuzz)
      libhttp-parser-dev # examples/http-parse.c: tpc-http's request parser
      libinih-dev # examples/proxy: tpc-proxy reads its configuration file with it
      libxxhash-dev # examples/kv: tpc-kv hashes keys to their owning shard with it
      redis-tools redis-server # examples/kv/test-kv.py: redis-cli, and redis-server to compare
      curl apache2-utils nghttp2-client wrk # tests/test-http-clients.c (skipped without them)
      gdb # tests/test-gdb.py: the gdb extension (skipped without it)
      gnuplot-nox # tpc-numa's heat maps (examples/numa; it says so and goes on without)
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user) # the aarch64 context switch test
pkgs+=("$@") # callers may ask for more (the demo asks for wrk)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO=sudo
    else
        echo "setup: missing packages (${missing[*]}) and not root: run as root or install them" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# Packages that bring a service (nginx-light, haproxy for bench/net.sh) are wanted for their
# binaries only: a policy-rc.d answering 101 keeps invoke-rc.d from starting the service while
# they install (Debian still enables it at boot: `systemctl disable nginx haproxy` undoes that).
# One that is already there (container images ship one) is left as it is.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    trap '${SUDO:-} rm -f "$policy"' EXIT
    printf '#!/bin/sh\n# written by libtpc scripts/setup.sh while it installs packages\nexit 101\n' |
        ${SUDO:-} tee "$policy" >/dev/null
    ${SUDO:-} chmod 755 "$policy"
fi
${SUDO:-} apt-get update -qq
${SUDO:-} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
