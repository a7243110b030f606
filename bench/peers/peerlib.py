"""Timing shared by the Python peers: pick a run length, keep the best of a few runs,
report in the shape bench/summarize.py and bench/compare.py read."""


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
