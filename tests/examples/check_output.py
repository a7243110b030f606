#!/usr/bin/env python3
"""Run an example and compare its stdout with an expected-output file.

Usage: check_output.py EXECUTABLE EXPECTED_FILE

Each line of EXPECTED_FILE is either a literal line or `re:<regex>` (full match).

Lines that concurrency may reorder:
- `# any order` as the FIRST line: the whole output is matched as a multiset.
- `# begin any order` ... `# end any order` around some lines: those lines match, as a
  multiset, the same number of consecutive output lines at that place; the lines before
  and after the block keep their order.

Values that must repeat (a pid seen before): a named group in a `re:` line,
`(?P<p0>\\d+)`, records what it matched; a later `re:` line writes `{{p0}}` for that
exact text, or `{{p0|p1|p2}}` for any one of several recorded values. A reference must
name a value recorded on an earlier line, or, inside a block, by a line listed above it
(a block's lines are matched in the order they are listed).

Exits 0 on a match, 1 with a readable diff otherwise.
"""
import re
import subprocess
import sys


ANY_ORDER = "# any order"
BEGIN_ANY = "# begin any order"
END_ANY = "# end any order"
REFERENCE = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*(?:\|[A-Za-z_][A-Za-z0-9_]*)*)\}\}")


class Matcher:
    """Matches expected lines against output lines, recording named groups."""

    def __init__(self):
        self.recorded = {}

    def expand(self, pattern: str):
        """The pattern with references replaced; None when one names no recorded value
        (the line that should have recorded it failed, and is reported already)."""
        missing = False

        def substitute(m):
            nonlocal missing
            names = m.group(1).split("|")
            if any(n not in self.recorded for n in names):
                missing = True
                return ""
            return "(?:" + "|".join(re.escape(self.recorded[n]) for n in names) + ")"
        expanded = REFERENCE.sub(substitute, pattern)
        return None if missing else expanded

    def matches(self, want: str, got: str) -> bool:
        if not want.startswith("re:"):
            return got == want
        pattern = self.expand(want[3:])
        m = re.fullmatch(pattern, got) if pattern is not None else None
        if m is None:
            return False
        self.recorded.update({k: v for k, v in m.groupdict().items() if v is not None})
        return True


def compare_in_order(matcher, got, want, first_line=1):
    problems = []
    for i in range(max(len(got), len(want))):
        g = got[i] if i < len(got) else "<missing>"
        w = want[i] if i < len(want) else "<nothing more expected>"
        if not matcher.matches(w, g):
            problems.append(f"line {first_line + i}: got {g!r}, expected {w!r}")
    return problems


def compare_any_order(matcher, got, want, first_line=1):
    """Multiset match; literal lines first, so a regex cannot steal a literal's line."""
    unmatched = list(enumerate(got, first_line))
    problems = []
    for w in sorted(want, key=lambda w: w.startswith("re:")):
        for i, (_, g) in enumerate(unmatched):
            if matcher.matches(w, g):
                del unmatched[i]
                break
        else:
            where = f"lines {first_line}-{first_line + len(got) - 1}" if got else f"line {first_line}"
            problems.append(f"expected line {w!r} (in any order, {where}) not found")
    problems += [f"line {n}: unexpected line {g!r}" for n, g in unmatched]
    return problems


def segments(want):
    """Splits the expected lines into (in_any_order, lines) runs."""
    runs, current, inside = [], [], False
    for w in want:
        if w in (BEGIN_ANY, END_ANY):
            if (w == BEGIN_ANY) == inside:
                raise ValueError(f"unbalanced {w!r} in the expected file")
            runs.append((inside, current))
            current, inside = [], not inside
        else:
            current.append(w)
    if inside:
        raise ValueError(f"{BEGIN_ANY!r} without {END_ANY!r}")
    runs.append((False, current))
    return [(any_order, lines) for any_order, lines in runs if lines]


def compare(got, want):
    matcher = Matcher()
    if want and want[0] == ANY_ORDER:
        return compare_any_order(matcher, got, want[1:])
    problems, pos = [], 0
    runs = segments(want)
    for n, (any_order, lines) in enumerate(runs):
        # The last run takes whatever output is left, so extra lines are reported.
        chunk = got[pos:] if n == len(runs) - 1 else got[pos:pos + len(lines)]
        compare_run = compare_any_order if any_order else compare_in_order
        problems += compare_run(matcher, chunk, lines, pos + 1)
        pos += len(chunk)
    if not runs and got:
        problems += [f"line {i + 1}: unexpected line {g!r}" for i, g in enumerate(got)]
    return problems


def main() -> int:
    exe, expected_path = sys.argv[1], sys.argv[2]
    proc = subprocess.run([exe], capture_output=True, text=True, timeout=110)
    got = proc.stdout.splitlines()
    want = open(expected_path, encoding="utf-8").read().splitlines()
    problems = []
    if proc.returncode != 0:
        problems.append(f"exit code {proc.returncode}; stderr:\n{proc.stderr}")
    problems += compare(got, want)
    if problems:
        print(f"{exe}: output differs from {expected_path}")
        print("\n".join(problems))
        print("--- full output ---")
        print(proc.stdout, end="")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
