#!/usr/bin/env bash
# Installs the Debian packages corio needs to build, test and benchmark.
#
# Run it (`scripts/deps.sh`) or source it and call `corio_install_deps`. Every package is
# checked with dpkg-query first, so when everything is present it is silent and takes a
# fraction of a second; `apt-get update` runs only when something is missing. CI and new
# machines start from a bare Debian 12: whatever corio needs must be listed here, because
# nothing installed by hand survives.
#
# CORIO_SKIP_DEPS=1 skips the whole step (for machines where you manage packages yourself).

# The one list of required packages. Append here; keep one package per line.
CORIO_DEPS=(
    g++
    pkg-config
    meson
    ninja-build
    python3
    liburing-dev
    libboost-context1.81-dev
    doctest-dev
    libbenchmark-dev
    libzmq3-dev    # bench_ipc's BM_zmq_ipc_8B peer
    redis-tools    # redis-cli drives examples/kv_server in the tests; redis-benchmark measures it
    redis-server   # the peer of kv_server in the headline table; dist/ tests start their own
    libhiredis-dev # test-only: the oracle of the RESP reply parser (tests/dist/reply_parser_diff_test.cpp)
    wrk            # the HTTP load generator for http_hello and its peers
    curl           # a real HTTP client in the http_hello tests
    cmake          # the install test builds a program with find_package(corio)
    clang               # builds the libFuzzer targets of tests/fuzz (scripts/test.sh)
    libclang-rt-14-dev  # clang's fuzzer and sanitizer runtimes (-fsanitize=fuzzer)
)

# Packages that make more benchmarks or tests possible but whose absence is not an error
# (e.g. golang-go for a Go peer benchmark). Installed when available; a failure only warns
# and is not retried on this machine (so a missing optional package costs no apt-get
# update on every run); delete /var/tmp/corio-deps/ to retry.
CORIO_OPTIONAL_DEPS=(
    golang-go  # bench/peers/go_spawn.go, the goroutine peer of BM_spawn
)
CORIO_OPTIONAL_TRIED_DIR=/var/tmp/corio-deps

# Prints the packages of "$@" that are not installed, one per line.
corio_missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ "$status" == "install ok installed" ]] || printf '%s\n' "$pkg"
    done
}

# apt-get as root, or through sudo when we are not root.
corio_apt_get() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { echo "deps: not root and no sudo; cannot run apt-get $*" >&2; return 1; }
        sudo=(sudo)
    fi
    # Lock::Timeout: wait for another dpkg (e.g. unattended-upgrades) instead of failing.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 "$@"
}

# Installs "$@" quietly; on failure shows apt's log and returns non-zero.
corio_apt_install() {
    local log rc=0
    log=$(mktemp)
    if [[ "${_corio_apt_updated:-0}" != 1 ]]; then
        # A fresh Debian image has empty package lists: update once per shell.
        if ! corio_apt_get update >"$log" 2>&1; then
            echo "deps: apt-get update failed:" >&2; cat "$log" >&2; rm -f "$log"; return 1
        fi
        _corio_apt_updated=1
    fi
    corio_apt_get install -y --no-install-recommends "$@" >"$log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "deps: apt-get install $* failed (exit $rc):" >&2; cat "$log" >&2
    fi
    rm -f "$log"
    return $rc
}

# Installs whatever is missing from CORIO_DEPS (plus any extra packages given as arguments)
# and, best effort, from CORIO_OPTIONAL_DEPS.
corio_install_deps() {
    [[ "${CORIO_SKIP_DEPS:-0}" == 1 ]] && return 0
    local required=("${CORIO_DEPS[@]}" "$@")
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "deps: not a Debian system; make sure these are installed: ${required[*]}" >&2
        return 0
    fi
    local missing optional=() pkg
    mapfile -t missing < <(corio_missing_packages "${required[@]}")
    for pkg in $(corio_missing_packages "${CORIO_OPTIONAL_DEPS[@]}"); do
        [[ -e $CORIO_OPTIONAL_TRIED_DIR/$pkg ]] || optional+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 && ${#optional[@]} -eq 0 ]] && return 0

    local rc=0
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "deps: installing ${missing[*]}"
        corio_apt_install "${missing[@]}" || rc=1
    fi
    for pkg in "${optional[@]}"; do
        # One at a time so that one unavailable package does not block the others.
        if corio_apt_install "$pkg" >/dev/null 2>&1; then
            echo "deps: installed optional $pkg"
        else
            echo "deps: optional package $pkg not installed (continuing without it)" >&2
            mkdir -p "$CORIO_OPTIONAL_TRIED_DIR" 2>/dev/null && : >"$CORIO_OPTIONAL_TRIED_DIR/$pkg" || true
        fi
    done
    [[ $rc -eq 0 ]] || return 1
    # Make sure dpkg agrees now (a package name that apt resolved to something else would
    # otherwise be "installed" again on every run).
    mapfile -t missing < <(corio_missing_packages "${required[@]}")
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "deps: still missing after install: ${missing[*]}" >&2
        return 1
    fi
}

# Executed rather than sourced: do the install.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    corio_install_deps "$@"
fi
