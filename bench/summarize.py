#!/usr/bin/env python3
"""Summarize a Google Benchmark JSON run of corio next to its peers' figures.

Usage:
  summarize.py BENCH_JSON [BENCH_JSON ...] [--peer PEER_JSON ...] [--strict]

Each BENCH_JSON is the output of a Google Benchmark program (bench_coro, bench_runtime,
bench_peer_asio...) with `--benchmark_out=FILE --benchmark_out_format=json`. Each PEER_JSON maps a benchmark name to an object
with "items_per_second" (bench/peers/python_generator.py prints one). When the run used
repetitions, the median aggregate is used (else the mean, else the median of the plain
rows).

Prints one table of every benchmark (items/s and ns/item) and bench/compare.py's table of
the targets (its TARGETS: corio over peer, or corio's own figure against a floor) with
PASS / MISS; a target whose inputs are absent is shown as n/a. Exits 0, or 1 with --strict
when a target is missed. (bench/compare.py runs the programs and peers itself; this judges
JSON files you already have.)
"""
import argparse
import json
import statistics
import sys

def load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # Captured stdout may carry a line of noise before the JSON document.
        start = text.find("{")
        if start < 0:
            raise
        return json.loads(text[start:])


def base_name(name: str) -> str:
    """BM_foo/64/real_time -> BM_foo: how the target table refers to a benchmark."""
    return name.split("/", 1)[0]


def collect_benchmarks(doc: dict) -> dict:
    """Maps each benchmark's run name to its items_per_second, preferring aggregates."""
    plain, aggregates = {}, {}
    for row in doc.get("benchmarks", []):
        ips = row.get("items_per_second")
        if ips is None or row.get("error_occurred"):
            continue
        run_name = row.get("run_name") or row.get("name")
        if row.get("run_type") == "aggregate":
            aggregates.setdefault(run_name, {})[row.get("aggregate_name")] = ips
        else:
            plain.setdefault(run_name, []).append(ips)
    result = {}
    for run_name in list(plain) + [n for n in aggregates if n not in plain]:
        agg = aggregates.get(run_name, {})
        if "median" in agg:
            result[run_name] = agg["median"]
        elif "mean" in agg:
            result[run_name] = agg["mean"]
        elif run_name in plain:
            result[run_name] = statistics.median(plain[run_name])
    return result


def collect_peers(doc: dict) -> dict:
    """Maps each peer entry to its items_per_second; an entry that also gives
    "per_cpu_second" (a server: items per second of its own CPU time, echo_compare.py
    writes it) adds NAME_per_cpu_s with that figure."""
    figures = {}
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            continue
        for key, figure in (("items_per_second", name), ("per_cpu_second", name + "_per_cpu_s")):
            if isinstance(entry.get(key), (int, float)):
                figures[figure] = entry[key]
    return figures


def describe_run(doc: dict) -> str:
    """One line on where and how the run was made, so pasted tables stay comparable."""
    ctx = doc.get("context", {})
    parts = []
    if "num_cpus" in ctx:
        mhz = ctx.get("mhz_per_cpu")
        parts.append(f"{ctx['num_cpus']} CPUs" + (f" @ {mhz} MHz" if mhz else ""))
    reps = max((row.get("repetitions", 1) for row in doc.get("benchmarks", [])), default=1)
    has_median = any(row.get("aggregate_name") == "median" for row in doc.get("benchmarks", []))
    if reps > 1:
        parts.append(f"{reps} repetitions, {'median' if has_median else 'mean'} shown")
    if ctx.get("date"):
        parts.append(ctx["date"])
    return "benchmark run: " + ", ".join(parts) if parts else "benchmark run"


def human_rate(ips: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ips >= scale:
            return f"{ips / scale:.1f} {unit}/s"
    return f"{ips:.1f} /s"


def lookup(figures: dict, name: str):
    """Exact name first, else the first benchmark whose base name matches."""
    if name in figures:
        return figures[name]
    for full, ips in figures.items():
        if base_name(full) == name:
            return ips
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", nargs="+",
                        help="Google Benchmark JSON output (bench_coro, bench_runtime, ...)")
    parser.add_argument("--peer", action="append", default=[], metavar="PEER_JSON",
                        help="peer figures, {name: {items_per_second: ...}} (repeatable)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a target ratio is missed")
    args = parser.parse_args()

    docs = [load_json(path) for path in args.bench_json]
    doc = docs[0]
    figures = {}
    for d in docs:
        figures.update(collect_benchmarks(d))
    for path in args.peer:
        figures.update(collect_peers(load_json(path)))
    if not figures:
        print(f"summarize: no benchmark with items_per_second in {' '.join(args.bench_json)}",
              file=sys.stderr)
        return 1

    print(describe_run(doc))
    width = max(len(n) for n in figures)
    print(f"{'benchmark':<{width}}  {'items/s':>12}  {'ns/item':>9}")
    for name, ips in figures.items():
        print(f"{name:<{width}}  {human_rate(ips):>12}  {1e9 / ips:>9.2f}")

    print()
    # The targets are compare.py's, kept in one place. Imported here rather than at the
    # top: compare.py imports this module for the loading helpers above.
    import compare
    rows = compare.build_rows(compare.TARGETS, figures)
    print(compare.format_table(rows))
    missed = sum(r.result == "MISS" for r in rows)
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
