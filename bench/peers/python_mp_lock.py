#!/usr/bin/env python3
"""Peer benchmark: CPython's multiprocessing.Lock (fork start method), on this machine.

corio's process_mutex rows in bench/compare.py are ratios against these figures, measured
in the same run as bench_ipc (BM_process_lock_*), never quoted from elsewhere.

Prints JSON to stdout, one entry per figure, each with "items_per_second":
  python_mp_lock_uncontended  acquire() + release() pairs of one process on a Lock
                              nobody else touches
  python_mp_lock_contended    two processes (this one and a fork()ed child) each make N
                              acquire(); counter.value += 1; release() rounds on one Lock
                              at the same time (a Value('q', lock=False), the same work
                              as corio's benchmark; the total is checked); pairs of both
                              per second, from a common start to the slower one's end

Each figure is the best of --repeats timed runs of N items, N chosen so one run takes
about --seconds. The peer gets its best idiomatic shot: bound methods, the child forked and
waiting at a barrier before the clock starts.
"""
import multiprocessing as mp
import platform
import sys
import time

from peerlib import measure, print_json, timing_args


def time_uncontended(ctx, n: int) -> float:
    lock = ctx.Lock()
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return time.perf_counter() - start


def _rounds(lock, counter, n):
    acquire, release = lock.acquire, lock.release
    for _ in range(n):
        acquire()
        counter.value += 1
        release()


def _contender(lock, counter, barrier, n):
    barrier.wait()
    _rounds(lock, counter, n)


def time_contended(ctx, n: int) -> float:
    """Seconds for 2n pairs; measure() counts n items, so the caller doubles the rate."""
    lock = ctx.Lock()
    counter = ctx.Value("q", 0, lock=False)  # guarded by `lock`, like corio's counter
    barrier = ctx.Barrier(2)
    child = ctx.Process(target=_contender, args=(lock, counter, barrier, n))
    child.start()
    barrier.wait()
    start = time.perf_counter()
    _rounds(lock, counter, n)
    child.join()
    elapsed = time.perf_counter() - start
    if counter.value != 2 * n:
        raise RuntimeError(f"lost updates under multiprocessing.Lock: {counter.value} != {2 * n}")
    return elapsed


def main() -> int:
    args = timing_args(__doc__)

    ctx = mp.get_context("fork")
    s, r = args.seconds, args.repeats
    result = {
        "python_mp_lock_uncontended": measure(lambda n: time_uncontended(ctx, n), s, r, 1 << 16),
        "python_mp_lock_contended": measure(lambda n: time_contended(ctx, n), s, r, 1 << 14),
    }
    # Both processes made n pairs in the timed run of the contended figure.
    contended = result["python_mp_lock_contended"]
    contended["items_per_second"] *= 2
    contended["ns_per_item"] /= 2
    for entry in result.values():
        entry["python"] = f"{platform.python_implementation()} {platform.python_version()}"
        entry["start_method"] = "fork"
    print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
