#!/usr/bin/env python3
"""Every example server answers `--help` with its usage on stdout and exit 0, and refuses an
option it does not know with exit 2 and the usage on stderr, without starting to serve
(it used to read `--help` as an address: `bad address "127.0.0.1:--help"`). The usage states
the defaults a plain start runs with (SHARDS and --idle-poll: corio::server_runtime_options),
and a bad --idle-poll value is refused with exit 1 and a message naming it.

Usage: server_help_test.py SERVER_EXECUTABLE...
"""
import os
import subprocess
import sys


def check(exe: str) -> list:
    name = os.path.basename(exe)
    problems = []
    for flag in ("--help", "-h"):
        r = subprocess.run([exe, flag], capture_output=True, text=True, timeout=30)
        if r.returncode != 0 or not r.stdout.startswith(f"usage: {name} "):
            problems.append(f"{name} {flag}: exit {r.returncode}, stdout {r.stdout!r}, stderr {r.stderr!r}")
        shards = "SHARDS default: 1 on a machine of 1 or 2 CPUs" if name == "kv_server" else "SHARDS default: one per CPU"
        for default in (shards, "--idle-poll US", "(default 50"):
            if default not in r.stdout:
                problems.append(f"{name} {flag}: the usage does not state {default!r}: {r.stdout!r}")
    r = subprocess.run([exe, "0", "--idle-poll", "soon"], capture_output=True, text=True, timeout=30)
    if r.returncode != 1 or 'bad --idle-poll "soon" (expected 0..1000000 microseconds)' not in r.stderr:
        problems.append(f"{name} --idle-poll soon: exit {r.returncode}, stderr {r.stderr!r}")
    r = subprocess.run([exe, "--no-such-option"], capture_output=True, text=True, timeout=30)
    if (r.returncode != 2 or "unknown option --no-such-option" not in r.stderr
            or f"usage: {name} " not in r.stderr or r.stdout):
        problems.append(f"{name} --no-such-option: exit {r.returncode}, stdout {r.stdout!r}, "
                        f"stderr {r.stderr!r}")
    return problems


def main() -> int:
    problems = [p for exe in sys.argv[1:] for p in check(exe)]
    for p in problems:
        print("server_help_test: FAIL: " + p)
    if not problems:
        print(f"server_help_test: OK ({len(sys.argv) - 1} servers)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
