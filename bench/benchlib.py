"""Helpers shared by the comparison scripts (echo_compare, http_compare, kv_compare):
starting a server on a free loopback port, waiting until it accepts, pinning it and its
load generator to CPUs of their own, reading its CPU time, and stopping it."""
import os
import shutil
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


def cpu_split(server_threads: int, client_threads: int, client: str = "the client"):
    """(server CPUs, client CPUs, note): taskset lists that keep a server and its load
    generator apart, the same for every contender. The server gets the first
    server_threads CPUs this process may use, the client the next client_threads (or what
    is left). Unpinned, the scheduler moves a woken client next to the server that woke
    it now and then, and one run differs from the next by up to 1.3x for that alone (the
    echo benchmark did). (None, None, why) when there are too few CPUs or no taskset."""
    cpus = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None:
        return None, None, f"no taskset: server and {client} not pinned apart"
    if len(cpus) < server_threads + 1:
        return None, None, f"only {len(cpus)} CPUs: server and {client} not pinned apart"
    server = cpus[:server_threads]
    rest = cpus[server_threads:]
    ours = rest[:max(client_threads, 1)]
    fmt = lambda c: ",".join(map(str, c))  # noqa: E731
    return fmt(server), fmt(ours), f"server on CPU {fmt(server)}, {client} on CPU {fmt(ours)}"


def cpu_times(pid: int) -> tuple:
    """(user, system) CPU seconds a process used so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far."""
    return sum(cpu_times(pid))


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 20) -> None:
    """Asks a server to stop with sig, and kills it if it has not exited after grace s."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
