"""End-to-end: per-service traffic counters with real packets.

The daemon (`svcproxy run --manifests DIR`) programs the node namespace;
a pod opens N fresh TCP connections to a service with two endpoints and N
to a service without endpoints. Then:
  - the service's counter counts N connections and its endpoints' counters
    N between them; the rejected counter of the service without endpoints
    counts N (`nft list counters` in the node namespace, the kernel's view);
  - /metrics shows the same numbers as svcproxy_service_packets_total,
    svcproxy_endpoint_packets_total and svcproxy_service_rejected_packets_total;
  - `svcproxy rules` shows the counter objects the kernel holds.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_counters (from tests/e2e).
"""

from __future__ import annotations

import re
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from manifest_dir import Manifests, node_object  # noqa: E402
from sandbox import Pod, endpoint_slice, service  # noqa: E402
from sandbox import SVCPROXY  # noqa: E402

NS = "e2e"
PODS = [Pod("p1", 1), Pod("p2", 2), Pod("c", 3)]
ECHO_PORTS = [(8080, "tcp")]
WEB = "10.96.5.10"   # TCP 80 -> p1, p2
NONE = "10.96.5.20"  # TCP 80, no endpoints
N = 20
METRICS = "127.0.0.1:19249"


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-counters-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, ECHO_PORTS)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


def tcp_service(name: str, ip: str, pods: list[Pod]) -> list[dict]:
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    return [service(name, [ip], [{"name": "http", "port": 80, "targetPort": 8080}], namespace=NS),
            endpoint_slice(name, "abcde", 4, [{"pod": p} for p in pods], http, namespace=NS)]


def counters(text: str) -> dict[str, int]:
    """`nft list counters` -> counter name: packets."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"counter (\S+) \{\s*packets (\d+) bytes \d+", text)}


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in\n{text}")


class TestCounters(unittest.TestCase):
    def setUp(self):
        self.box = Env.box
        pods = self.box.pods
        self.m = Manifests(Env.tmp / "counters")
        self.m.put("nodes.yaml", [node_object()])
        self.m.put("web.yaml", tcp_service("web", WEB, [pods["p1"], pods["p2"]]))
        self.m.put("none.yaml", tcp_service("none", NONE, []))
        proc = self.box.spawn(self.box.node, [SVCPROXY, "run", *self.m.flags(), *sb.NODE_FLAGS,
                                              "--sync-period", "1h", "--metrics-bind-address", METRICS],
                              name="daemon", lines_from="stderr", stdin=False)
        self.daemon = sb.Daemon(proc)
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_sync(reason="start", timeout=30)

    def scrape(self) -> str:
        return self.box.exec(self.box.node, ["python3", "-c",
                                             "import urllib.request,sys;"
                                             f"sys.stdout.write(urllib.request.urlopen('http://{METRICS}/metrics')"
                                             ".read().decode())"]).stdout

    def test_connections_count_per_service_endpoint_and_rejection(self):
        client = self.box.pods["c"].ns
        ok = self.box.request(client, WEB, 80, count=N, parallel=4)
        self.assertEqual(ok.outcomes.get("reply"), N, ok.outcomes)
        refused = self.box.request(client, NONE, 80, count=N, parallel=4)
        self.assertEqual(refused.outcomes.get("refused"), N, refused.outcomes)

        kernel = counters(self.box.nft_list(self.box.node, ["counters", "table", "ip", "svcproxy"]))
        web = [v for k, v in kernel.items() if k.startswith("service-") and k.endswith("-e2e/web/tcp/http")]
        self.assertEqual(web, [N], kernel)
        eps = [v for k, v in kernel.items() if k.startswith("endpoint-") and k.endswith("/tcp/8080")]
        self.assertEqual(len(eps), 2, kernel)
        self.assertEqual(sum(eps), N, kernel)
        rejected = [v for k, v in kernel.items() if k.startswith("rejected-") and k.endswith("-e2e/none/tcp/http")]
        self.assertEqual(rejected, [N], kernel)

        text = self.scrape()
        self.assertEqual(metric(text, "svcproxy_service_packets_total", namespace=NS, service="web", port="http"), N)
        self.assertEqual(metric(text, "svcproxy_service_rejected_packets_total", namespace=NS, service="web",
                                port="http"), 0)
        self.assertEqual(metric(text, "svcproxy_service_rejected_packets_total", namespace=NS, service="none",
                                port="http"), N)
        per_endpoint = [metric(text, "svcproxy_endpoint_packets_total", service="web",
                               endpoint=f"{self.box.pods[p].v4}:8080") for p in ("p1", "p2")]
        self.assertEqual(sum(per_endpoint), N)

        # `rules` lists the counter objects the kernel holds.
        listed = set(counters(self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout))
        self.assertTrue(set(kernel) <= listed, (set(kernel) - listed))


if __name__ == "__main__":
    unittest.main()
