"""End-to-end: localhost NodePorts in nftables mode (kube-proxy's KEP-6032).

With loopback in --nodeport-addresses (`primary,localhost`), TCP NodePorts
answer on 127.0.0.1 and ::1 inside the node through the userspace relay:
connections from the node's own processes reach the endpoints the NodePort
would use (externalTrafficPolicy Cluster: all of them; Local: this node's),
a pod that turns unready leaves the rotation with the sync that says so, a
port without endpoints refuses at once, and the relay is gone when the
daemon exits. UDP NodePorts there are refused and counted (the metric
keeps counting across a full sync). In userspace mode the proxy itself
answers on loopback, TCP and UDP. Without loopback in the flag nothing
listens on loopback (`all` included). Every flow is real traffic from the node
namespace (client.py) to `svcproxy echo` in the pods.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_localhost_nodeports (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import NODE_V4, REMOTE_NODE_NAME, SVCPROXY, Pod, endpoint_slice, service  # noqa: E402

NS = "e2e"
PODS = [Pod("pa", 1), Pod("pb", 2, node=REMOTE_NODE_NAME)]  # pa on this node, pb on another
WEB_V4, WEB_V6, WEB_NODEPORT = "10.96.0.10", "fd00:10:96::10", 30080  # eTP Cluster, dual-stack
LOCAL_V4, LOCAL_NODEPORT = "10.96.0.11", 30081  # eTP Local
EMPTY_V4, EMPTY_NODEPORT = "10.96.0.12", 30082  # no endpoints
DNS_V4, DNS_NODEPORT = "10.96.0.13", 30083  # UDP
METRICS = "127.0.0.1:10249"
DAEMON_FLAGS = [*sb.NODE_FLAGS, "--sync-period", "1h", "--healthz-bind-address", "",
                "--metrics-bind-address", METRICS]
HTTP = [{"name": "http", "port": 8080, "protocol": "TCP"}]


def cluster_objects(pods: dict[str, Pod], *, pb_ready: bool = True) -> list[dict]:
    def node_port(name: str, ips: list[str], port: int, **extra) -> dict:
        return service(name, ips, [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": port}],
                       namespace=NS, type="NodePort", **extra)

    both = [{"pod": pods["pa"]}, {"pod": pods["pb"], "ready": pb_ready, "serving": pb_ready, "terminating": False}]
    dns = service("dns", [DNS_V4], [{"name": "dns", "port": 53, "targetPort": 8080, "nodePort": DNS_NODEPORT,
                                     "protocol": "UDP"}], namespace=NS, type="NodePort")
    return [
        node_port("web", [WEB_V4, WEB_V6], WEB_NODEPORT),
        endpoint_slice("web", "w4", 4, both, HTTP, namespace=NS),
        endpoint_slice("web", "w6", 6, both, HTTP, namespace=NS),
        node_port("local", [LOCAL_V4], LOCAL_NODEPORT, externalTrafficPolicy="Local", healthCheckNodePort=32001),
        endpoint_slice("local", "l4", 4, [{"pod": pods["pa"]}, {"pod": pods["pb"]}], HTTP, namespace=NS),
        node_port("empty", [EMPTY_V4], EMPTY_NODEPORT),
        dns,
        endpoint_slice("dns", "d4", 4, [{"pod": pods["pa"]}], [{"name": "dns", "port": 8080, "protocol": "UDP"}],
                       namespace=NS),
    ]


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(8080, "tcp"), (8080, "udp")])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


def write_atomically(path: Path, objects: list[dict]) -> None:
    """Written beside and renamed into place: the daemon reads it whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(sb.to_yaml(objects))
    os.rename(tmp, path)


