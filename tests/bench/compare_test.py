#!/usr/bin/env python3
"""bench/compare.py's row logic: ratios, floors, best peers, missing figures, script rows,
the table and the chart. No benchmark is run."""
import importlib.util
import os
import sys
import unittest
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("compare", os.path.join(ROOT, "bench", "compare.py"))
compare = importlib.util.module_from_spec(_spec)
sys.modules["compare"] = compare  # dataclasses look the module up while the class is built
_spec.loader.exec_module(compare)
Target = compare.Target
sys.path.insert(0, os.path.join(ROOT, "bench"))
import http_compare  # noqa: E402  (bench/http_compare.py: its rows, no server started)


class BuildRowsTest(unittest.TestCase):
    def test_a_ratio_target_passes_at_or_above_the_ratio_and_misses_below(self):
        targets = [Target("a", "BM_a", ("peer",), ratio=2), Target("b", "BM_b", ("peer",), ratio=2)]
        rows = compare.build_rows(targets, {"BM_a/real_time": 300.0, "BM_b": 100.0, "peer": 100.0})
        self.assertEqual([r.ratio for r in rows], [3.0, 1.0])
        self.assertEqual([r.result for r in rows], ["PASS", "MISS"])
        self.assertEqual(rows[0].corio, 300.0)
        self.assertEqual(rows[0].peer, "peer")

    def test_a_missing_benchmark_or_peer_gives_na_and_names_what_is_missing(self):
        targets = [Target("no corio", "BM_not_written", ("peer",), ratio=3),
                   Target("no peer", "BM_a", ("absent_peer",), ratio=3)]
        rows = compare.build_rows(targets, {"BM_a": 10.0, "peer": 1.0})
        self.assertEqual([r.result for r in rows], ["n/a", "n/a"])
        self.assertIsNone(rows[0].ratio)
        self.assertIsNone(rows[1].ratio)
        self.assertEqual(rows[0].missing, ["BM_not_written"])
        self.assertEqual(rows[1].missing, ["absent_peer"])
        self.assertEqual(rows[1].corio, 10.0)

    def test_the_fastest_present_peer_is_the_best_peer(self):
        targets = [Target("w", "BM_a", ("slow", "fast", "absent"), ratio=1)]
        row, = compare.build_rows(targets, {"BM_a": 50.0, "slow": 10.0, "fast": 100.0})
        self.assertEqual((row.peer, row.peer_value, row.ratio, row.result), ("fast", 100.0, 0.5, "MISS"))

    def test_a_floor_judges_corio_alone_and_the_peer_is_context(self):
        targets = [Target("pool", "BM_pool_submit", ("python",), floor=1e6),
                   Target("start", "BM_start", ("absent",), floor=2000)]
        rows = compare.build_rows(targets, {"BM_pool_submit": 2.5e6, "python": 5e4, "BM_start": 1999.0})
        self.assertEqual((rows[0].result, rows[0].ratio), ("PASS", 50.0))
        self.assertEqual((rows[1].result, rows[1].ratio), ("MISS", None))

    def test_a_row_without_target_is_informational(self):
        row, = compare.build_rows([Target("pipe", "BM_pipe_8B", ("p",))], {"BM_pipe_8B": 4.0, "p": 2.0})
        self.assertEqual((row.ratio, row.result), (2.0, "-"))
        row, = compare.build_rows([Target("pipe", "BM_pipe_8B", ("p",))], {"p": 2.0})
        self.assertEqual((row.ratio, row.result, row.missing), (None, "n/a", ["BM_pipe_8B"]))

    def test_the_declared_targets_all_resolve_to_na_on_an_empty_run(self):
        rows = compare.build_rows(compare.TARGETS, {})
        self.assertEqual(len(rows), len(compare.TARGETS))
        self.assertEqual({r.result for r in rows}, {"n/a"})
        names = {(r.benchmark, r.target_ratio, r.target_floor) for r in rows}
        self.assertIn(("BM_queue_8B", 100, None), names)
        self.assertIn(("BM_queue_8B", 3, None), names)
        self.assertIn(("BM_spsc_ring_8B", 0.5, None), names)
        self.assertIn(("BM_pool_submit", None, 1e6), names)
        self.assertIn(("BM_process_start_join", None, 2000), names)


