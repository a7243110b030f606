#!/usr/bin/env python3
"""Echo benchmark: corio's examples/echo_server against Boost.Asio's (bench/peers/
asio_echo.cpp, io_uring backend), both driven by the same load generator, bench/echo_client
(corio's own), with the same connections, message size and duration, one after the other
in one run. With --epoll, also corio's epoll backend (echo_server with CORIO_BACKEND=epoll)
and Asio's epoll reactor (bench_peer_asio_echo_epoll), under the same conditions: what the
fallback costs (docs/backends.md), and whether it costs more than Asio's own epoll.

All servers get the same number of threads (--threads, one listener per thread with
SO_REUSEPORT); the default, 1, leaves the second core of a 2-core machine to
the client, so the servers, not the client, are what is measured. The server is pinned to
the first CPUs and the client to the next one (taskset, as bench/http_compare.py does with
wrk): unpinned, the scheduler now and then moved the woken client onto the server's CPU,
and corio's echo figure flipped between about 170 k and 220 k round trips/s from run to
run (Asio's, whose thread is not pinned by the runtime and could move away, did less so).

On a 2-core machine the client and the server each saturate one core and most of that
time is the kernel's loopback TCP path, so the ratio mostly shows that neither runtime
adds much to it; telling the servers apart needs more client cores than servers. Each
server's CPU time is read around the client's run (/proc/PID/stat) and reported with the
figures: CPU microseconds per round trip and the share of it spent in user space (the
runtime itself, as opposed to the kernel's TCP path that both servers share).

Prints one JSON object for bench/summarize.py, one entry per server, named after it and
its backend (echo_corio_io_uring, echo_asio_io_uring; with --epoll also echo_corio_epoll,
echo_asio_epoll):
  {"echo_corio_io_uring": {"items_per_second": ..., "server_cpu_us_per_round_trip": ...,
                           "per_cpu_second": ..., "server_user_share": ...,
                           "server": "corio-io_uring", ...}, ...}
items_per_second is round trips per second, per_cpu_second round trips per second of
server CPU time (1 / CPU per round trip: higher is cheaper, as the ratios read). A server
that is not built or fails is left out, with its reason on stderr (its rows are n/a in
bench/compare.py); the script fails only when no server could be measured.

corio's server runs with CORIO_BACKEND set to the backend its entry names (io_uring forced,
so a refused io_uring fails rather than measuring epoll under the io_uring name); the load
generator keeps the environment's.

Usage: echo_compare.py BUILDDIR [--connections 64] [--size 64] [--seconds 3] [--threads 1]
                       [--epoll]
"""
import argparse
import json
import os
import signal
import subprocess
import sys

from benchlib import cpu_split, cpu_times, free_port, wait_listening, stop


def measure(server: str, server_cmd: list, port: int, args, pinning, env=None) -> dict:
    """server: "corio-epoll" and the like; its entry is echo_corio_epoll."""
    label = server.replace("-", "_")
    server_cpus, client_cpus, note = pinning
    client_cmd = [os.path.join(args.builddir, "bench", "echo_client"), label, f"127.0.0.1:{port}",
                  str(args.connections), str(args.size), str(args.seconds)]
    if server_cpus:
        server_cmd = ["taskset", "-c", server_cpus] + server_cmd  # taskset execs: same pid
        client_cmd = ["taskset", "-c", client_cpus] + client_cmd
    server_proc = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   env=env)
    try:
        try:
            wait_listening(port, server_proc)
        except RuntimeError as e:
            raise RuntimeError(f"{server}: {e}") from None
        user0, sys0 = cpu_times(server_proc.pid)
        client = subprocess.run(client_cmd, capture_output=True, text=True, timeout=args.seconds + 60)
        user1, sys1 = cpu_times(server_proc.pid)
        if client.returncode != 0:
            raise RuntimeError(f"echo_client against {server} failed: {client.stderr.strip()}")
        out = json.loads(client.stdout)
        figures = out[f"echo_{label}"]
        user, system = user1 - user0, sys1 - sys0
        if figures["round_trips"] > 0 and user + system > 0:
            figures["server_cpu_us_per_round_trip"] = round((user + system) / figures["round_trips"] * 1e6, 3)
            figures["per_cpu_second"] = round(figures["round_trips"] / (user + system), 1)
            figures["server_user_share"] = round(user / (user + system), 4)
        figures["server"] = server
        figures["pinning"] = note
        return out
    finally:
        stop(server_proc, signal.SIGINT)



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("builddir")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1,
                   help="server threads/shards (default 1: on 2 cores the client needs the other)")
    p.add_argument("--epoll", action="store_true",
                   help="also corio with CORIO_BACKEND=epoll and Asio's epoll reactor")
    args = p.parse_args()
    threads = str(args.threads)
    pinning = cpu_split(args.threads, 1)
    backends = ["io_uring", "epoll"] if args.epoll else ["io_uring"]
    echo_server = os.path.join(args.builddir, "examples", "echo_server")
    out = {}
    for backend in backends:
        # --idle-poll 0: like Asio, sleep as soon as the work runs out, so the CPU per round
        # trip counts round trips, not polling (echo_server polls 50 us by default).
        asio = os.path.join(args.builddir, "bench", "bench_peer_asio_echo" + ("_epoll" if backend == "epoll" else ""))
        servers = [(f"corio-{backend}", [echo_server, "{address}", threads, "--idle-poll", "0"],
                    dict(os.environ, CORIO_BACKEND=backend)),
                   (f"asio-{backend}", [asio, "{port}", threads], None)]
        for server, cmd, env in servers:
            if not os.access(cmd[0], os.X_OK):
                print(f"echo_compare: {server} skipped: {cmd[0]} is not built", file=sys.stderr)
                continue
            port = free_port()
            cmd = [a.format(address=f"127.0.0.1:{port}", port=port) for a in cmd]
            # A server that fails (io_uring refused here, say) is left out: its rows are n/a,
            # the others are still measured.
            try:
                out.update(measure(server, cmd, port, args, pinning, env=env))
            except (RuntimeError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
                print(f"echo_compare: {server} skipped: {e}", file=sys.stderr)
    if not out:
        print("echo_compare: no server could be measured", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
