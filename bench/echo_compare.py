#!/usr/bin/env python3
"""Echo benchmark: corio's examples/echo_server against Boost.Asio's (bench/peers/
asio_echo.cpp, io_uring backend), both driven by the same load generator, bench/echo_client
(corio's own), with the same connections, message size and duration, one after the other
in one run. Both servers get the same number of threads (--threads, one listener per
thread with SO_REUSEPORT); the default, 1, leaves the second core of a 2-core machine to
the client, so the servers, not the client, are what is measured.

On a 2-core machine the client and the server each saturate one core and most of that
time is the kernel's loopback TCP path, so the ratio mostly shows that neither runtime
adds much to it; telling the servers apart needs more client cores than servers.

Prints one JSON object for bench/summarize.py:
  {"echo_corio": {"items_per_second": ...}, "echo_asio": {...}}   (round trips per second)

Usage: echo_compare.py BUILDDIR [--connections 64] [--size 64] [--seconds 3] [--threads 1]
"""
import argparse
import json
import os
import signal
import subprocess
import sys

from benchlib import free_port, wait_listening, stop


def measure(label: str, server_cmd: list, port: int, args, builddir: str) -> dict:
    server = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, server)
        client = subprocess.run(
            [os.path.join(builddir, "bench", "echo_client"), label, f"127.0.0.1:{port}",
             str(args.connections), str(args.size), str(args.seconds)],
            capture_output=True, text=True, timeout=args.seconds + 60)
        if client.returncode != 0:
            raise RuntimeError(f"echo_client {label} failed: {client.stderr.strip()}")
        return json.loads(client.stdout)
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
    out = {}
    port = free_port()
    out.update(measure("corio", [os.path.join(args.builddir, "examples", "echo_server"), f"127.0.0.1:{port}", threads],
                       port, args, args.builddir))
    port = free_port()
    out.update(measure("asio", [os.path.join(args.builddir, "bench", "bench_peer_asio_echo"), str(port), threads],
                       port, args, args.builddir))
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
