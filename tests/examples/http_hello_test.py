#!/usr/bin/env python3
"""Drives examples/http_hello like a client would: start it on a free port, check the
answer to GET / byte for byte, keep-alive (several requests on one connection),
pipelining (10 requests in one write, 10 answers in order), Connection: close, HTTP/1.0,
404, a malformed request (400) and oversized headers (431) while another connection keeps
working, random input (sockets.fuzz: only whole, known answers, no crash or hang; set
CORIO_FUZZ_SEED to replay a seed), curl when it is installed, and SIGTERM: exit 0.

Usage: http_hello_test.py HTTP_HELLO_EXECUTABLE
"""
import os
import re
import shutil
import signal
import subprocess
import sys

from sockets import Failure, connect, expect, fuzz, fuzz_seed, recv_all, recv_exact

OK = (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!")
OK_CLOSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
            b"Connection: close\r\n\r\nHello, World!")
OK_KEEP_10 = (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
              b"Connection: keep-alive\r\n\r\nHello, World!")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nContent-Type: text/plain\r\n\r\nNot Found\n"
BAD = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n"
       b"Connection: close\r\n\r\nBad Request\n")
TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 32\r\nContent-Type: text/plain\r\n"
             b"Connection: close\r\n\r\nRequest Header Fields Too Large\n")
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def http_answers(data: bytes) -> int:
    """How many whole HTTP/1.1 answers data holds, each with a status this server gives;
    Failure otherwise. An answer to HEAD has no body: the next answer (or the end)
    follows its headers at once."""
    pos = count = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        m = re.match(rb"HTTP/1\.1 (200|400|404|405|413|431) [A-Za-z ]+\r\n", data[pos:])
        length = re.search(rb"\r\nContent-Length: (\d+)\r\n", data[pos:end + 2]) if end >= 0 else None
        if not m or not length:
            raise Failure(f"not an answer at byte {pos}: {data[pos:pos + 60]!r}")
        body = end + 4
        if body == len(data) or data.startswith(b"HTTP/1.1 ", body):
            pos = body  # HEAD
        elif len(data) >= body + int(length.group(1)):
            pos = body + int(length.group(1))
        else:
            raise Failure(f"answer at byte {pos} cut off: {data[pos:pos + 60]!r}")
        count += 1
    return count


