#!/usr/bin/env python3
"""Checks the per-test-case watchdog of tests/doctest_main.cpp with watchdog_test.

Usage: watchdog_check.py WATCHDOG_TEST_BINARY

1. The two well-behaved cases pass (a case that ends in time disarms its timer).
2. The hanging case (timeout(1) decorator) ends the process within seconds, with a
   non-zero exit status and "watchdog: timed out after N s" plus the case's name on stderr.
"""
import re
import subprocess
import sys
import time

HANG = "a case that hangs is ended by the watchdog"


def run(binary, case_filter, limit_s):
    start = time.monotonic()
    try:
        p = subprocess.run([binary, "--test-case=" + case_filter], capture_output=True, text=True,
                           timeout=limit_s)
    except subprocess.TimeoutExpired:
        sys.exit(f"FAIL: {binary} --test-case={case_filter!r} still ran after {limit_s} s")
    return p, time.monotonic() - start


def main():
    binary = sys.argv[1]
    failures = []

    p, _ = run(binary, "a case that ends*,a later case*", 60)
    if p.returncode != 0:
        failures.append(f"the well-behaved cases exited {p.returncode}; stderr:\n{p.stderr}\nstdout:\n{p.stdout}")

    p, elapsed = run(binary, HANG, 60)
    if p.returncode == 0:
        failures.append("the hanging case exited 0")
    if HANG not in p.stderr:
        failures.append(f"stderr does not name the hanging case:\n{p.stderr}")
    m = re.search(r"watchdog: timed out after ([0-9.]+) s", p.stderr)
    if not m:
        failures.append(f"stderr lacks 'watchdog: timed out after N s':\n{p.stderr}")
    elif float(m.group(1)) not in (1.0, 3.0):  # 3 s in sanitizer builds
        failures.append(f"the watchdog reports {m.group(1)} s, expected 1 (or 3 under a sanitizer)")
    if elapsed > 30:
        failures.append(f"the hanging case took {elapsed:.1f} s to end (limit 1 s, 3 s under a sanitizer)")

    if failures:
        print("FAIL:\n" + "\n".join(failures))
        sys.exit(1)
    print(f"ok: the hanging case ended after {elapsed:.1f} s with exit {p.returncode}")


if __name__ == "__main__":
    main()
