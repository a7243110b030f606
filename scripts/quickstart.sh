#!/usr/bin/env bash
# Quick start: install what is missing, build corio in release mode, run the examples
# (the seeds' distributed pair against a redis-server it starts itself, too), then
# bench/compare.py: corio's benchmarks next to their peers (Python generators and
# multiprocessing, Boost.Asio, Go, ZeroMQ, bare liburing and Boost.Context floors), ending
# with one table of every performance target, PASS or MISS. About 3 minutes on 2 cores
# once the build exists (the build itself takes a few more the first time).
#
# Usage: scripts/quickstart.sh [--full] [--update-docs]
#   --full          longer benchmark runs with 5 repetitions (the median is reported)
#   --update-docs   also write docs/img/latest.svg, the chart README.md shows
# Results: bench/results/latest.json (every row, the machine), bench/results/latest.svg
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

compare_args=()
for arg in "$@"; do
    case $arg in
        --full|--update-docs) compare_args+=("$arg") ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "quickstart.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

# The examples a user can read first; each must exit by itself.
# Every example of examples/meson.build's corio_examples (the seed programs and the rest).
examples=(jumping_range producer_consumer threads_lock threads_loop worker_thread thread_ways
          thread_pool channel_threads fetch_url thread_local thread_local_main
          subprocess_communicate fork fork_004 process_list queue_abc subprocess_call process
          pipe queue joinable_queue pool pool_of_three executor process_sync)
builddir=build/release

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
    # timeout: an example that hangs must not hang the quick start. Long outputs are cut
    # to their first lines: the table below is the point.
    rc=0
    out=$(timeout 60 "$exe" 2>&1) || rc=$?
    lines=$(printf '%s\n' "$out" | wc -l)
    printf '%s\n' "$out" | sed -n '1,6s/^/    /p'
    if [[ $lines -gt 6 ]]; then
        echo "    ... ($((lines - 6)) more lines)"
    fi
    if [[ $rc -ne 0 ]]; then
        echo "    ($name failed: exit status $rc)"
        status=1
    fi
done

# The seeds' distributed pair (seed 004) across "two hosts": a redis-server of its own
# (temporary directory, free port, requirepass, AOF on), the master, and a worker that
# exits once no task came for 2 s. The server is stopped and its directory removed on
# every way out.
run_distributed() {
    local dir port pw rc=0 server
    dir=$(mktemp -d /tmp/corio-quickstart-redis-XXXXXX)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    printf 'port %s\nbind 127.0.0.1\ndir %s\nlogfile %s/redis.log\nrequirepass %s\nappendonly yes\nsave ""\n' \
        "$port" "$dir" "$dir" "$pw" >"$dir/redis.conf"
    redis-server "$dir/redis.conf" &
    server=$!
    trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$dir"' RETURN
    # Ready when it answers PING (up to 30 s: a busy machine starts it slowly).
    local ready=0
    for _ in $(seq 600); do
        [[ $(REDISCLI_AUTH=$pw redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && { ready=1; break; }
        kill -0 "$server" 2>/dev/null || break
        sleep 0.05
    done
    if [[ $ready -eq 0 ]]; then
        echo "    (redis-server did not answer on 127.0.0.1:$port within 30 s; its log: $(tail -n 3 "$dir/redis.log" 2>/dev/null))"
        return 1
    fi
    echo "distributed_master + distributed_worker (redis-server on 127.0.0.1:$port, AOF on):"
    REDISCLI_AUTH=$pw timeout 60 "$builddir/examples/distributed_master" --address "127.0.0.1:$port" \
        >"$dir/master.out" 2>&1 &
    local master=$!
    sleep 0.5
    REDISCLI_AUTH=$pw timeout 60 "$builddir/examples/distributed_worker" --address "127.0.0.1:$port" \
        --host-name worker-host --timeout 2 2>&1 | sed -n '1,4s/^/    worker: /p' || rc=1
    wait "$master" || rc=$?
    sed -n '1,3s/^/    master: /p;$s/^/    master: /p' "$dir/master.out"
    if [[ $rc -ne 0 ]]; then
        echo "    (the distributed pair failed: exit status $rc)"
        return 1
    fi
}
# The handoff pair: two programs that were never forked from one another share a queue
# and a pipe, over a Unix socket (both started here), then by inheritance (the server
# starts the client through corio::subprocess).
run_handoff() {
    local dir rc=0 server
    dir=$(mktemp -d /tmp/corio-quickstart-handoff-XXXXXX)
    trap 'rm -rf "$dir"' RETURN
    echo "handoff_server listen + handoff_client connect (over $dir/handoff.sock):"
    timeout 60 "$builddir/examples/handoff_server" listen "$dir/handoff.sock" >"$dir/server.out" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        [[ -S $dir/handoff.sock ]] && break
        sleep 0.05
    done
    timeout 60 "$builddir/examples/handoff_client" connect "$dir/handoff.sock" 2>&1 | sed -n '1,3s/^/    /p' || rc=1
    wait "$server" || rc=$?
    sed -n '3,5s/^/    /p' "$dir/server.out"
    echo "handoff_server spawn (hands the queue to the client it starts, by inheritance):"
    timeout 60 "$builddir/examples/handoff_server" spawn 2>&1 | sed -n '1,5s/^/    /p' || rc=1
    if [[ $rc -ne 0 ]]; then
        echo "    (the handoff pair failed: exit status $rc)"
        return 1
    fi
}
run_handoff || status=1

if command -v redis-server >/dev/null; then
    run_distributed || status=1
else
    echo "distributed pair: skipped (redis-server is not installed; scripts/deps.sh installs it)"
fi
echo
python3 bench/compare.py --builddir "$builddir" "${compare_args[@]}" || status=1
exit $status
