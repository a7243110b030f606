#!/usr/bin/env python3
"""Drives examples/echo_server like a user would: start it on a free port, echo data over
several connections (every byte checked), keep one connection idle, send SIGINT, and check
that it shuts down gracefully: the idle connection sees end-of-stream, the process prints
its three lines and exits 0. Then, with too few file descriptors for its clients, it must
keep running (accept fails with EMFILE and is retried) and echo again once they leave.

Usage: echo_server_test.py ECHO_SERVER_EXECUTABLE
"""
import re
import signal
import socket
import subprocess
import sys
import threading

from sockets import Failure, survives_fd_exhaustion


def fail(msg: str, proc=None) -> int:
    print(f"echo_server_test: FAIL: {msg}")
    if proc is not None:
        proc.kill()
        out, err = proc.communicate()
        print("--- stdout ---\n" + out + "--- stderr ---\n" + err)
    return 1


def exchange(port: int, index: int, errors: list) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            for round_ in range(50):
                msg = f"connection {index} round {round_} ".encode() * 20
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("server closed early")
                    got += chunk
                if got != msg:
                    raise RuntimeError(f"echo mismatch on connection {index}")
    except Exception as e:  # noqa: BLE001 - any failure is reported
        errors.append(f"connection {index}: {e}")


def main() -> int:
    exe = sys.argv[1]
    proc = subprocess.Popen([exe, "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline().rstrip("\n")
    m = re.fullmatch(r"echo server on 127\.0\.0\.1:(\d+) \((\d+) shards\); Ctrl-C stops it", first)
    if not m:
        return fail(f"unexpected first line {first!r}", proc)
    port = int(m.group(1))

    errors: list = []
    threads = [threading.Thread(target=exchange, args=(port, i, errors)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        return fail("; ".join(errors[:5]), proc)

    idle = socket.create_connection(("127.0.0.1", port), timeout=30)
    idle.sendall(b"ping")
    if idle.recv(4) != b"ping":
        return fail("idle connection did not echo", proc)

    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        return fail("no exit within 30 s of SIGINT", proc)
    if idle.recv(16) != b"":
        return fail("the idle connection was not closed by the shutdown")
    idle.close()
    lines = out.splitlines()
    if proc.returncode != 0 or lines != ["SIGINT: shutting down", "stopped"]:
        return fail(f"exit {proc.returncode}, output {lines!r}, stderr {err!r}")
    try:
        survives_fd_exhaustion([exe, "127.0.0.1:0", "2"],
                               r"echo server on 127\.0\.0\.1:(\d+) \(2 shards\); Ctrl-C stops it", b"ping", b"ping")
    except Failure as e:
        return fail(f"out of file descriptors: {e}")
    print(f"echo_server_test: OK (port {port}, {m.group(2)} shards, 32 connections x 50 echoes; "
          "survived running out of file descriptors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
