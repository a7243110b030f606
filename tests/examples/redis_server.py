"""A redis-server of the test's own, for the example tests of dist/: a temporary directory,
a free loopback port, a password (requirepass), AOF on. Use it as a context manager; it is
stopped and its directory removed on the way out, even when the test fails.

Ready means: it answers AUTH + INFO server with its own process id, within 30 s (no fixed
sleep). free_port() only names a port that was free a moment ago: another test's server
may hold it when ours binds, so a server that exits with "Address already in use" is
started again on another port (5 tries), and one answering with another pid is not ours."""
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
        self.proc = None

    def _write_config(self):
        with open(os.path.join(self.dir, "redis.conf"), "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.dir}/redis.log\n"
                    f"requirepass {self.password}\nappendonly yes\nsave \"\"\ndaemonize no\n")

    def _log(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        for attempt in range(5):
            self._write_config()
            self.proc = subprocess.Popen(["redis-server", os.path.join(self.dir, "redis.conf")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while not self._answers():
                if self.proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError(f"redis-server did not answer on {self.address} within 30 s")
                time.sleep(0.02)
            else:
                return self
            if "Address already in use" not in self._log() or attempt == 4:
                log = self._log()
                self.__exit__(None, None, None)
                raise RuntimeError(f"redis-server exited at start on {self.address}; its log:\n{log}")
            self.port = free_port()
        raise AssertionError("unreachable")

    def _answers(self) -> bool:
        """True if the server on our port answers AUTH + INFO server with our pid."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(f"AUTH {self.password}\r\nINFO server\r\n".encode())
                got = b""
                while b"\r\n\r\n" not in got and len(got) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                return got.startswith(b"+OK\r\n$") and f"\r\nprocess_id:{self.proc.pid}\r\n".encode() in got
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
