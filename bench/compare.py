#!/usr/bin/env python3
"""corio's headline comparison: every target of docs/design.md, measured in one run.

Runs the release build's Google Benchmark programs (bench_coro, bench_runtime, bench_ipc,
bench_peer_asio) and the peers available on this machine (CPython generators,
multiprocessing and ThreadPoolExecutor, Go goroutines when `go` exists, the echo servers, and the HTTP and KV
comparisons of bench/http_compare.py and bench/kv_compare.py), then prints ONE
table: work, corio's figure, the best peer and its figure, their ratio, the target and
PASS / MISS. A row whose figures are absent (a benchmark not written yet, a peer that is
not installed or failed) shows n/a; it never stops the run.

Writes bench/results/latest.json (every row and the machine: CPU, cores, kernel, compiler,
date) and bench/results/latest.svg (the ratios as a bar chart); with --update-docs, also
docs/img/latest.svg (the copy README.md shows; commit it yourself).

Usage: bench/compare.py [--full] [--builddir build/release] [--update-docs] [--strict]
  default  quick: about 3 minutes on 2 cores, peers included
  --full   longer runs, 5 repetitions (medians), longer peers: about 10 minutes

(The .py is needed: meson puts bench/ on the include path of every bench program, and a
file named `compare` there would replace the C++20 standard header <compare>.)
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import summarize  # noqa: E402  (bench/summarize.py: Google Benchmark JSON loading)


@dataclass(frozen=True)
class Target:
    """One row of the table. `peers`: the figures corio is compared with; the fastest one
    present is the row's "best peer". `ratio`: corio / best peer must be at least this.
    `floor`: corio's own figure must be at least this (items/s), the peer is context.
    Neither: the row is informational (shown, never PASS/MISS)."""
    work: str
    corio: str
    peers: tuple
    ratio: Optional[float] = None
    floor: Optional[float] = None
    unit: str = "items/s"


# The targets (docs/design.md, "Performance targets"). Names are Google Benchmark names
# (the part before the first '/') or keys of a peer's JSON. Append rows here.
TARGETS = [
    Target("generator send vs raw C++20 resume", "BM_generator_send", ("BM_raw_resume",), ratio=0.67),
    # No target: Python 3.11 sends in ~17 ns here, so even a bare C++ resume is only ~10x
    # (the old 20x came from a wrong Python figure); the operative target is the row above.
    Target("generator send vs Python", "BM_generator_send", ("python_generator_send",)),
    Target("fiber switch vs raw Boost.Context", "BM_fiber_switch", ("BM_raw_fcontext_switch",), ratio=0.8),
    Target("io_uring NOP through the loop vs raw", "BM_loop_nop", ("BM_raw_uring_nop",), ratio=0.7),
    Target("spawn + complete a task vs Go", "BM_spawn", ("go_spawn",), ratio=2),
    Target("spawn + complete a task vs Asio", "BM_spawn", ("BM_asio_co_spawn",), ratio=1),
    # The best of Asio's two reactors (its Linux default is epoll) against corio on io_uring.
    # Round trips per second are bounded by the load generator on 2 cores, so the echo
    # target is on the server's CPU per round trip (issue 13): at most 0.75x Asio's, i.e.
    # round trips per CPU second at least 1/0.75 = 1.33x. The throughput row is context.
    Target("TCP echo, 64 B round trips", "echo_corio_io_uring", ("echo_asio_io_uring", "echo_asio_epoll")),
    Target("TCP echo, round trips per server CPU second (CPU per round trip <= 0.75x)",
           "echo_corio_io_uring_per_cpu_s", ("echo_asio_io_uring_per_cpu_s", "echo_asio_epoll_per_cpu_s"),
           ratio=1 / 0.75, unit="req/CPU-s"),
    # corio's epoll backend (docs/backends.md) against Asio's epoll reactor, both servers
    # pinned to one CPU: round trips per second of server CPU (1 / CPU per round trip, so
    # above 1x corio costs less), as the HTTP rows of requests per CPU second read. The
    # second row is what the fallback costs against corio's own io_uring backend.
    Target("TCP echo, epoll backend vs Asio epoll, round trips per CPU second", "echo_corio_epoll_per_cpu_s",
           ("echo_asio_epoll_per_cpu_s",), ratio=1.0, unit="req/CPU-s"),
    Target("TCP echo, epoll vs io_uring backend, round trips per CPU second", "echo_corio_epoll_per_cpu_s",
           ("echo_corio_io_uring_per_cpu_s",), unit="req/CPU-s"),
    Target("ipc spsc ring, 8 B vs raw ring", "BM_spsc_ring_8B", ("BM_raw_spsc_spin",), ratio=0.5),
    Target("ipc queue, 8 B vs Python mp.Queue", "BM_queue_8B", ("python_mp_queue",), ratio=100),
    Target("ipc queue, 8 B vs ZeroMQ ipc", "BM_queue_8B", ("BM_zmq_ipc_8B",), ratio=3),
    # 1 MiB std::string / bytes values, child -> parent, at corio's default options (the
    # value arena). items/s; the ratio is the same in bytes/s.
    Target("ipc queue, 1 MB vs Python mp.Queue", "BM_queue_1MB", ("python_mp_queue_1MB",), ratio=10),
    Target("ipc pipe, 8 B vs Python mp.Pipe", "BM_pipe_8B", ("python_mp_pipe",)),
    Target("pool submit, tiny tasks", "BM_pool_submit", ("python_mp_apply_async",), floor=1e6),
    Target("pool map, chunksize 1", "BM_pool_map_chunk1", ("python_mp_pool_map_chunk1",),
           floor=1e6),
    Target("pool map, chunksize 64", "BM_pool_map_chunk64", ("python_mp_pool_map_chunk64",),
           floor=1e6),
    # imap: ordered and lazy on both sides (corio keeps 32 chunks per worker in flight;
    # Python's imap submits the whole range at once). No target in the issue: informational.
    Target("pool imap vs Python Pool.imap, chunksize 1", "BM_pool_imap_chunk1", ("python_mp_pool_imap_chunk1",)),
    Target("pool imap vs Python Pool.imap, chunksize 64", "BM_pool_imap_chunk64",
           ("python_mp_pool_imap_chunk64",)),
    Target("process start + join", "BM_process_start_join", ("python_mp_process_start_join",),
           floor=2000),
    Target("executor submit, tiny tasks", "BM_executor_submit", ("python_mp_apply_async",)),
    Target("process lock, uncontended vs Python mp.Lock", "BM_process_lock_uncontended",
           ("python_mp_lock_uncontended",), ratio=20),
    Target("process lock, 2 processes contended vs Python mp.Lock", "BM_process_lock_contended",
           ("python_mp_lock_contended",), ratio=20),
    Target("thread pool submit + get, batch of 1024", "BM_thread_pool_submit_batch",
           ("python_threadpool_submit_batch",), ratio=20),
    Target("thread pool submit + get, one at a time", "BM_thread_pool_submit_one",
           ("python_threadpool_submit_one",), ratio=20),
    Target("distributed round trip via Redis, 1 worker vs Python managers", "BM_remote_roundtrip/1/real_time",
           ("python_managers_roundtrip/1",), ratio=20),
    Target("distributed round trip via Redis, 2 workers vs Python managers", "BM_remote_roundtrip/2/real_time",
           ("python_managers_roundtrip/2",), ratio=20),
    Target("distributed round trip via Redis, 2 workers vs raw Redis loop", "BM_remote_roundtrip/2/real_time",
           ("BM_raw_redis_floor/2/real_time",), ratio=0.5),
    Target("distributed round trips, 2 workers", "BM_remote_roundtrip/2/real_time", ("python_managers_roundtrip/2",),
           floor=100e3),
]

# Google Benchmark programs in <builddir>/bench, run when built. (Not every bench_*
# program is one: bench_peer_asio_echo is a server.)
BENCH_PROGRAMS = ["bench_coro", "bench_runtime", "bench_ipc", "bench_peer_asio", "bench_distributed"]

# Comparisons written as scripts that measure both sides themselves and write
# {"rows": [{"work", "benchmark", "corio", "unit", "peer", "peer_value", "target", "extra"}]}.
ROW_SCRIPTS = ["http_compare.py", "kv_compare.py"]


@dataclass
class Row:
    work: str
    benchmark: str
    unit: str
    corio: Optional[float]
    peer: str
    peer_value: Optional[float]
    target_ratio: Optional[float] = None
    target_floor: Optional[float] = None
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> Optional[float]:
        if self.corio is None or not self.peer_value:
            return None
        return self.corio / self.peer_value

    @property
    def result(self) -> str:
        """PASS / MISS, n/a (a figure the verdict needs is absent), or "-" (no target)."""
        if self.target_floor is not None:
            if self.corio is None:
                return "n/a"
            return "PASS" if self.corio >= self.target_floor else "MISS"
        if self.target_ratio is not None:
            if self.ratio is None:
                return "n/a"
            return "PASS" if self.ratio >= self.target_ratio else "MISS"
        return "-" if self.ratio is not None else "n/a"

    @property
    def missing(self) -> list:
        return [name for name, v in ((self.benchmark, self.corio), (self.peer, self.peer_value))
                if v is None and name]

    def to_json(self) -> dict:
        return {"work": self.work, "benchmark": self.benchmark, "corio": self.corio,
                "unit": self.unit, "peer": self.peer, "peer_value": self.peer_value,
                "ratio": self.ratio, "target_ratio": self.target_ratio,
                "target_floor": self.target_floor, "result": self.result,
                "missing": self.missing, "extra": self.extra}


def build_rows(targets: list, figures: dict) -> list:
    """One Row per target; figures maps a benchmark or peer name to items/s."""
    rows = []
    for t in targets:
        corio = summarize.lookup(figures, t.corio)
        present = [(p, summarize.lookup(figures, p)) for p in t.peers]
        present = [(p, v) for p, v in present if v is not None]
        if present:
            peer, peer_value = max(present, key=lambda pv: pv[1])
        else:
            peer, peer_value = " | ".join(t.peers), None
        rows.append(Row(t.work, t.corio, t.unit, corio, peer, peer_value,
                        target_ratio=t.ratio, target_floor=t.floor))
    return rows


def salvage_benchmark_json(path: str) -> dict:
    """The rows a Google Benchmark program wrote before it crashed: its JSON output is cut
    after the last complete benchmark object and closed."""
    try:
        return summarize.load_json(path)
    except ValueError:
        pass
    with open(path, encoding="utf-8") as f:
        text = f.read()
    end = len(text)
    for _ in range(64):
        end = text.rfind("}", 0, end)
        if end < 0:
            break
        try:
            return json.loads(text[:end + 1] + "]}")
        except ValueError:
            continue
    raise ValueError("no complete benchmark row")


def _number(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rows_from_script_output(doc: dict, source: str) -> list:
    """Rows a *_compare.py script wrote; its target is a minimum ratio corio / peer."""
    rows = []
    for r in doc.get("rows", []):
        if not isinstance(r, dict):
            continue
        extra = r.get("extra") if isinstance(r.get("extra"), dict) else {"note": r.get("extra")}
        extra = {k: v for k, v in {**extra, "source": source}.items() if v is not None}
        rows.append(Row(str(r.get("work", "?")), str(r.get("benchmark", "")),
                        str(r.get("unit") or "items/s"), _number(r.get("corio")),
                        str(r.get("peer", "")), _number(r.get("peer_value")),
                        target_ratio=_number(r.get("target")), extra=extra))
    return rows


# ---------------------------------------------------------------------------- running

class Runner:
    def __init__(self, args):
        self.args = args
        self.results = args.results
        self.notes = []  # why something was skipped, printed under the table

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  ({text})", flush=True)

    def run(self, label: str, cmd: list, out_path: Optional[str], timeout: float,
            env: Optional[dict] = None) -> bool:
        """Runs cmd; its stdout goes to out_path (when given), stderr to a .log beside it."""
        log_path = os.path.join(self.results, label + ".log")
        print(f"  {label}", end="", flush=True)
        started = time.monotonic()
        try:
            with open(log_path, "w") as log:
                stdout = open(out_path, "w") if out_path else subprocess.DEVNULL
                try:
                    proc = subprocess.run(cmd, stdout=stdout, stderr=log, timeout=timeout,
                                          cwd=ROOT, env=env)
                finally:
                    if out_path:
                        stdout.close()
        except subprocess.TimeoutExpired:
            print()
            self.note(f"{label} skipped: no result after {timeout:.0f} s")
            return False
        except OSError as e:
            print()
            self.note(f"{label} skipped: {e}")
            return False
        print(f" ({time.monotonic() - started:.0f} s)", flush=True)
        if proc.returncode != 0:
            with open(log_path) as log:
                tail = [line.strip() for line in log if line.strip()][-1:]
            self.note(f"{label} failed (exit status {proc.returncode}"
                      + (f": {tail[0][:120]}" if tail else "") + f"; log: {log_path})")
            return False
        return True

    def bench_programs(self, figures: dict) -> list:
        docs = []
        if self.args.full:
            gb_args = ["--benchmark_min_time=1", "--benchmark_repetitions=5"]
        else:
            gb_args = ["--benchmark_min_time=0.2"]
        for name in BENCH_PROGRAMS:
            exe = os.path.join(self.args.builddir, "bench", name)
            if not os.access(exe, os.X_OK):
                self.note(f"{name} skipped: {exe} is not built")
                continue
            out = os.path.join(self.results, name + ".json")
            if os.path.exists(out):
                os.remove(out)
            ok = self.run(name, [exe, *gb_args, f"--benchmark_out={out}",
                                 "--benchmark_out_format=json"], None,
                          timeout=1800 if self.args.full else 300)
            # A program that failed part-way may still have written the rows it finished.
            if os.path.exists(out):
                try:
                    doc = summarize.load_json(out) if ok else salvage_benchmark_json(out)
                except (ValueError, OSError) as e:
                    self.note(f"{name}: unreadable JSON in {out}: {e}")
                    continue
                docs.append(doc)
                figures.update(summarize.collect_benchmarks(doc))
        return docs

    def peer_json(self, label: str, cmd: list, figures: dict, timeout: float,
                  env: Optional[dict] = None) -> None:
        out = os.path.join(self.results, label + ".json")
        if self.run(label, cmd, out, timeout, env):
            try:
                figures.update(summarize.collect_peers(summarize.load_json(out)))
            except (ValueError, OSError) as e:
                self.note(f"{label}: unreadable output in {out}: {e}")

    def peers(self, figures: dict) -> None:
        full = self.args.full
        py_args = ["--seconds", "1", "--repeats", "5"] if full else ["--seconds", "0.3", "--repeats", "3"]
        for script in ("python_generator", "python_mp", "python_mp_lock", "python_threadpool",
                       "python_managers"):
            self.peer_json(script, [sys.executable, os.path.join(HERE, "peers", script + ".py"),
                                    *py_args], figures, timeout=600)
        go = shutil.which("go")
        if go:
            env = dict(os.environ)
            env.setdefault("GOCACHE", "/tmp/corio-gocache")
            self.peer_json("go_spawn", [go, "run", os.path.join(HERE, "peers", "go_spawn.go")],
                           figures, timeout=600, env=env)
        else:
            self.note("go_spawn skipped: no `go` on PATH (Debian: apt-get install golang-go)")
        seconds = "10" if full else "3"
        self.peer_json("echo", [sys.executable, os.path.join(HERE, "echo_compare.py"),
                                self.args.builddir, "--seconds", seconds, "--epoll"], figures, timeout=300)

    def row_scripts(self) -> list:
        rows = []
        for script in ROW_SCRIPTS:
            path = os.path.join(HERE, script)
            label = script[:-3]
            # A script that fails still shows as one n/a row.
            placeholder = Row(f"bench/{script}", label, "items/s", None, "", None)
            cmd = [sys.executable, path] + self.script_args(path, label)
            out = os.path.join(self.results, label + ".json")
            if os.path.exists(out):
                os.remove(out)
            if not self.run(label, cmd, None, timeout=900 if self.args.full else 300):
                rows.append(placeholder)
                continue
            try:
                rows += rows_from_script_output(summarize.load_json(out), script)
            except (ValueError, OSError) as e:
                self.note(f"{label}: unreadable output in {out}: {e}")
                rows.append(placeholder)
        return rows

    def script_args(self, path: str, label: str) -> list:
        """--json OUT, plus the build dir and a short run in whatever form the script offers
        (read from its --help; see SCRIPT_OPTIONS)."""
        try:
            help_text = subprocess.run([sys.executable, path, "--help"], capture_output=True,
                                       text=True, timeout=30, cwd=ROOT).stdout
        except (subprocess.TimeoutExpired, OSError):
            help_text = ""
        return script_args_from_help(help_text, os.path.join(self.results, label + ".json"),
                                     self.args.builddir, self.args.full)


# Options a compare script may offer, with the value given in a quick and in a full run
# (None: keep the script's default; True: a flag, given without a value). The quick values
# keep each script near 30 s on 2 cores.
# --requests: redis-benchmark's runs at 1.8 M req/s last a quarter of a second at 500,000
# (at 200,000, a tenth, start-up and one scheduling hiccup moved a row by 10%).
# --connections: http_compare.py's rows of CPU per request at 1,000 and 5,000 connections
# (cost must not grow with the connection count), measured against the 64-connection row.
# --epoll: http_compare.py's corio-epoll and asio-epoll servers, at the first count only
# (two more 3 s runs: docs/backends.md, what the fallback costs).
SCRIPT_OPTIONS = [
    ("--seconds", "3", "10"),
    ("--connections", "64,1000,5000", "64,1000,5000"),
    ("--duration", "3", "10"),
    ("--requests", "500000", None),
    ("--epoll", True, True),
]


def script_args_from_help(help_text: str, json_out: str, builddir: str, full: bool) -> list:
    args = ["--json", json_out]
    usage = help_text.split("\n\n", 1)[0]
    if "--builddir" in help_text:
        args += ["--builddir", builddir]
    elif re.search(r"(?<!-)\bbuilddir\b", usage, re.I):
        args.insert(0, builddir)  # a positional BUILDDIR, as echo_compare.py takes
    for option, quick, longer in SCRIPT_OPTIONS:
        value = longer if full else quick
        if value is not None and re.search(re.escape(option) + r"\b", help_text):
            args += [option] if value is True else [option, value]
    return args


# ---------------------------------------------------------------------------- output

def human(value: Optional[float], unit: str = "items/s") -> str:
    if value is None:
        return "n/a"
    if unit == "items/s":
        return summarize.human_rate(value)
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {prefix} {unit}"
    return f"{value:.1f} {unit}"


def target_text(row: Row) -> str:
    if row.target_floor is not None:
        return ">= " + human(row.target_floor, row.unit)
    if row.target_ratio is not None:
        return f">= {row.target_ratio:g}x"
    return "-"


def result_text(row: Row) -> str:
    if row.result == "n/a":
        return "n/a (" + ", ".join(row.missing) + " not measured)"
    return row.result


def format_table(rows: list) -> str:
    header = ("work", "corio", "best peer", "peer", "ratio", "target", "result")
    body = [(r.work, human(r.corio, r.unit), r.peer, human(r.peer_value, r.unit),
             "n/a" if r.ratio is None else f"{r.ratio:.2f}x", target_text(r), result_text(r))
            for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header) - 1)]
    right = {1, 3, 4, 5}
    lines = []
    for line in [header] + body:
        cells = [(c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(cells + [line[-1]]))
    return "\n".join(lines)


def machine_info(builddir: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "compiler": compiler_version(builddir), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def compiler_version(builddir: str) -> str:
    exe = os.environ.get("CXX", "c++")
    try:
        with open(os.path.join(builddir, "compile_commands.json")) as f:
            exe = json.load(f)[0]["command"].split()[0]
    except (OSError, ValueError, IndexError, KeyError):
        pass
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0] if out else exe
    except (OSError, subprocess.TimeoutExpired):
        return exe


def _plotted(row: Row):
    """(bar, mark) on the ratio axis: corio / peer, and where the target sits on it.
    A floor becomes floor / peer; without a peer figure, corio / floor against 1x."""
    if row.target_floor is not None and row.peer_value is None:
        return (None if row.corio is None else row.corio / row.target_floor), 1.0
    mark = row.target_ratio
    if row.target_floor is not None:
        mark = row.target_floor / row.peer_value
    return row.ratio, mark


def text_width(text: str) -> int:
    """A generous width in pixels of text at the chart's 12 px sans-serif."""
    return 7 * len(text)


