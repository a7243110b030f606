#!/usr/bin/env python3
"""Run an example and compare its stdout with an expected-output file.

Usage: check_output.py EXECUTABLE EXPECTED_FILE

Each line of EXPECTED_FILE is either a literal line or `re:<regex>` (full match).
Exits 0 on a match, 1 with a readable diff otherwise.
"""
import re
import subprocess
import sys


def main() -> int:
    exe, expected_path = sys.argv[1], sys.argv[2]
    proc = subprocess.run([exe], capture_output=True, text=True, timeout=110)
    got = proc.stdout.splitlines()
    want = open(expected_path, encoding="utf-8").read().splitlines()
    problems = []
    if proc.returncode != 0:
        problems.append(f"exit code {proc.returncode}; stderr:\n{proc.stderr}")
    for i in range(max(len(got), len(want))):
        g = got[i] if i < len(got) else "<missing>"
        w = want[i] if i < len(want) else "<nothing more expected>"
        ok = (re.fullmatch(w[3:], g) is not None) if w.startswith("re:") else g == w
        if not ok:
            problems.append(f"line {i + 1}: got {g!r}, expected {w!r}")
    if problems:
        print(f"{exe}: output differs from {expected_path}")
        print("\n".join(problems))
        print("--- full output ---")
        print(proc.stdout, end="")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
