"""Helpers shared by the comparison scripts (echo_compare, http_compare, kv_compare):
starting a server on a free loopback port, waiting until it accepts, reading its CPU
time, and stopping it."""
import os
import signal
import socket
import subprocess
import time


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, seconds: float = 10) -> None:
    """Returns once 127.0.0.1:port accepts; raises if proc exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"server exited early with {proc.returncode}: {err}".rstrip(": "))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {seconds:g} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 20) -> None:
    """Asks a server to stop with sig, and kills it if it has not exited after grace s."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
