#!/usr/bin/env python3
"""The task pool across "hosts": redis-server, a master and two workers, each in a network
namespace of its own, joined by veth pairs to a bridge in a fifth namespace (addresses in
198.18.0.0/24, the benchmarking range; no route anywhere else; the root namespace is not
touched). Tasks flow; then one worker's link is cut (`ip link set ... down`) while it holds
tasks, and they finish on the other worker after the lease: every task has one result,
some after a second delivery. Every namespace (and with it every veth) is deleted on the
way out, even on failure. Exit 77 (skip) where namespaces cannot be made (not root, no
`ip netns`).

Usage: netns_test.py POOL_NODE
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

TAG = f"c{os.getpid() % 100000}"  # namespace and link names must stay short (15 bytes)
HOSTS = {"redis": "198.18.0.1", "master": "198.18.0.2", "w1": "198.18.0.3", "w2": "198.18.0.4"}
PASSWORD = "pw-of-the-netns-test"
PORT = 6390


def ns(name):
    return f"{TAG}-{name}"


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


def make_network():
    sw = ns("sw")
    sh("ip", "netns", "add", sw)
    sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", sw, "link", "set", "br0", "up")
    for host, addr in HOSTS.items():
        sh("ip", "netns", "add", ns(host))
        inside, outside = f"{TAG}{host}a", f"{TAG}{host}b"
        sh("ip", "-n", ns(host), "link", "add", inside, "type", "veth", "peer", "name", outside, "netns", sw)
        sh("ip", "-n", ns(host), "addr", "add", f"{addr}/24", "dev", inside)
        sh("ip", "-n", ns(host), "link", "set", inside, "up")
        sh("ip", "-n", ns(host), "link", "set", "lo", "up")
        sh("ip", "-n", sw, "link", "set", outside, "master", "br0")
        sh("ip", "-n", sw, "link", "set", outside, "up")


def remove_network():
    for name in ["sw", *HOSTS]:
        sh("ip", "netns", "del", ns(name), check=False)


def in_ns(host, *cmd, **kw):
    return subprocess.Popen(["ip", "netns", "exec", ns(host), *cmd], **kw)


def main():
    node = sys.argv[1]
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("redis-server") is None:
        print("skip: needs root, ip(8) and redis-server")
        return 77
    try:
        sh("ip", "netns", "add", ns("probe"))
        sh("ip", "netns", "del", ns("probe"))
    except subprocess.CalledProcessError as e:
        print(f"skip: cannot make a network namespace here: {e.stderr.strip()}")
        return 77
    procs = []
    tmp = tempfile.mkdtemp(prefix="corio-netns-")
    try:
        make_network()
        with open(os.path.join(tmp, "redis.conf"), "w") as f:
            f.write(f"port {PORT}\nbind {HOSTS['redis']}\ndir {tmp}\nrequirepass {PASSWORD}\n"
                    f"appendonly yes\nsave \"\"\nlogfile {tmp}/redis.log\n")
        procs.append(in_ns("redis", "redis-server", os.path.join(tmp, "redis.conf")))
        address = f"{HOSTS['redis']}:{PORT}"
        deadline = time.monotonic() + 10
        while sh("ip", "netns", "exec", ns("master"), "redis-cli", "-h", HOSTS["redis"], "-p", str(PORT),
                 "-a", PASSWORD, "--no-auth-warning", "ping", check=False).stdout.strip() != "PONG":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server in its namespace did not answer the master's namespace")
            time.sleep(0.05)
        workers = {w: in_ns(w, node, "worker", address, PASSWORD, "1000", stderr=subprocess.DEVNULL)
                   for w in ("w1", "w2")}
        procs += workers.values()
        master = in_ns("master", node, "master", address, PASSWORD, "24", "300",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(master)
        time.sleep(1.0)  # both workers hold tasks now (2 slots each, 300 ms a task)
        sh("ip", "-n", ns("w1"), "link", "set", f"{TAG}w1a", "down")  # the cut
        try:
            out, err = master.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            print("FAIL: the master did not get every result within 60 s of the cut")
            return 1
        if master.returncode != 0:
            print(f"FAIL: master exited {master.returncode}: {err}")
            return 1
        words = out.split()
        if words[:4] != ["results", "24", "sum", str(24 * 300)] or int(words[5]) < 1:
            print(f"FAIL: want 24 results summing to {24 * 300} with at least one redelivered, got {out!r}")
            return 1
        print(f"ok: {out.strip()}")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        remove_network()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