def render_svg(rows: list, machine: dict) -> str:
    """A horizontal bar per row, log-scale ratio axis, a tick at each target; green PASS,
    red MISS, grey when there is no target or a figure is missing."""
    plotted = [_plotted(r) for r in rows]
    values = [v for bar, mark in plotted for v in (bar, mark) if v]
    lo = 10.0 ** math.floor(math.log10(min(values + [1.0])))
    hi = 10.0 ** math.ceil(math.log10(1.5 * max(values + [10.0])))  # room past the last tick
    lo, hi = max(lo, 1e-3), min(hi, 1e5)

    notes = [None if not bar else f'{bar:.3g}x{"+" if bar > hi else ""} {row.result}, {human(row.corio, row.unit)}'
             for row, (bar, mark) in zip(rows, plotted)]
    # The label and note columns fit their longest text (no font metrics here: 7 px a
    # character is a little over DejaVu Sans's average at 12 px), so long row names and
    # req/CPU-s figures are not cut at the picture's edges.
    label_w = max(330, text_width(max((r.work for r in rows), key=len, default="")) + 16)
    right_w = max(210, text_width(max((n for n in notes if n), key=len, default="")) + 16)
    chart_w, row_h, top = 460, 24, 54
    width = label_w + chart_w + right_w
    height = top + row_h * len(rows) + 36

    def x(v: float) -> float:
        v = min(max(v, lo), hi)
        return label_w + chart_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    colors = {"PASS": "#2e9e44", "MISS": "#d03b3b"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">corio / best peer '
           f'(log scale; tick = target)</text>',
           f'<text x="10" y="38" fill="#555">{escape(machine.get("cpu", ""))}, '
           f'{machine.get("cores")} cores, Linux {escape(machine.get("kernel", ""))}, '
           f'{escape(machine.get("compiler", ""))}, {escape(machine.get("date", ""))}</text>']
    axis_y = top + row_h * len(rows)
    decade = lo
    while decade <= hi * 1.0001:
        gx = x(decade)
        stroke = "#888" if abs(decade - 1.0) < 1e-9 else "#ddd"
        out.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{axis_y}" stroke="{stroke}"/>')
        out.append(f'<text x="{gx:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#555">{decade:g}x</text>')
        decade *= 10
    for i, (row, (bar, mark), note) in enumerate(zip(rows, plotted, notes)):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(row.work)}</text>')
        if bar:
            fill = colors.get(row.result, "#9a9a9a")
            out.append(f'<rect x="{label_w}" y="{y + 5}" width="{max(x(bar) - label_w, 1):.1f}" '
                       f'height="{row_h - 10}" fill="{fill}"/>')
            out.append(f'<text x="{label_w + chart_w + 8}" y="{y + 16}">{escape(note)}</text>')
        else:
            out.append(f'<text x="{label_w + 6}" y="{y + 16}" fill="#888">n/a</text>')
        if mark:
            mx = x(mark)
            out.append(f'<line x1="{mx:.1f}" y1="{y + 1}" x2="{mx:.1f}" y2="{y + row_h - 1}" '
                       f'stroke="black" stroke-width="2"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--full", action="store_true", help="longer runs with 5 repetitions")
    p.add_argument("--builddir", default=os.path.join(ROOT, "build", "release"),
                   help="a release build with -Dbenchmarks=true (default build/release)")
    p.add_argument("--results", default=os.path.join(HERE, "results"),
                   help="where the JSON, logs and chart go (default bench/results)")
    p.add_argument("--update-docs", action="store_true",
                   help="also write docs/img/latest.svg (README's copy of the chart)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    args.builddir = os.path.abspath(args.builddir)
    os.makedirs(args.results, exist_ok=True)

    runner = Runner(args)
    figures = {}
    print(f"== running benchmarks and peers ({'full' if args.full else 'quick'}; "
          f"outputs in {os.path.relpath(args.results, ROOT)}/)", flush=True)
    docs = runner.bench_programs(figures)
    runner.peers(figures)
    rows = build_rows(TARGETS, figures) + runner.row_scripts()

    machine = machine_info(args.builddir)
    print()
    print(f"{machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, "
          f"{machine['compiler']}, {machine['date']}"
          + (f"; {summarize.describe_run(docs[0])}" if docs else ""))
    print(format_table(rows))
    counts = {k: sum(r.result == k for r in rows) for k in ("PASS", "MISS", "n/a")}
    print(f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['n/a']} n/a")

    report = {"machine": machine, "mode": "full" if args.full else "quick",
              "rows": [r.to_json() for r in rows], "figures": figures, "notes": runner.notes}
    with open(os.path.join(args.results, "latest.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    svg = render_svg(rows, machine)
    with open(os.path.join(args.results, "latest.svg"), "w") as f:
        f.write(svg)
    written = [os.path.join(args.results, n) for n in ("latest.json", "latest.svg")]
    if args.update_docs:
        docs_img = os.path.join(ROOT, "docs", "img")
        os.makedirs(docs_img, exist_ok=True)
        with open(os.path.join(docs_img, "latest.svg"), "w") as f:
            f.write(svg)
        written.append(os.path.join(docs_img, "latest.svg"))
    print("wrote " + ", ".join(os.path.relpath(w, ROOT) for w in written))
    return 1 if args.strict and counts["MISS"] else 0


if __name__ == "__main__":
    sys.exit(main())
