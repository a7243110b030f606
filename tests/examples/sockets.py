"""Socket helpers shared by the server example tests (http_hello_test, kv_server_test)."""
import socket


class Failure(Exception):
    """A check of a server test failed; the message says what and how."""


def connect(port: int, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


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
