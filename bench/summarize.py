#!/usr/bin/env python3
"""Summarize a Google Benchmark JSON run of corio next to its peers' figures.

Usage:
  summarize.py BENCH_JSON [BENCH_JSON ...] [--peer PEER_JSON ...] [--strict]

Each BENCH_JSON is the output of a Google Benchmark program (bench_coro, bench_runtime,
bench_peer_asio...) with `--benchmark_out=FILE --benchmark_out_format=json`. Each PEER_JSON maps a benchmark name to an object
with "items_per_second" (bench/peers/python_generator.py prints one). When the run used
repetitions, the median aggregate is used (else the mean, else the median of the plain
rows).

Prints one table of every benchmark (items/s and ns/item) and one of the target ratios
(corio over peer, higher is better) with PASS / MISS; a ratio whose inputs are absent is
shown as n/a. Exits 0, or 1 with --strict when a target is missed.
"""
import argparse
import json
import statistics
import sys

# The performance targets, as (corio benchmark, peer benchmark, minimum ratio of their
# items_per_second). Append a row for each new target (docs/design.md, "Performance
# targets"); names may come from bench_coro or from any --peer file.
TARGETS = [
    ("BM_generator_send", "BM_raw_resume", 0.67),
    ("BM_fiber_switch", "BM_raw_fcontext_switch", 0.8),
    ("BM_generator_send", "python_generator_send", 20.0),
    ("BM_loop_nop", "BM_raw_uring_nop", 0.7),
    ("BM_spawn", "go_spawn", 2.0),
    ("BM_spawn", "BM_asio_co_spawn", 1.0),
    ("echo_corio", "echo_asio", 1.2),
    ("BM_spsc_ring_8B", "BM_raw_spsc_spin", 0.5),
]


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
    return {name: entry["items_per_second"] for name, entry in doc.items()
            if isinstance(entry, dict) and "items_per_second" in entry}


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
    missed = 0
    labels = [f"{c} / {p}" for c, p, _ in TARGETS]
    lwidth = max(len(lbl) for lbl in labels)
    print(f"{'target ratio':<{lwidth}}  {'ratio':>8}  {'target':>8}  result")
    for label, (corio_name, peer_name, target) in zip(labels, TARGETS):
        corio_ips, peer_ips = lookup(figures, corio_name), lookup(figures, peer_name)
        if corio_ips is None or peer_ips is None:
            absent = corio_name if corio_ips is None else peer_name
            print(f"{label:<{lwidth}}  {'n/a':>8}  {'>= ' + format(target, 'g'):>8}  "
                  f"n/a ({absent} not measured)")
            continue
        ratio = corio_ips / peer_ips
        ok = ratio >= target
        missed += not ok
        print(f"{label:<{lwidth}}  {ratio:>8.2f}  {'>= ' + format(target, 'g'):>8}  "
              f"{'PASS' if ok else 'MISS'}")
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
