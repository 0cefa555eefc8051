"""Smoke test of `./dev demo cluster` (examples/demo_cluster.py): the demo
runs to the end against the real control plane, with kube-proxy and
svcproxy side by side, exits 0, prints the story's key lines, and leaves
nothing behind (no lab namespace, no process, no objects of its own; the
control plane stopped again unless it was already up).

A subprocess, as a user runs it: its own checks (each claim it prints is
checked; any failure is exit status 1) are what this test relies on; here
only the exit status, the key lines and the teardown are asserted.

Needs root, openssl and the cluster binaries (tests/cluster/build.sh);
skipped with the reason otherwise.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_demo (from tests/e2e).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402

DEMO = SOURCE_DIR / "examples" / "demo_cluster.py"
BUDGET = 300  # seconds; about 50 s on an idle machine (cluster start included)


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    try:
        lab.build_binaries()
    except lab.ClusterError as e:
        raise unittest.SkipTest(f"the cluster binaries cannot be built here: {e}") from e


class TestDemoCluster(unittest.TestCase):

    def test_demo_runs_to_the_end_and_cleans_up(self):
        was_up = lab.Cluster().is_up()
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(DEMO), "--svcproxy", SVCPROXY, "--requests", "150"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BUDGET)
        took = time.monotonic() - started
        out = re.sub(r"\033\[[0-9;]*m", "", result.stdout)
        print(f"\n{out}\n(demo: exit {result.returncode} after {took:.1f} s)", file=sys.stderr)
        self.assertEqual(result.returncode, 0, f"demo failed:\n{out[-3000:]}\n{result.stderr[-3000:]}")
        for line in ("== Side by side", "demo cluster: all checks passed",
                     "ok    both proxies: all 150 answered, by every ready pod",
                     "ok    kube-proxy: no connection begun after its sync reached",
                     "ok    svcproxy: no connection begun after its sync reached",
                     "ok    both proxies: web-5d4f8b9c6-8mzt7 got nothing"):
            self.assertIn(line, out)
        # The EndpointSlice change it shows: all ready, then the victim not ready.
        self.assertRegex(out, r"web-\w+\s+10\.244\.\S+\s+\S+\s+true,true,true")
        self.assertRegex(out, r"web-\w+\s+10\.244\.\S+\s+\S+\s+(true,)*false(,true)*\n")
        # Side-by-side rows for both proxies.
        for row in ("process start -> first full sync", "probe failed -> proxy synced",
                    "probe failed -> last connection to reach the pod", "RSS now"):
            self.assertRegex(out, rf"{re.escape(row)}\s+\S+ \S+\s+\S+ \S+")

        pid = re.search(r"namespace demo-(\d+)", out).group(1)
        left = [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith(f"svp-{pid}")]
        self.assertEqual(left, [], "the demo left lab namespaces")
        self.assertEqual(lab.Cluster().is_up(), was_up, "the demo changed whether the control plane runs")
        if was_up:
            objects = lab.Cluster().kubectl("get", "services,endpointslices,pods", "-n", f"demo-{pid}",
                                            "-o", "name").stdout
            self.assertEqual(objects.strip(), "", "the demo left objects in the API server")


if __name__ == "__main__":
    unittest.main()