class EpollRowsTest(unittest.TestCase):
    """The epoll backend's rows: round trips (requests) per second of server CPU, so a
    ratio above 1 means corio's epoll backend costs less CPU per request than the peer."""

    ECHO = {"echo_corio_io_uring": {"items_per_second": 50e3, "per_cpu_second": 125e3},
            "echo_asio_io_uring": {"items_per_second": 40e3, "per_cpu_second": 100e3},
            "echo_corio_epoll": {"items_per_second": 30e3, "per_cpu_second": 100e3},
            "echo_asio_epoll": {"items_per_second": 35e3, "per_cpu_second": 80e3},
            "python_x": {"items_per_second": 7.0}, "not an entry": 3}

    def echo_rows(self, figures):
        rows = compare.build_rows(compare.TARGETS, figures)
        return {r.work: r for r in rows if r.work.startswith("TCP echo")}

    def test_a_server_entry_gives_its_rate_and_its_rate_per_cpu_second(self):
        figures = compare.summarize.collect_peers(self.ECHO)
        self.assertEqual(figures["echo_corio_epoll"], 30e3)
        self.assertEqual(figures["echo_corio_epoll_per_cpu_s"], 100e3)
        self.assertEqual(figures["python_x"], 7.0)
        self.assertNotIn("python_x_per_cpu_s", figures)
        self.assertEqual(len(figures), 9)

    def test_the_echo_rows_compare_cpu_per_round_trip_with_lower_cpu_winning(self):
        rows = self.echo_rows(compare.summarize.collect_peers(self.ECHO))
        self.assertEqual(len(rows), 4)
        head = rows["TCP echo, 64 B round trips"]
        # Context only: the load generator bounds round trips per second on 2 cores.
        self.assertEqual((head.corio, head.peer, head.ratio, head.result), (50e3, "echo_asio_io_uring", 1.25, "-"))
        # The target is on CPU per round trip, against the cheaper of Asio's two reactors:
        # corio's 8 us per round trip against Asio io_uring's 10 us (its cheaper reactor here)
        # is 1.25x, short of 1/0.75 (CPU per round trip <= 0.75x Asio's).
        cpu = rows["TCP echo, round trips per server CPU second (CPU per round trip <= 0.75x)"]
        self.assertEqual((cpu.corio, cpu.peer, cpu.ratio, cpu.target_ratio, cpu.result, cpu.unit),
                         (125e3, "echo_asio_io_uring_per_cpu_s", 1.25, 1 / 0.75, "MISS", "req/CPU-s"))
        # Asio's faster reactor is the headline's peer, whichever it is.
        faster_epoll = dict(self.ECHO, echo_asio_epoll={"items_per_second": 45e3, "per_cpu_second": 80e3})
        head2 = self.echo_rows(compare.summarize.collect_peers(faster_epoll))["TCP echo, 64 B round trips"]
        self.assertEqual((head2.peer, head2.ratio), ("echo_asio_epoll", 50e3 / 45e3))
        vs_asio = rows["TCP echo, epoll backend vs Asio epoll, round trips per CPU second"]
        # corio-epoll 10 us per round trip, asio-epoll 12.5 us: corio is cheaper, 1.25x PASS.
        self.assertEqual((vs_asio.peer, vs_asio.ratio, vs_asio.target_ratio, vs_asio.result, vs_asio.unit),
                         ("echo_asio_epoll_per_cpu_s", 1.25, 1.0, "PASS", "req/CPU-s"))
        cost = rows["TCP echo, epoll vs io_uring backend, round trips per CPU second"]
        self.assertEqual((cost.peer, cost.ratio, cost.result), ("echo_corio_io_uring_per_cpu_s", 0.8, "-"))

    def test_the_epoll_row_misses_when_corio_needs_more_cpu_per_round_trip(self):
        echo = dict(self.ECHO, echo_asio_epoll={"items_per_second": 35e3, "per_cpu_second": 110e3})
        row = self.echo_rows(compare.summarize.collect_peers(echo))[
            "TCP echo, epoll backend vs Asio epoll, round trips per CPU second"]
        self.assertEqual((round(row.ratio, 4), row.result), (0.9091, "MISS"))

    def test_the_epoll_row_is_na_when_the_asio_epoll_peer_is_missing(self):
        echo = {k: v for k, v in self.ECHO.items() if k != "echo_asio_epoll"}
        row = self.echo_rows(compare.summarize.collect_peers(echo))[
            "TCP echo, epoll backend vs Asio epoll, round trips per CPU second"]
        self.assertEqual((row.corio, row.result, row.missing), (100e3, "n/a", ["echo_asio_epoll_per_cpu_s"]))
        self.assertRegex(compare.format_table([row]).splitlines()[1],
                         r"100\.0 k req/CPU-s\s+echo_asio_epoll_per_cpu_s\s+n/a\s+n/a\s+>= 1x\s+"
                         r"n/a \(echo_asio_epoll_per_cpu_s not measured\)$")

    def test_compare_gives_http_compare_its_epoll_flag_without_a_value(self):
        http = "usage: h.py [-h] [--builddir BUILDDIR] [--seconds SECONDS] [--epoll] [--json JSON]\n"
        self.assertEqual(compare.script_args_from_help(http, "o.json", "/b", full=False),
                         ["--json", "o.json", "--builddir", "/b", "--seconds", "3", "--epoll"])
        self.assertNotIn("--epoll", compare.script_args_from_help("usage: k.py [--json OUT] builddir\n",
                                                                  "o.json", "/b", full=False))

    @staticmethod
    def http_args(connections, epoll=True):
        import argparse
        return argparse.Namespace(plain=False, server_threads=1, wrk_threads=1, seconds=3, connections=connections,
                                  epoll=epoll)

    @staticmethod
    def server(rps, cpu_us):
        return {"rps": rps, "p99_ms": 1.0, "p50_ms": 0.5, "cpu_us_per_request": cpu_us, "errors": ""}

    def http_results(self):
        return {"corio-io_uring": self.server(150e3, 5.0), "asio-io_uring": self.server(120e3, 8.0),
                "corio-epoll": self.server(110e3, 8.0), "asio-epoll": self.server(130e3, 10.0),
                "go": self.server(100e3, 16.0)}

    def test_http_compare_writes_the_epoll_rows_at_the_first_connection_count(self):
        results = self.http_results()
        rows = http_compare.rows_for(self.http_args([64, 1000]), 64, results, 5.0, "pinned")
        self.assertEqual([r["benchmark"] for r in rows],
                         ["http_hello", "http_hello_cpu", "http_hello_epoll_cpu", "http_hello_epoll_cost"])
        head, cpu, vs_asio, cost = compare.rows_from_script_output({"rows": rows}, "http_compare.py")
        # The headline compares corio on io_uring with the best peer: here Asio's epoll reactor.
        self.assertEqual((head.corio, head.peer, head.ratio), (150e3, "asio-epoll", 150e3 / 130e3))
        # Issue 14's 0.6x Asio's CPU per request at the first count: 1.6x its requests per
        # CPU second misses 1/0.6.
        self.assertEqual((cpu.peer, cpu.ratio, cpu.target_ratio, cpu.result), ("asio-io_uring", 1.6, 1 / 0.6, "MISS"))
        self.assertEqual((vs_asio.work, vs_asio.corio, vs_asio.peer, vs_asio.peer_value, vs_asio.ratio,
                          vs_asio.result),
                         ("HTTP hello, epoll backend vs Asio epoll, requests per CPU second (wrk, 64 conns)",
                          125e3, "asio-epoll", 100e3, 1.25, "PASS"))
        self.assertEqual((cost.peer, cost.ratio, cost.target_ratio, cost.result), ("corio-io_uring", 0.625, None, "-"))
        self.assertEqual((vs_asio.extra["asio_epoll"], vs_asio.extra["asio_epoll_cpu_us_per_request"],
                          vs_asio.extra["corio_epoll_cpu_us_per_request"]), (130e3, 10.0, 8.0))

    def test_http_compare_epoll_row_is_na_without_the_asio_epoll_peer(self):
        results = self.http_results()
        del results["asio-epoll"]
        rows = http_compare.rows_for(self.http_args([64]), 64, results, 5.0, "pinned")
        self.assertEqual([r["benchmark"] for r in rows], ["http_hello", "http_hello_epoll_cpu", "http_hello_epoll_cost"])
        vs_asio = compare.rows_from_script_output({"rows": rows}, "http_compare.py")[1]
        self.assertEqual((vs_asio.corio, vs_asio.peer_value, vs_asio.result, vs_asio.missing),
                         (125e3, None, "n/a", ["asio-epoll"]))
        self.assertRegex(compare.result_text(vs_asio), r"^n/a \(asio-epoll not measured\)$")

    def test_http_compare_writes_no_epoll_row_without_epoll_or_past_the_first_count(self):
        results = {k: v for k, v in self.http_results().items() if "epoll" not in k}
        rows = http_compare.rows_for(self.http_args([64, 1000, 5000]), 1000, results, 5.0, "pinned")
        self.assertEqual([r["benchmark"] for r in rows], ["http_hello_cpu"])
        self.assertEqual(rows[0]["target"], 1.0)  # below Asio's past the first count

    def test_http_compare_rates_cpu_growth_at_the_last_count_against_the_first(self):
        results = {k: v for k, v in self.http_results().items() if "epoll" not in k}
        results["corio-io_uring"] = self.server(150e3, 6.5)  # 5.0 us per request at 64: 1.3x growth
        rows = http_compare.rows_for(self.http_args([64, 1000, 5000]), 5000, results, 5.0, "pinned")
        self.assertEqual([r["benchmark"] for r in rows], ["http_hello_cpu", "http_hello_cpu_growth"])
        growth = compare.rows_from_script_output({"rows": rows}, "http_compare.py")[1]
        self.assertEqual((growth.work, growth.peer, growth.peer_value),
                         ("HTTP hello, corio's requests per CPU second at 5000 vs 64 conns (CPU per request "
                          "growth <= 1.2x)", "corio at 64 conns", 200e3))
        self.assertAlmostEqual(growth.ratio, 5.0 / 6.5)
        self.assertEqual((growth.target_ratio, growth.result), (1 / 1.2, "MISS"))
        results["corio-io_uring"] = self.server(150e3, 5.9)  # 1.18x growth: within 1.2x
        rows = http_compare.rows_for(self.http_args([64, 5000]), 5000, results, 5.0, "pinned")
        self.assertEqual(compare.rows_from_script_output({"rows": rows}, "http_compare.py")[1].result, "PASS")
        rows = http_compare.rows_for(self.http_args([64], epoll=False), 64, results, 5.0, "pinned")
        self.assertEqual([r["benchmark"] for r in rows], ["http_hello"])

    def test_http_compare_rows_are_na_for_a_corio_server_that_failed(self):
        results = {k: v for k, v in self.http_results().items() if not k.startswith("corio-")}
        rows = http_compare.rows_for(self.http_args([64, 1000]), 64, results, None, "pinned")
        got = compare.rows_from_script_output({"rows": rows}, "http_compare.py")
        self.assertEqual([(r.benchmark, r.corio, r.result) for r in got],
                         [("http_hello", None, "n/a"), ("http_hello_cpu", None, "n/a"),
                          ("http_hello_epoll_cpu", None, "n/a"), ("http_hello_epoll_cost", None, "n/a")])
        self.assertEqual((got[0].peer, got[2].peer_value), ("asio-epoll", 100e3))
        self.assertNotIn("cpu_growth", rows[1]["extra"])

    def test_the_chart_draws_the_epoll_rows(self):
        rows = list(self.echo_rows(compare.summarize.collect_peers(self.ECHO)).values())
        rows += compare.rows_from_script_output(
            {"rows": http_compare.rows_for(self.http_args([64]), 64, self.http_results(), 5.0, "p")}, "h")
        machine = {"cpu": "c", "cores": 2, "kernel": "6.18", "compiler": "g++", "date": "d"}
        root = ET.fromstring(compare.render_svg(rows, machine))
        ns = "{http://www.w3.org/2000/svg}"
        texts = [t.text for t in root.iter(ns + "text")]
        self.assertIn("HTTP hello, epoll backend vs Asio epoll, requests per CPU second (wrk, 64 conns)", texts)
        self.assertIn("1.25x PASS, 125.0 k req/CPU-s", texts)
        self.assertEqual(len([r for r in root.iter(ns + "rect")]) - 1, len(rows))
        # Long names and notes fit the picture at 7 px a character (they were cut at its edges).
        width = float(root.get("width"))
        for t in root.iter(ns + "text"):
            left = float(t.get("x")) - (7 * len(t.text) if t.get("text-anchor") == "end" else 0)
            self.assertGreaterEqual(left, 0, t.text)
            if t.get("text-anchor") is None:
                self.assertLessEqual(float(t.get("x")) + 7 * len(t.text), width, t.text)


