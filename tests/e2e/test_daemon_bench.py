"""End-to-end smoke of bench/daemon_bench.py (issue 17's daemon benchmark), so that it cannot rot.

Runs the bench as `./dev bench` does, in its QUICK shape and smaller still (100 and 1,000
Services, 3 updates, a burst of 20, a 3 s series with --sync-period 1s), against the svcproxy under
test, then checks its JSON: every field bench/results_table.py reads is there and a number; every
update was seen end to end (the new pod answered through the ClusterIP) and daemon-side (a sync
line); the sampled bulk VIPs answered from the bulk pod after the start sync (the daemon
programmed what the fixture listed); and the results table renders a row for every daemon goal.
No number is judged: the bench measures, it does not pass or fail on speed.

Needs root (network namespaces); skipped otherwise. About 30 s.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_daemon_bench (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402

BENCH = sb.SOURCE_DIR / "bench" / "daemon_bench.py"
TABLE = sb.SOURCE_DIR / "bench" / "results_table.py"
SIZES = (100, 1000)

# What every size's record holds (dotted paths); results_table.py and the goals read these.
SIZE_FIELDS = [
    "services", "endpoints_per_service", "rss_mib", "rss_mib_after",
    "cold_start.total_s", "cold_start.from_list_s", "cold_start.list_served_s", "cold_start.start_sync_us",
    "cold_start.sampled_vips", "cold_start.sampled_vips_answering",
    "events.n", "events.missed", "events.daemon_field", "events.cpu_s_per_1000_changes",
    "events.e2e_ms.p50", "events.e2e_ms.p99", "events.e2e_ms.max",
    "events.answered_ms.p50", "events.daemon_ms.p50", "events.daemon_ms.p99",
    "burst.changes", "burst.syncs", "burst.cpu_s", "burst.cpu_s_per_1000_changes", "burst.settled_s",
]
FULL_SYNC_FIELDS = [
    "services", "sync_period", "cold_start.from_list_s", "events.n", "events.missed", "events.e2e_ms.p99",
    "events.daemon_ms.p99", "events_during_full_sync.n", "full_syncs.n", "periodic_syncs", "syncs",
]
GOAL_KEYS = [
    "e2e_ms_ratio_1000", "daemon_ms_ratio_1000",
    "daemon_p99_ms_largest", "one_change_ms_largest", "cold_start_s_largest", "rss_mib_largest",
    "full_sync_p99_ms", "cpu_flatness_burst", "cpu_flatness_events",
]


def lookup(record: dict, path: str):
    for key in path.split("."):
        if not isinstance(record, dict) or key not in record:
            raise KeyError(path)
        record = record[key]
    return record


class DaemonBenchSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        sb.require_root_and_tools(sb.SVCPROXY)
        cls.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-daemon-bench-"))
        results = cls.tmp / "results"
        argv = [sys.executable, str(BENCH), "--quick", "--sizes", ",".join(map(str, SIZES)), "--events", "3",
                "--burst", "20", "--full-sync-seconds", "3", "--out", str(cls.tmp / "out"),
                "--results", str(results)]
        env = dict(os.environ, SVCPROXY_BIN=sb.SVCPROXY)
        cls.run_result = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)
        if cls.run_result.returncode != 0:
            raise AssertionError(f"daemon_bench exited {cls.run_result.returncode}:\n{cls.run_result.stderr[-3000:]}")
        files = sorted(results.glob("daemon-*.json"))
        if len(files) != 1:
            raise AssertionError(f"expected one results file in {results}, found {files}")
        cls.path = files[0]
        cls.results = json.loads(files[0].read_text())

    @classmethod
    def tearDownClass(cls):
        import shutil
        shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)

    def test_header_says_how_it_was_made(self):
        for key in ("bench", "date", "commit", "command", "machine", "wall_s", "endpoints"):
            self.assertIn(key, self.results)
        self.assertEqual(self.results["bench"], "daemon")
        self.assertIn("--quick", self.results["command"])
        self.assertLess(self.results["wall_s"], 60, "the quick shape must stay short")

    def test_every_size_has_every_field(self):
        self.assertEqual([s["services"] for s in self.results["sizes"]], list(SIZES))
        for size in self.results["sizes"]:
            for path in SIZE_FIELDS:
                with self.subTest(services=size["services"], field=path):
                    value = lookup(size, path)
                    self.assertIsNotNone(value)
                    if path != "events.daemon_field":
                        self.assertIsInstance(value, (int, float))
                        self.assertGreaterEqual(value, 0)

    def test_every_update_was_seen_end_to_end_and_in_the_daemon(self):
        for size in self.results["sizes"]:
            events = size["events"]
            self.assertEqual((events["n"], events["missed"]), (3, 0), size["services"])
            self.assertEqual(events["e2e_ms"]["n"], 3)
            self.assertEqual(events["daemon_ms"]["n"], 3)
            self.assertIn(events["daemon_field"], ("event_to_commit_us", "duration_us"))
            self.assertGreaterEqual(size["burst"]["syncs"], 1)

    def test_the_start_sync_programmed_the_listed_services(self):
        for size in self.results["sizes"]:
            cold = size["cold_start"]
            self.assertGreater(cold["sampled_vips"], 0)
            self.assertEqual(cold["sampled_vips_answering"], cold["sampled_vips"], size["services"])
            self.assertLessEqual(cold["from_list_s"], cold["total_s"])

    def test_full_sync_series(self):
        full = self.results["full_sync"]
        for path in FULL_SYNC_FIELDS:
            with self.subTest(field=path):
                self.assertIsNotNone(lookup(full, path))
        self.assertEqual(full["services"], SIZES[-1])
        self.assertGreaterEqual(full["events"]["n"], 3)
        self.assertEqual(full["events"]["missed"], 0)
        # No count of periodic or full syncs is asserted: issue 17 makes the periodic sync partial
        # (a no-op when nothing changed) and may log it differently.

    def test_goals_are_all_there(self):
        keys = [g["key"] for g in self.results["goals"]]
        self.assertEqual(sorted(keys), sorted(GOAL_KEYS))
        for goal in self.results["goals"]:
            with self.subTest(goal=goal["key"]):
                self.assertIsInstance(goal["value"], (int, float))
                self.assertIsInstance(goal["met"], bool)

    def test_results_table_renders_every_daemon_goal(self):
        out = subprocess.run([sys.executable, str(TABLE), "--print", "--results", str(self.path.parent)],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "daemon_bench.py" in line]
        self.assertEqual(len(rows), len(GOAL_KEYS), out.stdout)
        for row in rows:
            self.assertNotIn("| - |", row)


if __name__ == "__main__":
    unittest.main()
