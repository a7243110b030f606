#!/usr/bin/env python3
"""Runs the handoff pair (examples/handoff_server, examples/handoff_client) and checks their
exact output. Never is one program forked from the other by the test:
1. over a Unix socket: the test starts the server (listen PATH), waits for its first line,
   then starts the client (connect PATH) as a second, unrelated process;
2. by inheritance: `handoff_server spawn CLIENT` starts the client through
   corio::subprocess, both write to one stdout, their lines in lockstep;
3. a peer that is not corio: the test listens itself and sends the client a regular
   file's fd with garbage bytes; the client must refuse it with a clear message, exit 1;
4. the client started by hand without a parent's handoff: a clear message, exit 1.

Usage: handoff_test.py SERVER CLIENT
"""
import os
import socket
import subprocess
import sys
import tempfile

from sockets import Failure, expect, report

FRUITS = ["apple", "banana", "cherry"]
CLIENT_LINES = (["client: received a queue<std::string> and a pipe end"] + [f"client: got {f}" for f in FRUITS]
                + ["client: got end, closing the pipe"])


def server_lines(first):
    lines = first + ["server: the client is ready"]
    for f in FRUITS:
        lines += [f"server: put {f}", f"server: the client answered {f.upper()}"]
    return lines + ["server: the client closed its end of the pipe"]


def finish(p, what, timeout=30):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise Failure(f"{what} did not finish within {timeout} s; stdout {out!r}, stderr {err!r}")
    if p.returncode != 0:
        raise Failure(f"{what} exited {p.returncode}; stderr {err!r}")
    return out.splitlines()


def over_a_socket(server, client, directory):
    path = os.path.join(directory, "handoff.sock")
    s = subprocess.Popen([server, "listen", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = s.stdout.readline().rstrip("\n")
    if first != f"server: listening on {path}":
        s.kill()
        raise Failure(f"server's first line {first!r}; stderr {s.stderr.read()!r}")
    c = subprocess.Popen([client, "connect", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    expect("client output", finish(c, "client"), CLIENT_LINES)
    expect("server output", finish(s, "server"),
           server_lines(["server: handed a queue<std::string> and a pipe end to the client"]))
    expect("socket file removed by the server", os.path.exists(path), False)


def by_inheritance(server, client):
    s = subprocess.Popen([server, "spawn", client], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    want = ["server: starting handoff_client with a queue<std::string> and a pipe end",
            "client: received a queue<std::string> and a pipe end", "server: the client is ready"]
    for f in FRUITS:
        want += [f"server: put {f}", f"client: got {f}", f"server: the client answered {f.upper()}"]
    want += ["client: got end, closing the pipe", "server: the client closed its end of the pipe",
             "server: the client exited with status 0"]
    expect("spawn output", finish(s, "server spawn"), want)


def from_a_liar(client, directory):
    path = os.path.join(directory, "liar.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        c = subprocess.Popen([client, "connect", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        listener.settimeout(30)
        conn, _ = listener.accept()
        with conn, tempfile.TemporaryFile(dir=directory) as f:
            f.truncate(1 << 16)
            socket.send_fds(conn, [b"x" * 192], [f.fileno()])
            try:
                out, err = c.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                c.kill()
                raise Failure("the client did not give up on a garbage handoff within 30 s")
    expect("client exit code after garbage", c.returncode, 1)
    expect("client stdout after garbage", out, "")
    expect("client stderr after garbage", err,
           "handoff_client: corio::receive_handle<corio::queue<std::__cxx11::basic_string<char, "
           "std::char_traits<char>, std::allocator<char> > >>: not a corio handoff message (the first 8 bytes are "
           "not \"corioHO1\": something else wrote to the socket)\n")


def without_a_parent(client):
    env = {k: v for k, v in os.environ.items() if k != "CORIO_HANDOFF_FD"}
    r = subprocess.run([client, "inherited"], capture_output=True, text=True, timeout=30, env=env)
    expect("exit code without a parent's handoff", r.returncode, 1)
    expect("stderr without a parent's handoff", r.stderr,
           "handoff_client: corio::handoff_from_parent: CORIO_HANDOFF_FD is not set (this program was not started "
           "by corio::child_handoff::spawn, or the handoff socket was taken already)\n")


def main():
    server, client = sys.argv[1], sys.argv[2]

    def checks():
        with tempfile.TemporaryDirectory(prefix="corio-handoff-") as directory:
            over_a_socket(server, client, directory)
            by_inheritance(server, client)
            from_a_liar(client, directory)
        without_a_parent(client)

    return report(checks)


if __name__ == "__main__":
    sys.exit(main())
