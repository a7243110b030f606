#!/usr/bin/env bash
# Quick start: install what is missing, build corio in release mode, run the
# microbenchmarks next to their Python peer, print the summary with the target ratios,
# and run the examples. About a minute on 2 cores once the build exists.
#
# Usage: scripts/quickstart.sh [--full]
#   --full   longer benchmark runs with 5 repetitions (the median is reported)
# Results: bench/results/coro.json (Google Benchmark JSON), bench/results/python_generator.json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

full=0
for arg in "$@"; do
    case $arg in
        --full) full=1 ;;
        -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "quickstart.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

# The examples a user can read first; each must exit by itself.
examples=(jumping_range producer_consumer threads_lock thread_local subprocess_communicate)
builddir=build/release
results=bench/results

bash scripts/deps.sh

echo "== building corio (release, $builddir)"
# Tests are not needed here and take most of the build time; scripts/test.sh runs them.
setup_args=(--buildtype=release -Dtests=false -Dexamples=true -Dbenchmarks=true)
if [[ -f $builddir/meson-private/coredata.dat ]]; then
    meson setup --reconfigure "$builddir" "${setup_args[@]}" >/dev/null
else
    rm -rf "$builddir"
    meson setup "$builddir" "${setup_args[@]}" >/dev/null
fi
# ninja's progress lines are noise here; show them only if the build fails.
if ! ninja -C "$builddir" -j "$(nproc 2>/dev/null || echo 2)" >"$builddir/ninja.log" 2>&1; then
    tail -n 40 "$builddir/ninja.log" >&2
    echo "quickstart: the build failed (full log: $builddir/ninja.log)" >&2
    exit 1
fi

mkdir -p "$results"
if [[ $full -eq 1 ]]; then
    bench_args=(--benchmark_min_time=1 --benchmark_repetitions=5)
    peer_args=(--seconds 1 --repeats 5)
    echo_seconds=10
else
    bench_args=(--benchmark_min_time=0.2)
    peer_args=(--seconds 0.3 --repeats 3)
    echo_seconds=3
fi

echo "== running benchmarks (${bench_args[*]})"
# Each program's JSON goes to a file; the console table and the context banner (stderr)
# are dropped to keep the output short, and the banner is shown if a run fails.
run_bench() {
    local name=$1
    if ! "$builddir/bench/$name" "${bench_args[@]}" \
            --benchmark_out="$results/$name.json" --benchmark_out_format=json \
            >/dev/null 2>"$results/$name.log"; then
        cat "$results/$name.log" >&2
        echo "quickstart: $name failed" >&2
        exit 1
    fi
}
run_bench bench_coro
run_bench bench_runtime
run_bench bench_ipc
run_bench bench_peer_asio
python3 bench/peers/python_generator.py "${peer_args[@]}" >"$results/python_generator.json"
peers=(--peer "$results/python_generator.json")
# Go is optional: the peer runs when a Go toolchain is installed.
if command -v go >/dev/null; then
    if GOCACHE=${GOCACHE:-/tmp/corio-gocache} go run bench/peers/go_spawn.go >"$results/go_spawn.json" 2>"$results/go_spawn.log"; then
        peers+=(--peer "$results/go_spawn.json")
    else
        echo "(go_spawn peer failed: see $results/go_spawn.log)"
    fi
fi

# Echo: corio's echo_server and the Asio peer under the same load generator.
if python3 bench/echo_compare.py "$builddir" --seconds "$echo_seconds" >"$results/echo.json" 2>"$results/echo.log"; then
    peers+=(--peer "$results/echo.json")
else
    echo "(echo comparison failed: see $results/echo.log)"
fi

echo
python3 bench/summarize.py "$results/bench_coro.json" "$results/bench_runtime.json" "$results/bench_ipc.json" \
    "$results/bench_peer_asio.json" "${peers[@]}"

echo
echo "== examples"
status=0
for name in "${examples[@]}"; do
    exe=$builddir/examples/$name
    if [[ ! -x $exe ]]; then
        echo "$name: not built ($exe missing)"
        status=1
        continue
    fi
    echo "$name:"
    # timeout: an example that hangs must not hang the quick start.
    rc=0
    timeout 60 "$exe" 2>&1 | sed 's/^/    /' || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "    ($name failed: exit status $rc)"
        status=1
    fi
done
echo
echo "results: $results/*.json"
exit $status
