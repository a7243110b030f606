#!/usr/bin/env python3
"""Run an example and compare its stdout with an expected-output file.

Usage: check_output.py EXECUTABLE EXPECTED_FILE

Each line of EXPECTED_FILE is either a literal line or `re:<regex>` (full match).
If the first line is `# any order`, the remaining lines are matched against the output
lines as a multiset (for output of concurrent threads): every output line must match a
distinct expected line and none may be left over.
Exits 0 on a match, 1 with a readable diff otherwise.
"""
import re
import subprocess
import sys


ANY_ORDER = "# any order"


def line_matches(want: str, got: str) -> bool:
    if want.startswith("re:"):
        return re.fullmatch(want[3:], got) is not None
    return got == want


def compare_in_order(got, want):
    problems = []
    for i in range(max(len(got), len(want))):
        g = got[i] if i < len(got) else "<missing>"
        w = want[i] if i < len(want) else "<nothing more expected>"
        if not line_matches(w, g):
            problems.append(f"line {i + 1}: got {g!r}, expected {w!r}")
    return problems


def compare_any_order(got, want):
    """Multiset match; literal lines first, so a regex cannot steal a literal's line."""
    unmatched = list(got)
    problems = []
    for w in sorted(want, key=lambda w: w.startswith("re:")):
        for i, g in enumerate(unmatched):
            if line_matches(w, g):
                del unmatched[i]
                break
        else:
            problems.append(f"expected line {w!r} (in any order) not found")
    problems += [f"unexpected line {g!r}" for g in unmatched]
    return problems


def main() -> int:
    exe, expected_path = sys.argv[1], sys.argv[2]
    proc = subprocess.run([exe], capture_output=True, text=True, timeout=110)
    got = proc.stdout.splitlines()
    want = open(expected_path, encoding="utf-8").read().splitlines()
    problems = []
    if proc.returncode != 0:
        problems.append(f"exit code {proc.returncode}; stderr:\n{proc.stderr}")
    if want and want[0] == ANY_ORDER:
        problems += compare_any_order(got, want[1:])
    else:
        problems += compare_in_order(got, want)
    if problems:
        print(f"{exe}: output differs from {expected_path}")
        print("\n".join(problems))
        print("--- full output ---")
        print(proc.stdout, end="")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
