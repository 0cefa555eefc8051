"""End-to-end: the `svcproxy loadtest --html` page in headless Chromium
(Debian's `chromium`, in a network namespace of its own, see chromium.py).

  - The page of a hand-built report with every part (violations, endpoint
    changes, warnings, a hostile endpoint name; tests/loadtest/sample_report.h,
    written by build/tests/loadtest_html_sample) renders: no console message
    at all, the three SVG charts and their elements are in the DOM Chromium
    built, the hostile name made no element, and the screenshot shows the
    charts' fill colours (bars, the violation, the error bars).
  - A real run: `svcproxy loadtest --mode request --html` from the external
    client namespace through a ClusterIP (nftables rules from `run --once`)
    of three `svcproxy echo` pods; the page renders the same way and shows
    the three endpoints of the run's JSON report.
  - `--html` naming a file that cannot be written exits 2 before the run.
  - The console check can fail: a page with a refused external image and a
    bad SVG attribute yields exactly those console errors.

Screenshots are kept under build/test-artifacts/loadtest_html/ (the path is
printed). Needs root (unshare -n) and chromium; skipped otherwise.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_loadtest_html (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chromium  # noqa: E402
import sandbox as sb  # noqa: E402
from sandbox import SVCPROXY, Pod  # noqa: E402

BUILD = Path(SVCPROXY).resolve().parent
SAMPLE = BUILD / "tests" / "loadtest_html_sample"
ARTIFACTS = BUILD / "test-artifacts" / "loadtest_html"

# Fill colours of the page's CSS (loadtest/html_report.cc): a filled <rect>
# keeps its exact colour inside, whatever the antialiasing at its edges.
BAR = (0x64, 0xB5, 0xF6)
VIOLATION = (0xC6, 0x28, 0x28)
ERRORS = (0xE5, 0x39, 0x35)
WEB = "10.96.5.10"  # TCP 80 -> p1, p2, p3 port 8080


def setUpModule() -> None:
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root: chromium runs in a network namespace of its own")
    if not chromium.available():
        raise unittest.SkipTest("chromium not installed (./dev deps installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def svg_tags(dom: str, svg_id: str) -> str:
    """The markup of <svg id=svg_id> in a serialized DOM."""
    m = re.search(rf'<svg id="{svg_id}".*?</svg>', dom, re.S)
    if not m:
        raise AssertionError(f"no <svg id={svg_id}> in the DOM")
    return m.group(0)


class SamplePage(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if not os.access(SAMPLE, os.X_OK):
            raise RuntimeError(f"{SAMPLE} not built (cmake --build build --target loadtest_html_sample)")
        cls.page = ARTIFACTS / "sample.html"
        subprocess.run([str(SAMPLE), str(cls.page)], check=True, timeout=30)
        cls.loaded = chromium.load(cls.page, ARTIFACTS / "sample.png")
        print(f"\nscreenshot: {cls.loaded.screenshot}", file=sys.stderr)

    def test_no_console_messages(self):
        self.assertEqual(self.loaded.console, [])

    def test_charts_are_in_the_dom(self):
        dom = self.loaded.dom
        curve = svg_tags(dom, "latency-curve")
        self.assertEqual(curve.count('<polyline class="curve"'), 1)
        self.assertEqual(curve.count('class="uncorrected"'), 5)  # p50, p90, p99, p99.9 + the legend
        bars = svg_tags(dom, "endpoint-bars")
        self.assertEqual(bars.count('<g class="endpoint">'), 4)
        self.assertEqual(bars.count('class="bar violation"'), 2)  # the violating endpoint + the legend
        timeline = svg_tags(dom, "timeline")
        self.assertEqual(timeline.count('<polyline class="rps"'), 1)
        self.assertEqual(timeline.count('<polyline class="p99"'), 1)
        self.assertEqual(timeline.count('<g class="change">'), 2)
        self.assertIn('id="violations"', dom)

    def test_hostile_name_is_text(self):
        # The endpoint name "<img src=x onerror=...>" must stay text: no <img> element in the parsed DOM.
        self.assertNotIn("<img", self.loaded.dom)
        self.assertIn("&lt;img src=x onerror=alert(1)&gt;", self.loaded.dom)

    def test_screenshot_shows_the_charts(self):
        counts = chromium.color_counts(self.loaded.screenshot, [BAR, VIOLATION, ERRORS])
        self.assertGreater(counts[BAR], 5000, counts)         # three ~33% bars
        self.assertGreater(counts[VIOLATION], 50, counts)     # the violating endpoint's bar, label, table row
        self.assertGreater(counts[ERRORS], 200, counts)       # the error bar at 30 s


class RealRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        sb.require_root_and_tools(SVCPROXY)
        cls.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-loadtest-html-"))
        cls.box = None
        try:
            cls.box, _ = sb.start_pods_sandbox(SVCPROXY, [Pod("p1", 1), Pod("p2", 2), Pod("p3", 3)], [(8080, "tcp")])
            manifests = cls.tmp / "manifests"
            manifests.mkdir()
            (manifests / "web.yaml").write_text(sb.to_yaml([
                sb.service("web", [WEB], [{"name": "http", "port": 80, "targetPort": 8080}]),
                sb.endpoint_slice("web", "abcde", 4, [{"pod": p} for p in cls.box.pods.values()],
                                  [{"name": "http", "port": 8080, "protocol": "TCP"}])]))
            cls.box.svcproxy_in(cls.box.node, ["run", "--once", "--manifests", str(manifests), *sb.NODE_FLAGS])
            page, report = ARTIFACTS / "run.html", cls.tmp / "run.json"
            cls.box.svcproxy_in(cls.box.ext, ["loadtest", f"{WEB}:80", "--mode", "request", "--requests", "3000",
                                              "--concurrency", "16", "--quiet", "--html", str(page),
                                              "--json", str(report)])
            cls.report = json.loads(report.read_text())
            cls.loaded = chromium.load(page, ARTIFACTS / "run.png")
            print(f"\nscreenshot: {cls.loaded.screenshot}", file=sys.stderr)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.box:
            cls.box.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_the_run_answered_from_three_endpoints(self):
        self.assertEqual(self.report["requests"], 3000)
        self.assertEqual(len(self.report["endpoints"]), 3, self.report["endpoints"])

    def test_no_console_messages(self):
        self.assertEqual(self.loaded.console, [])

    def test_charts_show_the_run(self):
        dom = self.loaded.dom
        self.assertEqual(svg_tags(dom, "latency-curve").count('<polyline class="curve"'), 1)
        bars = svg_tags(dom, "endpoint-bars")
        self.assertEqual(bars.count('<g class="endpoint">'), 3)
        for name in self.report["endpoints"]:
            self.assertIn(name, bars)
        self.assertEqual(svg_tags(dom, "timeline").count('<polyline class="rps"'), 1)
        self.assertIn("3,000", dom)  # the headline request count

    def test_screenshot_shows_the_bars(self):
        counts = chromium.color_counts(self.loaded.screenshot, [BAR])
        self.assertGreater(counts[BAR], 3000, counts)


class HtmlFlag(unittest.TestCase):
    def test_unwritable_file_exits_2_before_the_run_naming_the_flag(self):
        r = subprocess.run([SVCPROXY, "loadtest", "127.0.0.1:9", "--requests", "1", "--quiet",
                            "--html", "/nonexistent-dir/report.html"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("--html", r.stderr)
        self.assertEqual(r.stdout, "")  # no summary: it never ran


class ConsoleCheckCanFail(unittest.TestCase):
    def test_refused_load_and_bad_svg_attribute_are_reported(self):
        with tempfile.TemporaryDirectory(prefix="loadtest-html-") as tmp:
            page = Path(tmp) / "bad.html"
            page.write_text('<!DOCTYPE html><meta charset="utf-8">'
                            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
                            '<img src="http://192.0.2.1/x.png"><svg><circle r="nan"/></svg>')
            loaded = chromium.load(page, Path(tmp) / "bad.png", width=400, height=300)
        self.assertEqual(len(set(loaded.console)), 2, loaded.console)  # each once per load (screenshot, DOM)
        self.assertTrue(any("Content Security Policy" in m for m in loaded.console), loaded.console)
        self.assertTrue(any("<circle> attribute r" in m for m in loaded.console), loaded.console)


if __name__ == "__main__":
    unittest.main()