class LocalhostTestCase(unittest.TestCase):
    def setUp(self):
        self.box = Env.box
        self.dir = Env.tmp / self.id().rpartition(".")[2]
        self.dir.mkdir()
        write_atomically(self.dir / "cluster.yaml", cluster_objects(self.box.pods))
        self.box.svcproxy_in(self.box.node, ["cleanup"])
        self.box.flush_conntrack()

    def start(self, nodeport_addresses: str) -> sb.Daemon:
        daemon = self.box.start_daemon(self.dir, [*DAEMON_FLAGS, "--nodeport-addresses", nodeport_addresses])
        self.addCleanup(daemon.stop)
        daemon.wait_sync(reason="start", timeout=30)
        return daemon

    def from_node(self, dst: str, port: int, count: int = 24, proto: str = "tcp") -> sb.RequestResult:
        return self.box.request(self.box.node, dst, port, proto=proto, count=count, timeout=2.0)

    def assert_reaches(self, dst: str, port: int, pods: set[str], what: str) -> None:
        """Each of 24 fresh connections from the node is answered, and by
        exactly the pods named (each at least once: 2^-23 to miss one of two)."""
        result = self.from_node(dst, port)
        self.assertEqual(result.outcomes.get("reply", 0), 24, f"{what}: {result.outcomes} {result.errors[:3]}")
        self.assertEqual({i.partition(":")[0] for i in result.ids}, pods, f"{what}: answered by {result.ids}")

    def assert_refused(self, dst: str, port: int, what: str, proto: str = "tcp", outcome: str = "refused") -> None:
        """Refused at once, well inside the client's 2 s timeout (a drop
        would time out instead): a TCP reset, or `outcome`."""
        start = time.monotonic()
        result = self.from_node(dst, port, count=4, proto=proto)
        self.assertEqual(result.outcomes, {outcome: 4}, f"{what}: {result.outcomes} {result.errors[:3]}")
        self.assertLess(time.monotonic() - start, 1.5, f"{what}: refused, but not at once")

    def trace_live(self, dst: str, port: int, proto: str) -> dict:
        """What the programmed rules do with a packet from the node to dst."""
        out = self.box.svcproxy_in(self.box.node, ["trace", "--live", "--json", "--src", dst, "--dst", dst,
                                                   "--dport", str(port), "--proto", proto]).stdout
        return json.loads(out)

    def metrics(self) -> dict[str, float]:
        """/metrics of the daemon in the node namespace: sample -> value."""
        script = ("import sys, urllib.request\n"
                  "print(urllib.request.urlopen(f'http://{sys.argv[1]}/metrics', timeout=3).read().decode())\n")
        text = self.box.exec(self.box.node, [sys.executable, "-c", script, METRICS]).stdout
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def loopback_listeners(self) -> list[str]:
        """Local addresses of the node's TCP listening sockets on loopback."""
        out = self.box.exec(self.box.node, ["ss", "-Hltn"]).stdout
        return sorted(line.split()[3] for line in out.splitlines()
                      if line.split()[3].startswith(("127.", "[::1]")))


