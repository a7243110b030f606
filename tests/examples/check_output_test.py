#!/usr/bin/env python3
"""check_output.py's matching rules: in-order lines, any-order blocks, recorded values.

Each case must pass or fail as stated; a checker that accepts everything would pass no
example test honestly.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_output import compare  # noqa: E402

POOL = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pool.expected"),
            encoding="utf-8").read().splitlines()

GOOD_POOL = """Parent process 10.
Run task 0 (11)...
Waiting for all subprocesses done...
Run task 2 (13)...
Run task 1 (12)...
Run task 3 (14)...
Task 2 runs 0.55 seconds.
Run task 4 (13)...
Task 0 runs 0.70 seconds.
Task 1 runs 0.80 seconds.
Task 3 runs 0.90 seconds.
Task 4 runs 0.60 seconds.
All subprocesses done.""".splitlines()

failures = []


def expect(name, problems, ok):
    if (not problems) != ok:
        failures.append(f"{name}: expected {'a match' if ok else 'a mismatch'}, got {problems}")


expect("the seed's pool order matches", compare(GOOD_POOL, POOL), True)
new_pid = [line.replace("Run task 4 (13)", "Run task 4 (99)") for line in GOOD_POOL]
expect("task 4 in a pid no earlier task ran in fails", compare(new_pid, POOL), False)
early = GOOD_POOL[:]
early[5], early[7] = early[7], early[5]  # task 4 starts before task 3
expect("task 4 starting before task 3 fails", compare(early, POOL), False)
expect("a missing line fails", compare(GOOD_POOL[:-1], POOL), False)
expect("an extra line fails", compare(GOOD_POOL + ["extra"], POOL), False)
expect("whole-file any order still works",
       compare(["b", "a"], ["# any order", "a", "b"]), True)
expect("in-order lines must keep their order", compare(["b", "a"], ["a", "b"]), False)
expect("a reference to a value no earlier line recorded fails",
       compare(["x 1"], ["re:x {{nobody}}"]), False)
expect("a recorded value must repeat exactly",
       compare(["a 12", "b 123"], ["re:a (?P<n>\\d+)", "re:b {{n}}"]), False)
expect("a recorded value repeats",
       compare(["a 12", "b 12"], ["re:a (?P<n>\\d+)", "re:b {{n}}"]), True)

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("check_output rules: all cases behave")