class SalvageTest(unittest.TestCase):
    def test_the_rows_a_crashed_program_finished_are_kept(self):
        import tempfile
        text = ('{"context": {"num_cpus": 2}, "benchmarks": [\n'
                '  {"name": "BM_a", "run_type": "iteration", "items_per_second": 5.0},\n'
                '  {"name": "BM_b", "run_type": "iteration", "items_per_second": 7.0},\n'
                '  {"name": "BM_c", "run_ty')
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(text)
        try:
            doc = compare.salvage_benchmark_json(f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(compare.summarize.collect_benchmarks(doc), {"BM_a": 5.0, "BM_b": 7.0})


class ScriptRowsTest(unittest.TestCase):
    def test_rows_from_a_compare_script_keep_their_fields_and_use_target_as_a_ratio(self):
        doc = {"rows": [
            {"work": "HTTP hello", "benchmark": "http_corio", "corio": 240000, "unit": "req/s",
             "peer": "asio", "peer_value": 200000, "target": 1.2, "extra": {"connections": 64}},
            {"work": "KV get", "benchmark": "kv_corio", "corio": None, "unit": "ops/s",
             "peer": "redis", "peer_value": 100000, "target": 1.0, "extra": None},
            "not a row"]}
        http, kv = compare.rows_from_script_output(doc, "x_compare.py")
        self.assertEqual((http.work, http.unit, http.peer, http.ratio, http.result),
                         ("HTTP hello", "req/s", "asio", 1.2, "PASS"))
        self.assertEqual(http.extra, {"connections": 64, "source": "x_compare.py"})
        self.assertEqual((kv.result, kv.missing), ("n/a", ["kv_corio"]))

    def test_script_arguments_follow_what_the_script_offers_in_its_help(self):
        positional = ("usage: x.py [-h] [--requests REQUESTS] [--json OUT]\n"
                      "                     builddir\n\npositional arguments:\n  builddir\n")
        self.assertEqual(compare.script_args_from_help(positional, "o.json", "/b", full=False),
                         ["/b", "--json", "o.json", "--requests", "500000"])
        self.assertEqual(compare.script_args_from_help(positional, "o.json", "/b", full=True),
                         ["/b", "--json", "o.json"])
        option = "usage: y.py [-h] [--builddir BUILDDIR] [--seconds SECONDS] [--json OUT]\n"
        self.assertEqual(compare.script_args_from_help(option, "o.json", "/b", full=True),
                         ["--json", "o.json", "--builddir", "/b", "--seconds", "10"])
        self.assertEqual(compare.script_args_from_help("", "o.json", "/b", full=False),
                         ["--json", "o.json"])
        http = "usage: h.py [-h] [--builddir BUILDDIR] [--seconds SECONDS] [--connections CONNECTIONS]\n"
        self.assertEqual(compare.script_args_from_help(http, "o.json", "/b", full=False),
                         ["--json", "o.json", "--builddir", "/b", "--seconds", "3",
                          "--connections", "64,1000,5000"])

    def test_an_empty_document_gives_no_rows(self):
        self.assertEqual(compare.rows_from_script_output({}, "s"), [])


class OutputTest(unittest.TestCase):
    def rows(self):
        targets = [Target("ratio row", "BM_a", ("p",), ratio=2),
                   Target("floor row", "BM_b", ("q",), floor=1e6),
                   Target("missing <row>", "BM_none", ("p",), ratio=3)]
        return compare.build_rows(targets, {"BM_a": 3e8, "p": 1e8, "BM_b": 5e5, "q": 1e4})

    def test_the_table_has_one_line_per_row_with_figures_ratio_target_and_result(self):
        lines = compare.format_table(self.rows()).splitlines()
        self.assertEqual(len(lines), 4)
        self.assertEqual(lines[0].split()[:3], ["work", "corio", "best"])
        self.assertRegex(lines[1], r"^ratio row\s+300\.0 M/s\s+p\s+100\.0 M/s\s+3\.00x\s+>= 2x\s+PASS$")
        self.assertRegex(lines[2], r"^floor row\s+500\.0 k/s\s+q\s+10\.0 k/s\s+50\.00x\s+>= 1\.0 M/s\s+MISS$")
        self.assertRegex(lines[3], r"n/a\s+>= 3x\s+n/a \(BM_none not measured\)$")

    def test_the_chart_is_well_formed_svg_with_one_bar_per_measured_row(self):
        machine = {"cpu": "CPU & co", "cores": 2, "kernel": "6.1", "compiler": "g++", "date": "d"}
        svg = compare.render_svg(self.rows(), machine)
        root = ET.fromstring(svg)
        ns = "{http://www.w3.org/2000/svg}"
        fills = [r.get("fill") for r in root.iter(ns + "rect")][1:]  # [0] is the background
        self.assertEqual(fills, ["#2e9e44", "#d03b3b"])
        texts = [t.text for t in root.iter(ns + "text")]
        self.assertIn("missing <row>", texts)
        self.assertIn("n/a", texts)


class SummarizeTest(unittest.TestCase):
    def test_summarize_judges_a_stored_run_by_compares_targets(self):
        import json
        import subprocess
        import tempfile
        doc = {"benchmarks": [{"name": "BM_spsc_ring_8B", "items_per_second": 1e6},
                              {"name": "BM_raw_spsc_spin", "items_per_second": 1e7}]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(doc, f)
        try:
            run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "summarize.py"),
                                  f.name, "--strict"], capture_output=True, text=True, timeout=60)
        finally:
            os.unlink(f.name)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertRegex(run.stdout, r"(?m)^ipc spsc ring, 8 B vs raw ring\s.*0\.10x\s+>= 0\.5x\s+MISS$")


if __name__ == "__main__":
    unittest.main()