class LocalhostNodePorts(LocalhostTestCase):
    """--nodeport-addresses primary,localhost."""

    def test_tcp_nodeports_answer_on_loopback_as_the_nodeport_does(self):
        self.start("primary,localhost")
        self.assert_reaches("127.0.0.1", WEB_NODEPORT, {"pa", "pb"}, "eTP Cluster on 127.0.0.1")
        self.assert_reaches("::1", WEB_NODEPORT, {"pa", "pb"}, "eTP Cluster on ::1")
        self.assert_reaches("127.0.0.1", LOCAL_NODEPORT, {"pa"}, "eTP Local on 127.0.0.1: this node's only")
        # The node IP is still served by the nftables rules, from outside.
        result = self.box.request(self.box.ext, NODE_V4, WEB_NODEPORT, count=8, timeout=2.0)
        self.assertEqual(result.outcomes.get("reply", 0), 8, f"NodePort on the node IP: {result.outcomes}")
        # Only the relay addresses listen, and only for TCP NodePorts with
        # endpoints (the metrics server is the daemon's own).
        self.assertEqual(self.loopback_listeners(),
                         sorted([f"127.0.0.1:{WEB_NODEPORT}", f"127.0.0.1:{LOCAL_NODEPORT}",
                                 f"[::1]:{WEB_NODEPORT}", METRICS]))
        metrics = self.metrics()
        listeners = "kubeproxy_nftables_localhost_nodeport_listeners"
        failures = "kubeproxy_nftables_localhost_nodeport_listener_creation_failures_total"
        self.assertEqual(metrics.get(f'{listeners}{{ip_family="IPv4"}}'), 2, metrics)
        self.assertEqual(metrics.get(f'{listeners}{{ip_family="IPv6"}}'), 1, metrics)
        self.assertEqual(metrics.get(f'{failures}{{ip_family="IPv4"}}'), 0, metrics)

    def test_no_endpoints_is_refused_at_once(self):
        self.start("primary,localhost")
        self.assert_refused("127.0.0.1", EMPTY_NODEPORT, "NodePort without endpoints")

    def test_an_unready_endpoint_leaves_the_rotation_with_the_sync(self):
        daemon = self.start("primary,localhost")
        self.assert_reaches("127.0.0.1", WEB_NODEPORT, {"pa", "pb"}, "both ready")
        mark = daemon.mark()
        write_atomically(self.dir / "cluster.yaml", cluster_objects(self.box.pods, pb_ready=False))
        daemon.wait_sync(after=mark, reason="manifests-changed", timeout=30)
        self.assert_reaches("127.0.0.1", WEB_NODEPORT, {"pa"}, "pb unready")
        self.assert_reaches("::1", WEB_NODEPORT, {"pa"}, "pb unready, IPv6")
        mark = daemon.mark()
        write_atomically(self.dir / "cluster.yaml", cluster_objects(self.box.pods))
        daemon.wait_sync(after=mark, reason="manifests-changed", timeout=30)
        self.assert_reaches("127.0.0.1", WEB_NODEPORT, {"pa", "pb"}, "pb ready again")

    def test_the_last_endpoint_leaving_closes_the_port(self):
        daemon = self.start("primary,localhost")
        objects = [o for o in cluster_objects(self.box.pods)
                   if o["metadata"]["name"] not in ("web-w4", "web-w6")]
        mark = daemon.mark()
        write_atomically(self.dir / "cluster.yaml", objects)
        daemon.wait_sync(after=mark, reason="manifests-changed", timeout=30)
        self.assert_refused("127.0.0.1", WEB_NODEPORT, "every endpoint gone")
        self.assertNotIn(f"127.0.0.1:{WEB_NODEPORT}", self.loopback_listeners())

    def test_udp_nodeports_on_loopback_are_refused(self):
        daemon = self.start("primary,localhost")
        rejected = 'kubeproxy_nftables_localhost_nodeport_rejected_packets_total{ip_family="IPv4",protocol="UDP"}'
        before = self.metrics()
        self.assertEqual(before.get(rejected), 0, before)
        # The reject rule runs in the output hook of the sending process's
        # own namespace: the kernel drops the datagram there, and send()
        # fails at once with EPERM (kube-proxy's reject in output does the
        # same). Without the rule, nothing listening would answer ICMP
        # port unreachable (ECONNREFUSED): the rule is what is seen.
        self.assert_refused("127.0.0.1", DNS_NODEPORT, "UDP NodePort on loopback", proto="udp", outcome="eperm")
        # UDP to another loopback port is left alone: the kernel refuses it.
        self.assert_refused("127.0.0.1", DNS_NODEPORT + 100, "UDP, not a NodePort", proto="udp")
        # Counted: the 4 datagrams to the NodePort, not the others.
        after = self.metrics()
        self.assertEqual(after.get(rejected), 4, after)
        self.assertEqual(after.get(rejected.replace("UDP", "SCTP")), 0, after)
        self.assertEqual(after.get(rejected.replace("IPv4", "IPv6")), 0, after)
        # A full sync recreates the table (its counters start from 0): the
        # metric keeps counting on from its total.
        mark = daemon.mark()
        daemon.proc.proc.send_signal(signal.SIGHUP)
        self.assertEqual(daemon.wait_sync(after=mark, reason="sighup", timeout=30).mode, "full")
        self.assert_refused("127.0.0.1", DNS_NODEPORT, "after a full sync", proto="udp", outcome="eperm")
        self.assertEqual(self.metrics().get(rejected), 8)
        # trace of the same flows: the rules reject the UDP NodePort and
        # leave TCP to the relay (no DNAT).
        self.assertEqual(self.trace_live("127.0.0.1", DNS_NODEPORT, "udp")["verdict"], "REJECT")
        self.assertEqual(self.trace_live("127.0.0.1", DNS_NODEPORT + 100, "udp")["verdict"], "ACCEPT")
        self.assertEqual(self.trace_live("127.0.0.1", WEB_NODEPORT, "tcp")["verdict"], "ACCEPT")
        # The same UDP NodePort on the node IP is served (nftables).
        result = self.box.request(self.box.ext, NODE_V4, DNS_NODEPORT, proto="udp", count=4, timeout=2.0)
        self.assertEqual(result.outcomes.get("reply", 0), 4, f"UDP NodePort on the node IP: {result.outcomes}")

    def test_a_port_held_by_another_process_is_one_warning_and_the_rest_is_served(self):
        squatter = self.box.start_echo(self.box.node, f"127.0.0.1:{LOCAL_NODEPORT}", id="squatter")
        self.addCleanup(squatter.proc.wait, 5)
        self.addCleanup(squatter.proc.terminate)
        daemon = self.start("primary,localhost")
        self.assert_reaches("127.0.0.1", WEB_NODEPORT, {"pa", "pb"}, "a port nobody else holds")
        self.assert_reaches("127.0.0.1", LOCAL_NODEPORT, {"squatter"}, "the port the other process holds")
        warnings = [line for line in daemon.lines.snapshot() if f"127.0.0.1:{LOCAL_NODEPORT}" in line]
        self.assertEqual(len(warnings), 1, "\n".join(daemon.lines.snapshot()))
        self.assertTrue(warnings[0].startswith("W"), warnings[0])
        failures = "kubeproxy_nftables_localhost_nodeport_listener_creation_failures_total"
        self.assertGreaterEqual(self.metrics().get(f'{failures}{{ip_family="IPv4"}}', 0), 1)

    def test_the_relay_closes_with_the_daemon(self):
        daemon = self.start("primary,localhost")
        self.assert_reaches("127.0.0.1", WEB_NODEPORT, {"pa", "pb"}, "while running")
        rc, elapsed = daemon.stop()
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, 3, "exits promptly (the relay's workers join)")
        self.assertEqual(self.loopback_listeners(), [])
        self.assert_refused("127.0.0.1", WEB_NODEPORT, "after exit")


