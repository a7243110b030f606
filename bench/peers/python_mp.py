#!/usr/bin/env python3
"""Peer benchmark: CPython's multiprocessing (fork start method), measured on this machine.

corio's ipc targets (queue, pipe, pool, process) are ratios against, or absolute floors
next to, these figures (docs/design.md, "Performance targets"), so they are measured in the
same run as bench_ipc, never quoted from elsewhere.

Prints JSON to stdout, one entry per figure, each with "items_per_second":
  python_mp_queue               Queue.put / Queue.get of small ints, child process -> parent
  python_mp_queue_1MB           Queue.put / Queue.get of 1 MiB bytes objects, child -> parent
                                (also "bytes_per_second")
  python_mp_pipe                Pipe() Connection.send / recv of small ints, child -> parent
  python_mp_pool_map_chunk1     Pool(cores).map(noop, range(N), chunksize=1), tasks/s
  python_mp_pool_map_chunk64    the same at chunksize=64 (corio's BM_pool_map_chunk64 beside it)
  python_mp_pool_imap_chunk1    for _ in Pool(cores).imap(noop, range(N), chunksize=1), tasks/s
  python_mp_pool_imap_chunk64   the same at chunksize=64 (corio's BM_pool_imap_chunk64 beside it)
  python_mp_apply_async         Pool(cores).apply_async(noop, (i,)) x N, then every .get()
  python_mp_process_start_join  Process(target=noop).start() + .join(), per second

Each figure is the best of --repeats timed runs of N items, N chosen so one run takes
about --seconds. The peer gets its best idiomatic shot: the consumer calls bound methods,
the producer sends a constant small int (no allocation), the pool is created once and
warmed up outside the timed region, and apply_async results are collected after all the
submissions (as a user would, to overlap them).
"""
import multiprocessing as mp
import os
import platform
import sys
import time

from peerlib import measure, print_json, timing_args


def noop(x=None):
    return x


def _queue_producer(q, n, value=1):
    put = q.put
    for _ in range(n):
        put(value)
    put(None)


def time_queue(ctx, n: int, value=1) -> float:
    q = ctx.Queue()
    child = ctx.Process(target=_queue_producer, args=(q, n + 1, value))
    child.start()
    get = q.get
    get()  # the first item: the child runs, so its fork is not timed
    start = time.perf_counter()
    while get() is not None:
        pass
    elapsed = time.perf_counter() - start
    child.join()
    return elapsed


MIB = 1 << 20  # python_mp_queue_1MB: one bytes object, put again and again (pickled each time)


def _pipe_producer(conn, n):
    send = conn.send
    for _ in range(n):
        send(1)
    send(None)
    conn.close()


def time_pipe(ctx, n: int) -> float:
    recv_end, send_end = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_pipe_producer, args=(send_end, n + 1))
    child.start()
    send_end.close()
    recv = recv_end.recv
    recv()  # the first item: the child runs, so its fork is not timed
    start = time.perf_counter()
    while recv() is not None:
        pass
    elapsed = time.perf_counter() - start
    child.join()
    recv_end.close()
    return elapsed


class PoolBench:
    """One pool for every pool run: creating it is not what the figures are about."""

    def __init__(self, ctx):
        self.pool = ctx.Pool(os.cpu_count() or 2)
        self.pool.map(noop, range(64), chunksize=1)  # warm: every worker started

    def time_map(self, n: int, chunksize: int) -> float:
        start = time.perf_counter()
        self.pool.map(noop, range(n), chunksize=chunksize)
        return time.perf_counter() - start

    def time_imap(self, n: int, chunksize: int) -> float:
        start = time.perf_counter()
        for _ in self.pool.imap(noop, range(n), chunksize=chunksize):
            pass
        return time.perf_counter() - start

    def time_apply_async(self, n: int) -> float:
        submit = self.pool.apply_async
        start = time.perf_counter()
        results = [submit(noop, (i,)) for i in range(n)]
        for r in results:
            r.get()
        return time.perf_counter() - start

    def close(self):
        self.pool.close()
        self.pool.join()


def time_process(ctx, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    return time.perf_counter() - start


def main() -> int:
    args = timing_args(__doc__)

    ctx = mp.get_context("fork")
    s, r = args.seconds, args.repeats
    result = {
        "python_mp_queue": measure(lambda n: time_queue(ctx, n), s, r, 4096),
        "python_mp_pipe": measure(lambda n: time_pipe(ctx, n), s, r, 4096),
        "python_mp_queue_1MB": measure(lambda n: time_queue(ctx, n, b"x" * MIB), s, r, 64),
    }
    result["python_mp_queue_1MB"]["bytes_per_second"] = result["python_mp_queue_1MB"]["items_per_second"] * MIB
    pool = PoolBench(ctx)
    try:
        for chunk in (1, 64):
            result[f"python_mp_pool_map_chunk{chunk}"] = measure(
                lambda n, c=chunk: pool.time_map(n, c), s, r, 256)
            result[f"python_mp_pool_imap_chunk{chunk}"] = measure(
                lambda n, c=chunk: pool.time_imap(n, c), s, r, 256)
        result["python_mp_apply_async"] = measure(pool.time_apply_async, s, r, 256)
    finally:
        pool.close()
    result["python_mp_process_start_join"] = measure(lambda n: time_process(ctx, n), s, r, 4)
    for entry in result.values():
        entry["python"] = f"{platform.python_implementation()} {platform.python_version()}"
        entry["start_method"] = "fork"
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
