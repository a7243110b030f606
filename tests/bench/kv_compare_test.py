#!/usr/bin/env python3
"""bench/kv_compare.py's rows from made-up runs (no server is started): the req/s rows, the
requests per server CPU second rows of SET and GET with issue 14's target (CPU per request
<= 0.7x redis-server's, so corio / redis >= 1.43), and how bench/compare.py judges them."""
import contextlib
import importlib.util
import io
import os
import sys
import types
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))  # kv_compare imports benchlib from there


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "bench", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


kv_compare = load("kv_compare")
compare = load("compare")

ARGS = types.SimpleNamespace(idle_poll=50, clients=50, pipeline=16, requests=1000, keyspace=100000)


def run(scale: float, per_cpu: dict) -> dict:
    """One measure() result: every test at `scale` req/s, per-CPU figures from per_cpu."""
    r = {t: scale for t in kv_compare.TESTS}
    r.update({t + "_per_cpu_s": per_cpu.get(t, scale) for t in kv_compare.TESTS})
    return r


def rows_for(runs: dict) -> list:
    with contextlib.redirect_stdout(io.StringIO()):
        return kv_compare.build_rows(runs, ARGS, "0")


class KvRowsTest(unittest.TestCase):
    def setUp(self):
        self.runs = {
            "kv_1": [run(900, {"SET": 2.0e6, "GET": 1.0e6}), run(1000, {"SET": 1.5e6, "GET": 1.2e6})],
            "redis": [run(800, {"SET": 1.0e6, "GET": 1.0e6}), run(700, {"SET": 0.9e6, "GET": 0.8e6})],
            "kv_2": [run(500, {}), run(600, {})],
            # measure() of SET and GET only, against kv_server --idle-poll 0.
            "kv_1_nopoll": [{"SET": 800, "GET": 700, "SET_per_cpu_s": 2.5e6, "GET_per_cpu_s": 1.6e6},
                            {"SET": 900, "GET": 750, "SET_per_cpu_s": 2.2e6, "GET_per_cpu_s": 1.3e6}],
        }
        self.rows = rows_for(self.runs)

    def test_there_are_three_request_rate_rows_then_cpu_rows_for_set_and_get_polling_and_not(self):
        self.assertEqual([r["benchmark"] for r in self.rows],
                         ["kv_ping", "kv_set", "kv_get", "kv_set_cpu", "kv_get_cpu",
                          "kv_set_cpu_nopoll", "kv_get_cpu_nopoll"])
        self.assertEqual([r["work"] for r in self.rows[3:]],
                         ["Redis SET, requests per server CPU second (redis-benchmark -P 16)",
                          "Redis GET, requests per server CPU second (redis-benchmark -P 16)",
                          "Redis SET, requests per server CPU second, kv_server not polling (--idle-poll 0)"
                          " (redis-benchmark -P 16)",
                          "Redis GET, requests per server CPU second, kv_server not polling (--idle-poll 0)"
                          " (redis-benchmark -P 16)"])

    def test_a_nopoll_row_holds_the_best_of_the_idle_poll_0_runs_against_the_same_redis_figure(self):
        get_nopoll = self.rows[6]
        self.assertEqual((get_nopoll["corio"], get_nopoll["peer_value"], get_nopoll["unit"], get_nopoll["target"]),
                         (1.6e6, 1.0e6, "req/CPU-s", 1.43))
        self.assertEqual(get_nopoll["extra"]["median"]["corio"], 1.45e6)
        self.assertEqual(get_nopoll["extra"]["runs"]["kv_1_nopoll"], [1.6e6, 1.3e6])
        self.assertEqual(get_nopoll["extra"]["runs"]["kv_1"], [1.0e6, 1.2e6])
        self.assertAlmostEqual(get_nopoll["extra"]["corio_cpu_us_per_request"], 0.625)
        self.assertEqual(get_nopoll["extra"]["kv_server_options"], "1 shard: --idle-poll 0 (this row's corio figure)")
        # The polling rows still report the polling server.
        self.assertEqual(self.rows[4]["corio"], 1.2e6)
        judged = compare.rows_from_script_output({"rows": self.rows}, "kv_compare.py")
        by_name = {r.benchmark: r for r in judged}
        self.assertEqual((by_name["kv_get_cpu_nopoll"].ratio, by_name["kv_get_cpu_nopoll"].result), (1.6, "PASS"))
        self.assertEqual((by_name["kv_set_cpu_nopoll"].ratio, by_name["kv_set_cpu_nopoll"].result), (2.5, "PASS"))

    def test_a_cpu_row_holds_the_best_requests_per_cpu_second_of_each_server_and_target_1_43(self):
        set_cpu = self.rows[3]
        self.assertEqual((set_cpu["corio"], set_cpu["peer"], set_cpu["peer_value"], set_cpu["unit"],
                          set_cpu["target"]), (2.0e6, "redis-server", 1.0e6, "req/CPU-s", 1.43))
        self.assertEqual(set_cpu["extra"]["median"], {"corio": 1.75e6, "redis": 0.95e6, "kv_server_2_shards": 550})
        self.assertEqual(set_cpu["extra"]["runs"]["kv_1"], [2.0e6, 1.5e6])
        self.assertAlmostEqual(set_cpu["extra"]["cpu_per_request_ratio"], 0.5)
        self.assertAlmostEqual(set_cpu["extra"]["corio_cpu_us_per_request"], 0.5)
        self.assertEqual(set_cpu["extra"]["kv_server_options"], "1 shard: --idle-poll 50; 2 shards: none")

    def test_the_request_rate_rows_are_unchanged_best_of_runs_with_target_1(self):
        get = self.rows[2]
        self.assertEqual((get["corio"], get["peer_value"], get["unit"], get["target"]), (1000, 800, "req/s", 1.0))
        self.assertEqual(get["extra"]["corio_per_cpu_second"], 1.2e6)

    def test_compare_passes_a_cpu_row_at_1_43_and_misses_it_below(self):
        judged = compare.rows_from_script_output({"rows": self.rows}, "kv_compare.py")
        by_name = {r.benchmark: r for r in judged}
        self.assertEqual((by_name["kv_set_cpu"].ratio, by_name["kv_set_cpu"].result), (2.0, "PASS"))
        self.assertEqual((by_name["kv_get_cpu"].ratio, by_name["kv_get_cpu"].result), (1.2, "MISS"))
        self.assertEqual(by_name["kv_get_cpu"].unit, "req/CPU-s")
        self.runs["kv_1"][0]["GET_per_cpu_s"] = 1.43e6  # exactly the target ratio passes
        judged = compare.rows_from_script_output({"rows": rows_for(self.runs)}, "kv_compare.py")
        self.assertEqual([r.result for r in judged if r.benchmark == "kv_get_cpu"], ["PASS"])


if __name__ == "__main__":
    unittest.main()
