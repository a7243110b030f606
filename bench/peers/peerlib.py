"""Timing shared by the Python peers: pick a run length, keep the best of a few runs,
report in the shape bench/summarize.py and bench/compare.py read."""
import argparse
import json
import sys


def calibrate(fn, seconds: float, n: int) -> int:
    """N for which fn(N) (the seconds N items took) lasts about `seconds`."""
    while True:
        elapsed = fn(n)
        if elapsed >= seconds / 4:
            return max(1, int(n * seconds / elapsed))
        n *= 4


def measure(fn, seconds: float, repeats: int, first_n: int = 1 << 14) -> dict:
    """{"items_per_second", "ns_per_item", ...} from the best of `repeats` timed runs."""
    n = calibrate(fn, seconds, first_n)
    best = min(fn(n) for _ in range(repeats))
    return {
        "items_per_second": n / best,
        "ns_per_item": best * 1e9 / n,
        "iterations": n,
        "repeats": repeats,
    }


def timing_args(doc: str) -> argparse.Namespace:
    """The --seconds and --repeats every peer takes (compare.py passes them)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="target duration of one timed run (default 0.3)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per figure; the best is kept (default 3)")
    return parser.parse_args()


def print_json(result: dict) -> None:
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
