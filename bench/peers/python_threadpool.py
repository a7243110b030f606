#!/usr/bin/env python3
"""Peer benchmark: CPython's concurrent.futures.ThreadPoolExecutor, measured on this machine.

Beside corio's bench_thread_pool.cpp, with the same shapes and the same 2 workers.
Prints JSON to stdout, one entry per figure, each with "items_per_second":
  python_threadpool_submit_batch  submit(add, i, 1) x 1024, then .result() of each, tasks/s
  python_threadpool_submit_one    submit(add, 1, 1).result(), one at a time, tasks/s

The pool is created once and warmed up outside the timed region; bound methods are
hoisted out of the loops (the peer's best idiomatic shot).
"""
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from peerlib import measure, print_json, timing_args

WORKERS = 2
BATCH = 1024


def add(a, b):
    return a + b


def time_batch(pool: ThreadPoolExecutor, n: int) -> float:
    submit = pool.submit
    rounds = max(1, n // BATCH)
    start = time.perf_counter()
    for _ in range(rounds):
        futures = [submit(add, i, 1) for i in range(BATCH)]
        for f in futures:
            f.result()
    return (time.perf_counter() - start) * n / (rounds * BATCH)


def time_one(pool: ThreadPoolExecutor, n: int) -> float:
    submit = pool.submit
    start = time.perf_counter()
    for _ in range(n):
        submit(add, 1, 1).result()
    return time.perf_counter() - start


def main() -> int:
    args = timing_args(__doc__)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(add, range(WORKERS * 4), range(WORKERS * 4)))  # start the threads
        result = {
            "python_threadpool_submit_batch": measure(lambda n: time_batch(pool, n),
                                                      args.seconds, args.repeats, BATCH),
            "python_threadpool_submit_one": measure(lambda n: time_one(pool, n),
                                                    args.seconds, args.repeats, 1024),
        }
    for entry in result.values():
        entry["python"] = f"{platform.python_implementation()} {platform.python_version()}"
        entry["workers"] = WORKERS
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
