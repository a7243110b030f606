#!/usr/bin/env python3
"""Runs the seeds' distributed pair (examples/distributed_master, distributed_worker) against
a redis-server of its own (password, AOF, free port) and checks their exact output: one
worker, pointed at the server by name (localhost:PORT), takes every task in order; two workers ("hosts" A and B) share the tasks, each
exactly once; a wrong or missing password is a clear error, exit 1 within 2 s, with the
password nowhere in the output; a bad command line is exit 2. Then the reliable pool
example: 1,000 tasks through two worker processes, the exact sum. Exit 77 (skip) without
redis-server.

Usage: distributed_test.py MASTER WORKER POOL
"""
import os
import shutil
import subprocess
import sys
import time

from redis_server import RedisServer
from sockets import Failure, expect

URLS = [f"ImageUrl_{i}" for i in range(10)]
MASTER_LINES = (["initialing the task manager", "get the queue from network...", "put urls to the task queue"]
                + [f"put {u} in task" for u in URLS])


def env_with(password):
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if password is not None:
        env["REDISCLI_AUTH"] = password
    return env


def start_master(master, server):
    """The master, once its tasks are queued (so workers started next find them)."""
    p = subprocess.Popen([master, "--address", server.address], env=env_with(server.password),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while len(lines) < len(MASTER_LINES):
        line = p.stdout.readline()
        if not line:
            p.kill()
            raise Failure(f"master ended early after {lines!r}; stderr {p.stderr.read()!r}")
        lines.append(line.rstrip("\n"))
    expect("master's first lines", lines, MASTER_LINES)
    return p


def finish(p, what, timeout=60):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        raise Failure(f"{what} did not finish within {timeout} s")
    if p.returncode != 0:
        raise Failure(f"{what} exited {p.returncode}; stderr {err!r}")
    return out.splitlines()


def one_worker(master, worker, server):
    """The worker reaches Redis by name: localhost (resolved by the worker, /etc/hosts)."""
    m = start_master(master, server)
    by_name = f"localhost:{server.port}"
    w = subprocess.Popen([worker, "--address", by_name, "--password", server.password, "--timeout", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with(None))
    expect("worker output", finish(w, "worker"),
           [f"try to connect to {by_name}"] + [f"run task download {u}" for u in URLS] + ["worker exit!"])
    expect("master's results", finish(m, "master"), [f"result is {u}------>completed!" for u in URLS])


def two_workers(master, worker, server):
    m = start_master(master, server)
    workers = [subprocess.Popen([worker, "--address", server.address, "--host-name", host, "--timeout", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env_with(server.password)) for host in ("hostA", "hostB")]
    taken = []
    for host, w in zip(("hostA", "hostB"), workers):
        lines = finish(w, f"worker {host}")
        expect(f"worker {host} first line", lines[0], f"try to connect to {host}")
        expect(f"worker {host} last line", lines[-1], "worker exit!")
        taken += lines[1:-1]
    expect("tasks taken by the two workers", sorted(taken, key=lambda s: int(s.rsplit("_", 1)[1])),
           [f"run task download {u}" for u in URLS])
    expect("master's results", sorted(finish(m, "master"), key=lambda s: int(s.split("_")[1].split("-")[0])),
           [f"result is {u}------>completed!" for u in URLS])


def refused(worker, server):
    for password, code in (("not-the-password-42", "WRONGPASS"), (None, "NOAUTH")):
        start = time.monotonic()
        r = subprocess.run([worker, "--address", server.address, "--timeout", "1"], capture_output=True,
                           text=True, timeout=30, env=env_with(password))
        took = time.monotonic() - start
        expect(f"exit code with password {password!r}", r.returncode, 1)
        if code not in r.stderr or "distributed_worker: redis " + server.address not in r.stderr:
            raise Failure(f"stderr does not name {code} and the server: {r.stderr!r}")
        if password and password in r.stdout + r.stderr:
            raise Failure(f"the password appears in the output: {r.stderr!r}")
        if took > 2:
            raise Failure(f"the refused worker took {took:.1f} s to give up")


def bad_command_line(worker):
    r = subprocess.run([worker, "--help"], capture_output=True, text=True, timeout=30)
    expect("exit code for --help", r.returncode, 0)
    if "a host name (localhost," not in r.stdout:
        raise Failure(f"--help does not say that --address takes a host name: {r.stdout!r}")
    r = subprocess.run([worker, "--port", "1"], capture_output=True, text=True, timeout=30)
    expect("exit code for an unknown flag", r.returncode, 2)
    expect("stderr's first line", r.stderr.splitlines()[0], f"{worker}: unknown argument --port")


def pool_example(pool, server):
    r = subprocess.run([pool, "--address", server.address], capture_output=True, text=True, timeout=120,
                       env=env_with(server.password))
    expect("distributed_pool exit code (stderr: " + r.stderr + ")", r.returncode, 0)
    expect("distributed_pool output", r.stdout.splitlines(),
           ["sum of the squares of 0..999, computed by 2 worker processes: 332833500"])


def main():
    master, worker, pool = sys.argv[1], sys.argv[2], sys.argv[3]
    if shutil.which("redis-server") is None:
        print("skip: redis-server is not installed (scripts/deps.sh installs it)")
        return 77
    try:
        with RedisServer() as server:
            one_worker(master, worker, server)
            two_workers(master, worker, server)
            refused(worker, server)
            pool_example(pool, server)
        bad_command_line(worker)
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
