"""Socket helpers shared by the server example tests (http_hello_test, kv_server_test),
and a fuzzer for their bad-input checks."""
import os
import random
import re
import resource
import signal
import socket
import subprocess
import time


class Failure(Exception):
    """A check of a server test failed; the message says what and how."""


def connect(port: int, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def report(checks) -> int:
    """Runs checks(); prints "ok" and returns 0, or prints the Failure and returns 1."""
    try:
        checks()
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    print("ok")
    return 0


def expect(what: str, got, want) -> None:
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def recv_exact(s: socket.socket, n: int) -> bytes:
    """Exactly n bytes; Failure if the server closes first."""
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            raise Failure(f"connection closed after {len(got)} of {n} bytes: {got!r}")
        got += chunk
    return got


def recv_all(s: socket.socket) -> bytes:
    """Everything until the server closes."""
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk


def mutate(rng: random.Random, data: bytes) -> bytes:
    """data with 1-4 random edits: a byte changed, bytes inserted, a range deleted or
    repeated, a number replaced by an extreme one, or the tail cut off."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(6)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 2:
            del out[at:at + rng.randint(1, 16)]
        elif kind == 3:
            out[at:at] = out[at:at + rng.randint(1, 64)] * rng.randint(2, 20)
        elif kind == 4:
            out[at:at] = rng.choice([b"-1", b"0", b"99999999999999999999", b"2147483648", b"\r\n", b"\n", b"\0"])
        else:
            del out[at:]
    return bytes(out)


def fuzz_seed() -> int:
    """CORIO_FUZZ_SEED when set (to replay a failure), else a new seed each run."""
    return int(os.environ.get("CORIO_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))


def fuzz(port: int, corpus: list, connections: int, seed: int, check_reply) -> None:
    """Bad input must never crash or hang a server. Each of `connections` connections
    sends 1-4 corpus entries, mutated (or, one time in ten, random bytes), in 1-4 writes,
    then closes its sending side; the server must answer and close within 30 s, without
    a reset (a server that closes with input unread must linger, or the reset may destroy
    its answers), and check_reply(reply) must accept what came back (it raises Failure
    otherwise). The seed is in every failure message, to replay it."""
    rng = random.Random(seed)
    for i in range(connections):
        if rng.randrange(10) == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000)))
        else:
            data = mutate(rng, b"".join(rng.choice(corpus) for _ in range(rng.randint(1, 4))))
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 3)))
        try:
            with connect(port) as s:
                start = 0
                for cut in cuts + [len(data)]:
                    s.sendall(data[start:cut])
                    start = cut
                s.shutdown(socket.SHUT_WR)
                check_reply(recv_all(s))
        except (OSError, Failure) as e:
            raise Failure(f"fuzz seed {seed}, connection {i}, input {data[:80]!r}: {e}")


def survives_fd_exhaustion(cmd: list, first_line: str, probe: bytes, want: bytes, limit: int = 48) -> None:
    """Starts cmd with RLIMIT_NOFILE = limit, opens more connections than the server has
    descriptors for (accept fails with EMFILE while they wait in the backlog), and then
    requires the server to be alive and, once they are closed, to answer `probe` with
    `want` on a new connection; then SIGINT must end it with status 0. first_line: a
    regex for the server's first output line, with the port as group 1."""
    def limit_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_fds)
    try:
        line = proc.stdout.readline().rstrip("\n")
        m = re.fullmatch(first_line, line)
        if not m:
            raise Failure(f"with {limit} descriptors: unexpected first line {line!r}")
        port = int(m.group(1))
        held = [connect(port) for _ in range(2 * limit)]
        time.sleep(0.3)  # the accept loops meet EMFILE and retry
        if proc.poll() is not None:
            raise Failure(f"the server died when it ran out of descriptors (exit {proc.returncode})")
        for s in held:
            s.close()
        with connect(port) as s:
            s.sendall(probe)
            expect("an answer once descriptors are free again", recv_exact(s, len(want)), want)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        expect("exit status after SIGINT", proc.returncode, 0)
    except (Failure, OSError, subprocess.SubprocessError) as e:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
        raise Failure(f"{e}\n--- stdout ---\n{out}--- stderr (last lines) ---\n{err[-2000:]}")
