#!/usr/bin/env python3
"""Peer benchmark: CPython's generator `send` and `next`, measured on this machine.

corio's generator targets are ratios against this figure (docs/design.md, "Performance
targets"), so it must be measured in the same run as bench_coro, not quoted from elsewhere.

Prints JSON to stdout:
  {"python_generator_send": {"items_per_second": ..., "ns_per_item": ...},
   "python_generator_next": {...}}

Each figure is the best of --repeats timed runs of N resumptions, N chosen so one run
takes about --seconds. The driving loop's own overhead is included, as it is in any Python
program that drives a generator; each loop is written the fastest idiomatic way, so the
ratios corio claims against Python are not inflated by a slow peer.
"""
import argparse
import itertools
import json
import platform
import sys
import time

from peerlib import measure


def echo():
    # The Python side of corio's jumping_range: receive a value, yield it back.
    x = 0
    while True:
        x = yield x


def counter():
    x = 0
    while True:
        yield x
        x += 1


def time_send(n: int) -> float:
    # The peer gets its best shot: send bound once, a constant value (no int allocation).
    g = echo()
    next(g)  # prime: run to the first yield, as Python requires before send()
    send = g.send
    start = time.perf_counter()
    for _ in itertools.repeat(None, n):
        send(1)
    return time.perf_counter() - start


def time_next(n: int) -> float:
    # A for loop over the generator: the idiomatic consumer, and CPython's fastest
    # (cheaper than calling next(g) from Python code).
    g = counter()
    start = time.perf_counter()
    for _ in itertools.islice(g, n):
        pass
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="target duration of one timed run (default 0.5)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per figure; the best is kept (default 3)")
    args = parser.parse_args()

    result = {
        "python_generator_send": measure(time_send, args.seconds, args.repeats),
        "python_generator_next": measure(time_next, args.seconds, args.repeats),
    }
    for entry in result.values():
        entry["python"] = f"{platform.python_implementation()} {platform.python_version()}"
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
