#!/usr/bin/env python3
"""Peer of bench_distributed's BM_remote_roundtrip: the seeds' own mechanism,
multiprocessing.managers (BaseManager serving a task queue and a result queue over TCP with
an authkey), with N worker processes doing the seed's get/put loop. Prints one JSON line per
worker count: {"name": "python_managers_roundtrip/N", "items_per_second": ...}.

Usage: python_managers.py [SECONDS] [REPEATS]
"""
import json
import multiprocessing as mp
import queue
import sys
import time
from multiprocessing.managers import BaseManager

from peerlib import measure

AUTHKEY = b"password"
task_queue = queue.Queue()
result_queue = queue.Queue()


class QueueManager(BaseManager):
    pass


def _serve_tasks():
    return task_queue


def _serve_results():
    return result_queue


def worker(address):
    class Client(BaseManager):
        pass

    Client.register("get_task_queue")
    Client.register("get_result_queue")
    m = Client(address=address, authkey=AUTHKEY)
    m.connect()
    tasks, results = m.get_task_queue(), m.get_result_queue()
    while True:
        x = tasks.get()
        if x is None:
            return
        results.put(x)


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    QueueManager.register("get_task_queue", callable=_serve_tasks)
    QueueManager.register("get_result_queue", callable=_serve_results)
    m = QueueManager(address=("127.0.0.1", 0), authkey=AUTHKEY)
    m.start()
    tasks, results = m.get_task_queue(), m.get_result_queue()
    for n_workers in (1, 2):
        procs = [mp.Process(target=worker, args=(m.address,)) for _ in range(n_workers)]
        for p in procs:
            p.start()

        def run(n):
            start = time.perf_counter()
            for i in range(n):
                tasks.put(i)
            for _ in range(n):
                results.get()
            return time.perf_counter() - start

        r = measure(run, seconds, repeats, first_n=256)
        print(json.dumps({"name": f"python_managers_roundtrip/{n_workers}", **r}), flush=True)
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join()
    m.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
