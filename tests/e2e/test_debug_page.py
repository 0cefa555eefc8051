"""End-to-end: the daemon's /debug/ page, /debug/state and `svcproxy status`
against a daemon in a lab (`svcproxy run --manifests DIR` in the node
namespace, two echo pods behind a ClusterIP, real traffic through it).

  - The page in headless Chromium (Debian's `chromium`, run inside the node
    namespace with `ip netns exec`, its sandbox and background networking
    disabled; the page is on the node's loopback metrics address): it shows
    the lab's service and both endpoints ready, its script ran (it fetched
    /debug/state and re-rendered: body[data-refreshed]), no console message
    at all (a refused inline script or fetch would be one: the page's CSP
    allows only its own nonce'd parts and its own origin).
  - Marking a pod unready (its EndpointSlice edited in the manifests) turns
    its row unready after a refresh, in the page and in /debug/state, and
    traffic goes to the ready pod only.
  - Without JavaScript, ?filter= filters on the server.
  - `svcproxy status` prints the services from the daemon, `svcproxy status
    --live` from the kernel's tables.

Screenshots are kept under build/test-artifacts/debug_page/ (the path is
printed). Needs root; the Chromium test is skipped without chromium.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_debug_page (from tests/e2e).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import unittest
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chromium  # noqa: E402
import sandbox as sb  # noqa: E402
from manifest_dir import Manifests, node_object  # noqa: E402
from sandbox import SVCPROXY, Pod, endpoint_slice, service  # noqa: E402

NS = "e2e"
PODS = [Pod("p1", 1), Pod("p2", 2)]
WEB = "10.96.7.10"  # TCP 80 -> p1, p2 port 8080
METRICS = "127.0.0.1:10249"
ARTIFACTS = Path(SVCPROXY).resolve().parent / "test-artifacts" / "debug_page"


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None


def setUpModule() -> None:
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-debug-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(8080, "tcp")])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule() -> None:
    sb.close_env(Env)


def web_objects(pods: dict[str, Pod], p2_ready: bool = True) -> list[dict]:
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    endpoints = [{"pod": pods["p1"]}, {"pod": pods["p2"], "ready": p2_ready, "serving": p2_ready,
                                       "terminating": False}]
    return [service("web", [WEB], [{"name": "http", "port": 80, "targetPort": 8080}], namespace=NS),
            endpoint_slice("web", "abcde", 4, endpoints, http, namespace=NS)]


class DebugPageTest(unittest.TestCase):
    def setUp(self) -> None:
        self.box = Env.box
        self.pods = self.box.pods  # name -> Pod
        self.m = Manifests(Env.tmp / self.id().rpartition(".")[2])
        self.m.put("nodes.yaml", [node_object()])
        self.m.put("web.yaml", web_objects(self.pods))
        self.daemon = self.box.start_daemon(self.m.dir,
                                            [*sb.NODE_FLAGS, "--metrics-bind-address", METRICS,
                                             "--healthz-bind-address", "127.0.0.1:0", "--sync-period", "1h"])
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_sync(reason="start", timeout=30)

    # ------------------------------------------------------------ helpers

    def state(self) -> dict:
        out = self.box.svcproxy_in(self.box.node, ["status", "--json", "--metrics-bind-address", METRICS])
        return json.loads(out.stdout)

    def web_endpoints(self, state: dict) -> dict[str, dict]:
        for s in state["services"]:
            if (s["namespace"], s["name"]) == (NS, "web"):
                return {e["address"]: e for e in s["ports"][0]["endpoints"]}
        self.fail(f"no {NS}/web in {state['services']}")

    def mark_p2_unready(self) -> None:
        mark = self.daemon.mark()
        self.m.put("web.yaml", web_objects(self.pods, p2_ready=False))
        self.daemon.wait_sync(after=mark, reason=self.m.reason, timeout=10)

    def chromium(self, url: str, name: str, *, budget_ms: int = 3000) -> chromium.Loaded:
        """The page in Chromium inside the node namespace: a screenshot (kept)
        and the DOM after `budget_ms` of virtual time (the script's fetches
        and timers run in it)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{name}.png"
        shot.unlink(missing_ok=True)
        runs = []
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            for args in ([f"--screenshot={shot}", "--window-size=1200,1200"], ["--dump-dom"]):
                argv = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                        f"--virtual-time-budget={budget_ms}", *args, url]
                runs.append(self.box.exec(self.box.node, argv, timeout=120))
        self.assertTrue(shot.exists(), runs[0].stderr[-2000:])
        print(f"\nscreenshot: {shot}", file=sys.stderr)
        console = [m.group(1) for r in runs for line in r.stderr.splitlines() if (m := chromium.CONSOLE.search(line))]
        return chromium.Loaded(dom=runs[1].stdout, console=console, screenshot=shot, log=runs[0].stderr)

    def rows(self, dom: str) -> dict[str, str]:
        """Endpoint rows of the services table: address -> data-ready."""
        return dict(re.findall(r'<tr class="ep" data-endpoint="([^"]+)" data-ready="(true|false)"', dom))

    # ------------------------------------------------------------ tests

    def test_state_and_status_show_the_lab(self) -> None:
        p1, p2 = (f"{self.pods[n].ip(4)}:8080" for n in ("p1", "p2"))
        state = self.state()
        self.assertEqual(state["origin"], "daemon")
        self.assertEqual(state["node"]["name"], sb.NODE_NAME)
        self.assertEqual(state["node"]["mode"], "nftables")
        self.assertEqual(state["watch"]["source"], "manifests")
        self.assertEqual([s["reason"] for s in state["syncs"]][:1], ["start"])
        self.assertEqual(state["syncs"][0]["mode"], "full")
        endpoints = self.web_endpoints(state)
        self.assertEqual(set(endpoints), {p1, p2})
        self.assertTrue(all(e["ready"] and e["used"] and e["local"] for e in endpoints.values()))

        text = self.box.svcproxy_in(self.box.node, ["status", "--metrics-bind-address", METRICS]).stdout
        self.assertIn(f"{NS}/web (ClusterIP)", text)
        self.assertIn(f"{WEB}:80", text)
        self.assertIn(f"{p1} ready,serving,local", text)
        live = self.box.svcproxy_in(self.box.node, ["status", "--live"]).stdout
        self.assertIn(f"{WEB}\n  80/TCP IPv4 {WEB}:80 endpoints 2", live)
        self.assertIn(f"    {p2} ready,serving", live)

        # Traffic agrees: both pods answer.
        result = self.box.request(self.box.ext, WEB, 80, count=40)
        self.assertEqual({i.split(":")[0] for i in result.ids}, {"p1", "p2"}, result.raw)

        self.mark_p2_unready()
        live = self.box.svcproxy_in(self.box.node, ["status", "--live"]).stdout
        self.assertIn(f"{WEB}\n  80/TCP IPv4 {WEB}:80 endpoints 1", live)
        self.assertNotIn(p2, live)
        self.assertFalse(self.web_endpoints(self.state())[p2]["ready"])
        result = self.box.request(self.box.ext, WEB, 80, count=20)
        self.assertEqual({i.split(":")[0] for i in result.ids}, {"p1"}, result.raw)

    def test_status_without_a_daemon_fails_clearly(self) -> None:
        out = self.box.svcproxy_in(self.box.node, ["status", "--metrics-bind-address", "127.0.0.1:1"], check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("cannot read the daemon's state at 127.0.0.1:1", out.stderr)

    def test_filter_without_javascript(self) -> None:
        page = self.box.exec(self.box.node, ["python3", "-c", (
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"),
            f"http://{METRICS}/debug/?filter=" + urllib.parse.quote("nothing-matches")]).stdout
        self.assertNotIn('data-service="', page)
        self.assertIn('value="nothing-matches"', page)
        page = self.box.exec(self.box.node, ["python3", "-c", (
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"),
            f"http://{METRICS}/debug/?filter=" + urllib.parse.quote(f"{NS}/web")]).stdout
        self.assertIn(f'data-service="{NS}/web"', page)

    def test_page_in_chromium(self) -> None:
        if not chromium.available():
            self.skipTest("chromium not installed (./dev deps installs it)")
        p1, p2 = (f"{self.pods[n].ip(4)}:8080" for n in ("p1", "p2"))
        url = f"http://{METRICS}/debug/"
        before = self.chromium(url, "ready")
        self.assertEqual(before.console, [], before.log[-3000:])
        self.assertIn(f'data-service="{NS}/web"', before.dom)
        self.assertRegex(before.dom, r'<body[^>]* data-refreshed="[1-9]')  # the script fetched and re-rendered
        self.assertEqual(self.rows(before.dom), {p1: "true", p2: "true"})
        self.assertIn(sb.NODE_NAME, before.dom)

        self.mark_p2_unready()
        after = self.chromium(url, "p2-unready")
        self.assertEqual(after.console, [], after.log[-3000:])
        self.assertEqual(self.rows(after.dom), {p1: "true", p2: "false"})
        self.assertRegex(after.dom, r'<body[^>]* data-refreshed="[1-9]')


if __name__ == "__main__":
    unittest.main()
