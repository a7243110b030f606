"""A redis-server of the test's own, for the example tests of dist/: a temporary directory,
a free loopback port, a password (requirepass), AOF on. Use it as a context manager; it is
stopped and its directory removed on the way out, even when the test fails."""
import os
import shutil
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, password: str = "pw-of-the-example-test"):
        self.password = password
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="corio-redis-")
        with open(os.path.join(self.dir, "redis.conf"), "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.dir}/redis.log\n"
                    f"requirepass {password}\nappendonly yes\nsave \"\"\ndaemonize no\n")
        self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.proc = subprocess.Popen(["redis-server", os.path.join(self.dir, "redis.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"redis-server did not start on {self.address}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                got = b""
                while len(got) < 12:
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    got += chunk
                return got == b"+OK\r\n+PONG\r\n"
        except OSError:
            return False

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False
