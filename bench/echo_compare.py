#!/usr/bin/env python3
"""Echo benchmark: corio's examples/echo_server against Boost.Asio's (bench/peers/
asio_echo.cpp, io_uring backend), both driven by the same load generator, bench/echo_client
(corio's own), with the same connections, message size and duration, one after the other
in one run. Both servers get the same number of threads (--threads, one listener per
thread with SO_REUSEPORT); the default, 1, leaves the second core of a 2-core machine to
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

Prints one JSON object for bench/summarize.py:
  {"echo_corio": {"items_per_second": ..., "server_cpu_us_per_round_trip": ...,
                  "server_user_share": ...}, "echo_asio": {...}}   (round trips per second)

Usage: echo_compare.py BUILDDIR [--connections 64] [--size 64] [--seconds 3] [--threads 1]
"""
import argparse
import json
import os
import signal
import subprocess
import sys

from benchlib import cpu_split, cpu_times, free_port, wait_listening, stop


def measure(label: str, server_cmd: list, port: int, args, pinning) -> dict:
    server_cpus, client_cpus, note = pinning
    client_cmd = [os.path.join(args.builddir, "bench", "echo_client"), label, f"127.0.0.1:{port}",
                  str(args.connections), str(args.size), str(args.seconds)]
    if server_cpus:
        server_cmd = ["taskset", "-c", server_cpus] + server_cmd  # taskset execs: same pid
        client_cmd = ["taskset", "-c", client_cpus] + client_cmd
    server = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, server)
        user0, sys0 = cpu_times(server.pid)
        client = subprocess.run(client_cmd, capture_output=True, text=True, timeout=args.seconds + 60)
        user1, sys1 = cpu_times(server.pid)
        if client.returncode != 0:
            raise RuntimeError(f"echo_client {label} failed: {client.stderr.strip()}")
        out = json.loads(client.stdout)
        figures = out[f"echo_{label}"]
        user, system = user1 - user0, sys1 - sys0
        if figures["round_trips"] > 0 and user + system > 0:
            figures["server_cpu_us_per_round_trip"] = round((user + system) / figures["round_trips"] * 1e6, 3)
            figures["server_user_share"] = round(user / (user + system), 4)
        figures["pinning"] = note
        return out
    finally:
        stop(server, signal.SIGINT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("builddir")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1,
                   help="server threads/shards (default 1: on 2 cores the client needs the other)")
    args = p.parse_args()
    threads = str(args.threads)
    pinning = cpu_split(args.threads, 1)
    out = {}
    port = free_port()
    # --idle-poll 0: like Asio, sleep as soon as the work runs out, so the CPU per round trip
    # counts round trips, not polling (echo_server polls 50 us by default).
    out.update(measure("corio", [os.path.join(args.builddir, "examples", "echo_server"), f"127.0.0.1:{port}", threads,
                                 "--idle-poll", "0"], port, args, pinning))
    port = free_port()
    out.update(measure("asio", [os.path.join(args.builddir, "bench", "bench_peer_asio_echo"), str(port), threads],
                       port, args, pinning))
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