class UserspaceMode(LocalhostTestCase):
    def test_the_userspace_proxy_answers_on_loopback_itself(self):
        """--proxy-mode userspace: no nftables, no relay; the proxy listens
        on the loopback addresses too, TCP and UDP alike."""
        daemon = self.box.start_daemon(self.dir, [*DAEMON_FLAGS, "--proxy-mode", "userspace",
                                                  "--nodeport-addresses", "primary,localhost"])
        self.addCleanup(daemon.stop)
        daemon.wait_sync(reason="start", timeout=30)
        self.assert_reaches("127.0.0.1", WEB_NODEPORT, {"pa", "pb"}, "eTP Cluster on 127.0.0.1")
        self.assert_reaches("::1", WEB_NODEPORT, {"pa", "pb"}, "eTP Cluster on ::1")
        self.assert_reaches("127.0.0.1", LOCAL_NODEPORT, {"pa"}, "eTP Local on 127.0.0.1")
        result = self.from_node("127.0.0.1", DNS_NODEPORT, count=4, proto="udp")
        self.assertEqual(result.outcomes.get("reply", 0), 4, f"UDP on 127.0.0.1: {result.outcomes}")
        self.assertFalse([line for line in daemon.lines.snapshot() if "localhost nodeports" in line])


class WithoutLocalhost(LocalhostTestCase):
    def test_nothing_listens_on_loopback(self):
        for flag in ("primary", "all"):
            with self.subTest(nodeport_addresses=flag):
                daemon = self.start(flag)
                self.assertEqual(self.loopback_listeners(), [METRICS])
                self.assert_refused("127.0.0.1", WEB_NODEPORT, f"--nodeport-addresses {flag}")
                self.assertFalse([line for line in daemon.lines.snapshot() if "localhost nodeports" in line])
                daemon.stop()
                self.box.svcproxy_in(self.box.node, ["cleanup"])


if __name__ == "__main__":
    unittest.main()
