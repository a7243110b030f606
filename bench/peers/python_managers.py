#!/usr/bin/env python3
"""Peer of bench_distributed's BM_remote_roundtrip: the seeds' own mechanism,
multiprocessing.managers (BaseManager serving a task queue and a result queue over TCP with
an authkey), with N worker processes doing the seed's get/put loop (N = 1, 2). Prints one JSON object,
{"python_managers_roundtrip/N": {"items_per_second": ...}, ...}, like the other peers.
"""
import argparse
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="target duration of one timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the best is kept")
    args = parser.parse_args()
    seconds, repeats = args.seconds, args.repeats
    result = {}
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

        result[f"python_managers_roundtrip/{n_workers}"] = measure(run, seconds, repeats, first_n=256)
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join()
    m.shutdown()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