def run_checks(port: int) -> None:
    # One GET, byte-exact, then the connection stays open (keep-alive) for more.
    with connect(port) as s:
        for i in range(5):
            s.sendall(GET)
            expect(f"keep-alive request {i}", recv_exact(s, len(OK)), OK)
        # Pipelining: 10 requests in one write (one of them a 404), answers in order.
        reqs = [GET if i != 6 else b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n" for i in range(10)]
        s.sendall(b"".join(reqs))
        want = b"".join(OK if i != 6 else NOT_FOUND for i in range(10))
        expect("10 pipelined answers", recv_exact(s, len(want)), want)
        # Connection: close is honoured: the answer says so and the server closes.
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        expect("Connection: close", recv_all(s), OK_CLOSE)

    # HTTP/1.0 without keep-alive closes; with keep-alive it stays open.
    with connect(port) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        expect("HTTP/1.0", recv_all(s), OK_CLOSE)
    with connect(port) as s:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        expect("HTTP/1.0 keep-alive", recv_exact(s, len(OK_KEEP_10)), OK_KEEP_10)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        expect("HTTP/1.0 after keep-alive", recv_all(s), OK_CLOSE)

    # Malformed requests: 400 and close; a bystander connection keeps working.
    with connect(port) as bystander:
        bystander.sendall(GET)
        expect("bystander before", recv_exact(bystander, len(OK)), OK)
        for bad in [b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
                    b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"]:
            with connect(port) as s:
                s.sendall(bad)
                expect(f"malformed {bad!r}", recv_all(s), BAD)
        # A good request before a bad one in the same write: answered, then 400.
        with connect(port) as s:
            s.sendall(GET + b"BAD REQUEST LINE\r\n\r\n")
            expect("good then bad", recv_all(s), OK + BAD)
        # Oversized headers, complete or not: 431, and the bystander still works.
        big = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
        with connect(port) as s:
            s.sendall(big)
            expect("431 (complete)", recv_all(s), TOO_LARGE)
        with connect(port) as s:
            s.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 12000)  # no end of headers yet
            expect("431 (incomplete)", recv_all(s), TOO_LARGE)
        bystander.sendall(GET)
        expect("bystander after", recv_exact(bystander, len(OK)), OK)

    # Random input: mutated requests and random bytes never crash or hang the server.
    seed = fuzz_seed()
    corpus = [GET, b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
              b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
              b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"GET / HTTP/1.1\r\nX-A: " + b"a" * 200 + b"\r\n\r\n"]
    fuzz(port, corpus, 300, seed, http_answers)
    with connect(port) as s:
        s.sendall(GET)
        expect(f"GET after fuzzing (seed {seed})", recv_exact(s, len(OK)), OK)

    # curl, when it is installed, sees the body.
    curl = shutil.which("curl")
    if curl:
        out = subprocess.run([curl, "-s", f"http://127.0.0.1:{port}/"], capture_output=True, timeout=30)
        expect("curl", out.stdout, b"Hello, World!")


def serve_and_check(exe: str, args: list, mode: str, last_line: str) -> int:
    """Starts http_hello with args, runs every check, then SIGTERM: the idle connection is
    closed, the exit status is 0 and the only other output line fully matches last_line.
    mode is the server's own description of itself ("2 shards", "2 processes"), as a
    regex for its first line."""
    proc = subprocess.Popen([exe, "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().rstrip("\n")
        m = re.fullmatch(r"http_hello listening on http://127\.0\.0\.1:(\d+)/ \((" + mode + r")\)", first)
        if not m:
            raise Failure(f"{args}: unexpected first line {first!r}")
        port = int(m.group(1))
        run_checks(port)
        # Closed by the graceful shutdown. One answered request first: a connection still
        # in the listener's backlog when SIGTERM closes the listener is reset by the kernel,
        # not by the server (echo_server_test pings its idle connection the same way).
        idle = connect(port)
        idle.sendall(GET)
        expect("the idle connection's first answer", recv_exact(idle, len(OK)), OK)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        if idle.recv(16) != b"":
            raise Failure(f"{args}: the idle connection was not closed by the shutdown")
        idle.close()
        lines = out.splitlines()
        if proc.returncode != 0 or len(lines) != 1 or not re.fullmatch(last_line, lines[0]):
            raise Failure(f"{args}: exit {proc.returncode}, output {lines!r}, stderr {err!r}")
        # corio::server names its backend once per serve, on stderr: the one CORIO_BACKEND
        # forces, if any (one line per worker process with --processes).
        forced = os.environ.get("CORIO_BACKEND", "")
        backend = forced if forced in ("io_uring", "epoll") else "(?:io_uring|epoll)"
        announced = re.findall(r"^corio::server: serving \S+ on \d+ shards?, " + backend + r" backend$", err, re.MULTILINE)
        servers = int(m.group(2).split()[0]) if "processes" in m.group(2) else 1
        if len(announced) != servers:
            raise Failure(f"{args}: stderr names the backend {len(announced)} times, want {servers} ({backend}): {err!r}")
    except (Failure, OSError, subprocess.TimeoutExpired) as e:
        return fail(proc, e)
    print(f"http_hello_test: OK (port {port}, {m.group(2)})")
    return 0


def fail(proc: subprocess.Popen, error: Exception) -> int:
    """Reports a failed check with the server's output; returns the exit status 1."""
    print(f"http_hello_test: FAIL: {error}")
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    print("--- stdout ---\n" + out + "--- stderr ---\n" + err)
    return 1


def main() -> int:
    exe = sys.argv[1]
    # On every shard of one process, then (--processes 2) from two worker processes.
    return (serve_and_check(exe, [], r"\d+ shards", r"SIGTERM: shut down after \d+ connections") or
            serve_and_check(exe, ["--processes", "2"], r"2 processes",
                            re.escape("SIGTERM: shut down (2 worker processes)")))


if __name__ == "__main__":
    sys.exit(main())
