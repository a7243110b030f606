#!/usr/bin/env bash
# Builds corio and runs every test, in each build configuration below, plus the install
# test. The last line is always `N passed, N failed` (summed over all builds; a build
# that does not configure or compile counts as one failure), and the exit status is
# non-zero if anything failed. Build directories are reused, so a rerun only rebuilds
# what changed.
#
# Usage: scripts/test.sh [--fast]     --fast: the normal build only (no sanitizers, no fuzzing)
#
# CORIO_FUZZ_SECONDS=N runs each libFuzzer target for N seconds (default 25; docs/testing.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fast=0
for arg in "$@"; do
    case $arg in
        --fast) fast=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

jobs=$(nproc 2>/dev/null || echo 2)

# Sanitizer runtimes read these; binaries built without a sanitizer ignore them, so they
# are set once for every build. abort_on_error / halt_on_error turn a report into a test
# failure instead of a line in a log.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

passed=0 failed=0 skipped=0 finished=0
failures=()
build_ok=0  # 1 when the last run_build configured and compiled

# Prints the summary; runs on every exit, so an unexpected error (or set -e) still ends
# with the line CI reads, counted as a failure.
summary() {
    local rc=$?
    [[ $finished -eq 1 ]] && return
    finished=1
    if [[ $rc -ne 0 && $failed -eq 0 ]]; then
        failed=1
        failures+=("test.sh stopped early (exit $rc)")
    fi
    echo
    [[ $skipped -gt 0 ]] && echo "$skipped skipped"
    if [[ ${#failures[@]} -gt 0 ]]; then
        echo "failed:"
        printf '  %s\n' "${failures[@]}"
    fi
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 ]] || exit 1
}
trap summary EXIT  # installed after argument parsing: --help prints no summary

# count_results NAME DIR [LOGBASE]: adds meson test's results in
# DIR/meson-logs/LOGBASE.json (default testlog) to the totals: OK and EXPECTEDFAIL pass,
# SKIP is neither, anything else (FAIL, TIMEOUT, ERROR, ...) fails.
count_results() {
    local name=$1 log=$2/meson-logs/${3:-testlog}.json counts
    counts=$(python3 - "$log" "$name" <<'EOF'
import json, sys
passed = failed = skipped = 0
bad = []
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        if not line.strip():
            continue
        t = json.loads(line)
        r = t.get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
            bad.append(f"{sys.argv[2]}: {t.get('name')} ({r})")
print(passed, failed, skipped)
for b in bad:
    print(b)
EOF
    ) || return 1
    local p f s
    read -r p f s <<<"$(head -n1 <<<"$counts")"
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    while IFS= read -r line; do
        [[ -n "$line" ]] && failures+=("$line")
    done < <(tail -n +2 <<<"$counts")
    [[ $((p + f + s)) -gt 0 ]] || echo "   warning: $name ran no tests"
    return 0
}

# run_build NAME DIR MESON_ARGS...: configure (or reconfigure) DIR, build it, run its
# tests, and add the results to the totals. Never fails the script by itself: a build
# that does not configure or compile is counted as one failed test.
run_build() {
    local name=$1 dir=$2 start=$SECONDS
    shift 2
    build_ok=0
    echo "== $name build ($dir)"
    if [[ -f $dir/meson-private/coredata.dat ]]; then
        # --reconfigure applies changed MESON_ARGS; if the old dir is unusable, start over.
        meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1 \
            || meson setup --wipe "$dir" "$@" >"$dir.setup.log" 2>&1 \
            || { build_failed "$name" "meson setup" "$dir.setup.log"; return 0; }
    else
        rm -rf "$dir"
        mkdir -p "$(dirname "$dir")"
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 \
            || { build_failed "$name" "meson setup" "$dir.setup.log"; return 0; }
    fi
    if ! ninja -C "$dir" -j "$jobs" >"$dir.ninja.log" 2>&1; then
        build_failed "$name" "ninja" "$dir.ninja.log"
        return 0
    fi
    build_ok=1
    echo "   built in $((SECONDS - start)) s; running tests"
    # Sanitized code runs several times slower; give its tests more time.
    local multiplier=1
    [[ " $* " == *" -Db_sanitize="* ]] && multiplier=3
    rm -f "$dir/meson-logs/testlog.json"
    # meson test's exit status is not needed: testlog.json records every result.
    meson test -C "$dir" --no-rebuild --print-errorlogs --num-processes "$jobs" \
        --timeout-multiplier "$multiplier" || true
    if [[ ! -f $dir/meson-logs/testlog.json ]] || ! count_results "$name" "$dir"; then
        failed=$((failed + 1))
        failures+=("$name: meson test produced no readable $dir/meson-logs/testlog.json")
    fi
    return 0
}

# Shows the tail of a failed step's log and counts the build as one failed test.
build_failed() {
    local name=$1 step=$2 log=$3
    # The first error is the useful one (later ones often follow from it); without one,
    # the end of the log.
    local first
    first=$(grep -n -m1 -E 'ERROR:|error:|FAILED:' "$log" | cut -d: -f1 || true)
    if [[ -n $first ]]; then
        echo "   $step failed for the $name build; from the first error in $log:"
        tail -n +"$first" "$log" | head -n 40 | sed 's/^/   | /'
    else
        echo "   $step failed for the $name build; last lines of $log:"
        tail -n 40 "$log" | sed 's/^/   | /'
    fi
    failed=$((failed + 1))
    failures+=("$name: $step failed (see $log)")
}

# ---- fuzzing (tests/fuzz/, docs/testing.md) -------------------------------------------
# Builds the libFuzzer targets with clang under ASan+UBSan in build/fuzz and runs each for
# CORIO_FUZZ_SECONDS (default 25) from its seed corpus in tests/fuzz/corpus/<target>/
# (read only: what a run adds goes to build/fuzz/corpus/<target>/). Each target counts as
# one test: passed if the run ends without a finding; a finding fails it, and libFuzzer
# writes the input to build/fuzz/findings/<target>-crash-*. Without clang or its fuzzer
# runtime (libclang-rt-14-dev) the step is a skip with the reason.
fuzz_targets=(codec spsc_ring http_request resp)

fuzz_skip() {
    echo "   skipped: $1"
    skipped=$((skipped + ${#fuzz_targets[@]}))
}

run_fuzzers() {
    local dir=build/fuzz seconds=${CORIO_FUZZ_SECONDS:-25} start=$SECONDS
    echo "== fuzz ($dir, ${seconds} s per target)"
    if ! command -v clang++ >/dev/null 2>&1; then
        fuzz_skip "clang++ not found (scripts/deps.sh installs clang)"; return 0
    fi
    mkdir -p "$dir"
    if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
        clang++ -x c++ -fsanitize=fuzzer - -o "$dir/runtime-probe" >"$dir.probe.log" 2>&1; then
        fuzz_skip "clang++ cannot link -fsanitize=fuzzer (install libclang-rt-14-dev); see $dir.probe.log"
        return 0
    fi
    local targets=() t log
    for t in "${fuzz_targets[@]}"; do targets+=("tests/fuzz/fuzz_$t"); done
    local args=(--buildtype=debugoptimized -Dfuzzers=true -Db_sanitize=address,undefined
                -Db_lundef=false -Dbenchmarks=false)
    if [[ -f $dir/meson-private/coredata.dat ]]; then
        CXX=clang++ meson setup --reconfigure "$dir" "${args[@]}" >"$dir.setup.log" 2>&1 \
            || CXX=clang++ meson setup --wipe "$dir" "${args[@]}" >"$dir.setup.log" 2>&1 \
            || { build_failed fuzz "meson setup" "$dir.setup.log"; return 0; }
    else
        rm -rf "$dir"
        CXX=clang++ meson setup "$dir" "${args[@]}" >"$dir.setup.log" 2>&1 \
            || { build_failed fuzz "meson setup" "$dir.setup.log"; return 0; }
    fi
    if ! ninja -C "$dir" -j "$jobs" "${targets[@]}" >"$dir.ninja.log" 2>&1; then
        build_failed fuzz ninja "$dir.ninja.log"; return 0
    fi
    echo "   built in $((SECONDS - start)) s"
    mkdir -p "$dir/findings"
    for t in "${fuzz_targets[@]}"; do
        mkdir -p "$dir/corpus/$t"
        log=$dir/fuzz_$t.log
        # -timeout: one input running 10 s is a hang, a finding too. The outer timeout
        # only guards against libFuzzer itself not stopping.
        if timeout $((seconds + 120)) "$dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
            -artifact_prefix="$dir/findings/$t-" "$dir/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
            passed=$((passed + 1))
            echo "   fuzz_$t: $(grep -m1 -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" || echo done), no finding"
        else
            failed=$((failed + 1))
            failures+=("fuzz: fuzz_$t found a crash (log $log; input in $dir/findings/)")
            echo "   fuzz_$t: FINDING; from $log:"
            grep -m8 -E 'ERROR|SUMMARY|fuzz finding|Test unit written' "$log" | sed 's/^/   | /'
        fi
    done
}
# ---- end of fuzzing --------------------------------------------------------------------

bash scripts/deps.sh

# The build configurations. Adding one (e.g. ThreadSanitizer) is one more line here.
# "debug" keeps assertions (b_ndebug=if-release) with optimization on; the sanitizer
# build runs at -O0, which is also where deep symmetric-transfer chains are tested.
run_build normal build/debug --buildtype=debugoptimized
normal_built=$build_ok

# The same tests again with every probed kernel feature off (runtime/kernel_features.hpp):
# the fallbacks that kernels older than the development one take (Debian 12's 6.1 lacks
# the io_uring futex op, for one) run on every change. Counted under its own name.
if [[ $normal_built -eq 1 ]]; then
    echo "== normal build, CORIO_DISABLE_FEATURES=all (build/debug)"
    rm -f build/debug/meson-logs/no-features.json
    # The soak is left out here: it would add a minute and exercises no fallback the unit
    # tests do not.
    CORIO_DISABLE_FEATURES=all meson test -C build/debug --no-rebuild --print-errorlogs \
        --num-processes "$jobs" --logbase no-features --no-suite soak || true
    if [[ ! -f build/debug/meson-logs/no-features.json ]] || ! count_results "no-features" build/debug no-features; then
        failed=$((failed + 1))
        failures+=("no-features: meson test produced no readable build/debug/meson-logs/no-features.json")
    fi
fi

# The same tests again on the epoll backend (runtime/backend.hpp): the user-space emulation
# of the ring that runs where io_uring is refused (Docker's default seccomp profile). Every
# test passes there or skips with a reason (io_uring-only features). Counted as "epoll".
if [[ $normal_built -eq 1 ]]; then
    echo "== normal build, CORIO_BACKEND=epoll (build/debug)"
    rm -f build/debug/meson-logs/epoll.json
    # The soak is left out, as above.
    CORIO_BACKEND=epoll meson test -C build/debug --no-rebuild --print-errorlogs \
        --num-processes "$jobs" --logbase epoll --no-suite soak || true
    if [[ ! -f build/debug/meson-logs/epoll.json ]] || ! count_results "epoll" build/debug epoll; then
        failed=$((failed + 1))
        failures+=("epoll: meson test produced no readable build/debug/meson-logs/epoll.json")
    fi
fi
if [[ $fast -eq 0 ]]; then
    # Benchmarks are compiled (and so checked) by the normal build already.
    # No vptr check: libsanitizer proves a vtable readable by writing it into a pipe(2), so
    # in a process out of descriptors (the servers' EMFILE tests) every vptr-cache miss is
    # reported as "invalid vptr" on a sound object, e.g. e.what() on a caught system_error.
    # The combined ASan+UBSan runtime ignores UBSan suppressions for it. ASan still guards
    # those objects' memory.
    run_build asan+ubsan build/asan --buildtype=debug -Db_sanitize=address,undefined \
        -Dcpp_args=-fno-sanitize=vptr -Db_lundef=false -Dbenchmarks=false
    # The combinators' join counters, the thread-completed tests and the fiber switches
    # (annotated for TSan) are checked for data races here.
    run_build tsan build/tsan --buildtype=debug -Db_sanitize=thread -Db_lundef=false \
        -Dbenchmarks=false
fi

if [[ $fast -eq 0 ]]; then
    run_fuzzers  # the fuzzing block above
fi

# The release build that scripts/quickstart.sh makes, compiled only (its benchmarks are not
# run here): -O3 brings warnings that the builds above never see (GCC 12's
# -Wstringop-overflow false positives broke it once), and -Werror turns them into a
# quickstart that does not build. One test: passed when it compiles.
if [[ $fast -eq 0 ]]; then
    echo "== release build, compiled only (build/release, as scripts/quickstart.sh makes it)"
    release_args=(--buildtype=release -Dtests=false -Dexamples=true -Dbenchmarks=true)
    release_start=$SECONDS
    if { [[ -f build/release/meson-private/coredata.dat ]] &&
         meson setup --reconfigure build/release "${release_args[@]}" >build/release.setup.log 2>&1; } ||
       { rm -rf build/release && meson setup build/release "${release_args[@]}" >build/release.setup.log 2>&1; }; then
        if ninja -C build/release -j "$jobs" >build/release.ninja.log 2>&1; then
            passed=$((passed + 1))
            echo "   built in $((SECONDS - release_start)) s"
        else
            build_failed release ninja build/release.ninja.log
        fi
    else
        build_failed release "meson setup" build/release.setup.log
    fi
fi

echo "== install test"
if [[ $normal_built -ne 1 ]]; then
    echo "   not run: the normal build failed"
    failed=$((failed + 1))
    failures+=("install test: not run (the normal build failed)")
elif bash tests/install/run.sh build/debug; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    failures+=("install test (tests/install/run.sh build/debug)")
fi
