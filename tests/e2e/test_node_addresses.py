"""End-to-end: where the node's addresses and zone come from.

Offline (`rules`, `trace` from manifests): the node's addresses are
`--node-ip` (or the Node's InternalIPs), never the interfaces of the machine
running the command, so `--nodeport-addresses X/32` selects X even where X
is not configured. The ruleset printed there, loaded with `nft -f` into the
lab node (which holds X), sends a real NodePort packet where `trace` said. A
CIDR that selects none of the node's addresses is warned about once, naming
it, by the offline commands and by the daemon.

The daemon without `--node-ip` and `--zone`: the node IP is the Node's
InternalIP (when the Node is there at start, when it arrives later, and when
its InternalIP changes), and its `topology.kubernetes.io/zone` label drives
topology hints: only the same-zone endpoint answers, with real packets.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_node_addresses (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import EXT_V4, NODE_V4, SVCPROXY, Pod, endpoint_slice, endpoint_str, service  # noqa: E402

NS = "e2e"
PODS = [Pod("za", 1), Pod("zb", 2)]  # za's endpoints are hinted for zone-a, zb's for zone-b
WEB_V4, WEB_NODEPORT = "10.96.0.10", 30080
LB_V4, LB_NODEPORT, HC_PORT = "10.96.0.20", 30090, 32050  # externalTrafficPolicy: Local
# A second address of the lab node, for a Node whose InternalIP changes.
NODE_V4_ALT = "203.0.113.9"
UNMATCHED_CIDR = "10.99.0.0/16"  # no node address is in it
# The node flags without --node-ip (sb.NODE_FLAGS has it).
NODE_FLAGS_NO_IP = ["--hostname-override", sb.NODE_NAME, "--cluster-cidr", ",".join(sb.CLUSTER_CIDRS),
                    "--service-cidr", ",".join(sb.SERVICE_CIDRS)]
DAEMON_FLAGS = ["--sync-period", "1h", "--healthz-bind-address", "", "--metrics-bind-address", ""]


def cluster_objects(pods: dict[str, Pod]) -> list[dict]:
    """A NodePort service whose two endpoints carry zone hints (as the
    EndpointSlice controller sets them for trafficDistribution)."""
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    web = service("web", [WEB_V4], [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": WEB_NODEPORT}],
                  namespace=NS, type="NodePort")
    web["spec"]["trafficDistribution"] = "PreferClose"
    slice_ = endpoint_slice("web", "zz9x8", 4, [{"pod": pods["za"]}, {"pod": pods["zb"]}], http, namespace=NS)
    for endpoint, zone in zip(slice_["endpoints"], ("zone-a", "zone-b")):
        endpoint["hints"] = {"forZones": [{"name": zone}]}
        endpoint["zone"] = zone
    lb = service("lb", [LB_V4], [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": LB_NODEPORT}],
                 namespace=NS, type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=HC_PORT)
    lb_slice = endpoint_slice("lb", "lb1x2", 4, [{"pod": pods["za"]}], http, namespace=NS)
    return [web, slice_, lb, lb_slice]


def node_object(internal_ip: str, zone: str = "zone-a") -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"labels": {"kubernetes.io/hostname": sb.NODE_NAME, "topology.kubernetes.io/zone": zone},
                     "name": sb.NODE_NAME, "resourceVersion": "1000"},
        "status": {"addresses": [{"address": internal_ip, "type": "InternalIP"},
                                 {"address": sb.NODE_NAME, "type": "Hostname"}]},
    }


class Env:
    """Module-wide sandbox: built once, torn down in tearDownModule."""
    box: sb.Sandbox | None = None
    tmp: Path | None = None
    offline: str = ""  # a namespace with only lo: a machine that is not the node


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(8080, "tcp")])
        Env.box.ip_batch(Env.box.node, [f"addr add {NODE_V4_ALT}/24 dev ext0"])
        Env.offline = f"{Env.box.prefix}-offline"
        Env.box._add_netns(Env.offline)  # torn down with the sandbox
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


class NodeTestCase(unittest.TestCase):
    def setUp(self):
        self.box = Env.box
        self.dir = Env.tmp / self.id().rpartition(".")[2]
        self.dir.mkdir()
        write_atomically(self.dir / "cluster.yaml", cluster_objects(self.box.pods))
        # Each test programs the node from nothing.
        self.box.svcproxy_in(self.box.node, ["cleanup"])
        self.box.flush_conntrack()

    def replies(self, dst: str, port: int, count: int = 24) -> sb.RequestResult:
        return self.box.request(self.box.ext, dst, port, count=count, timeout=1.0)

    def assert_reaches(self, dst: str, port: int, pods: set[str], what: str) -> None:
        """Each of 24 fresh connections is answered, and by exactly the
        pods named (each at least once: 24 tries, 2^-23 to miss one of two)."""
        result = self.replies(dst, port)
        self.assertEqual(result.outcomes.get("reply", 0), 24, f"{what}: {result.outcomes} {result.errors[:3]}")
        self.assertEqual({i.partition(":")[0] for i in result.ids}, pods, f"{what}: answered by {result.ids}")

    def assert_not_served(self, dst: str, port: int, what: str) -> None:
        """No pod answers: the node itself refuses (nothing listens there)."""
        result = self.replies(dst, port, count=4)
        self.assertEqual(result.ids, [], f"{what}: {result.outcomes}")
        self.assertEqual(result.outcomes.get("refused", 0), 4, f"{what}: {result.outcomes}")

    def health_check(self, ip: str) -> str:
        """GET / on the healthCheckNodePort at ip from the external client:
        the HTTP status, or "refused"."""
        script = ("import sys, urllib.request, urllib.error\n"
                  "try:\n"
                  "    print(urllib.request.urlopen(f'http://{sys.argv[1]}:{sys.argv[2]}/', timeout=3).status)\n"
                  "except urllib.error.HTTPError as e:\n"
                  "    print(e.code)\n"
                  "except urllib.error.URLError as e:\n"
                  "    print('refused' if isinstance(e.reason, ConnectionRefusedError) else repr(e.reason))\n")
        return self.box.exec(self.box.ext, [sys.executable, "-c", script, ip, str(HC_PORT)]).stdout.strip()

    def trace_live(self, dst: str, port: int) -> dict:
        out = self.box.svcproxy_in(self.box.node, ["trace", "--live", "--json", "--src", EXT_V4, "--dst", dst,
                                                   "--dport", str(port)]).stdout
        return json.loads(out)

    def eps(self, *pods: str) -> list[str]:
        return sorted(endpoint_str(self.box.pods[p].v4, 8080) for p in pods)


class OfflineNodePortAddresses(NodeTestCase):
    """`rules` / `trace` run in a namespace that does not hold the node's IP."""

    def offline(self, command: str, *args: str) -> tuple[str, str]:
        r = self.box.svcproxy_in(Env.offline, [command, "--manifests", str(self.dir), *NODE_FLAGS_NO_IP,
                                               "--node-ip", NODE_V4, *args])
        return r.stdout, r.stderr

    def test_nodeport_addresses_select_the_node_ip_and_the_loaded_ruleset_does_what_trace_says(self):
        flags = ["--nodeport-addresses", f"{NODE_V4}/32"]
        ruleset, stderr = self.offline("rules", *flags)
        self.assertEqual(stderr, "")
        m = re.search(r"set nodeport-ips \{[^}]*?elements = \{ ([^}]*) \}", ruleset)
        self.assertIsNotNone(m, f"nodeport-ips is empty:\n{ruleset}")
        self.assertEqual(re.split(r",\s*", m.group(1).strip()), [NODE_V4])

        traced, _ = self.offline("trace", *flags, "--json", "--src", EXT_V4, "--dst", NODE_V4,
                                 "--dport", str(WEB_NODEPORT))
        trace = json.loads(traced)
        # No Node object: no zone, both endpoints.
        self.assertEqual(trace["verdict"], "DNAT", trace)
        self.assertEqual(sorted(trace["endpoints"]), self.eps("za", "zb"), trace)
        self.assertTrue(trace["masquerade"], trace)

        # The lab node holds NODE_V4: the same text, loaded there, DNATs a
        # real NodePort packet to the endpoints trace named, masqueraded.
        self.box.nft(self.box.node, ruleset)
        result = self.replies(NODE_V4, WEB_NODEPORT)
        self.assertEqual(result.outcomes.get("reply", 0), 24, f"{result.outcomes} {result.errors[:3]}")
        reached = sorted({endpoint_str(self.box.pods[i.partition(':')[0]].v4, 8080) for i in result.ids})
        self.assertEqual(reached, sorted(trace["endpoints"]))
        seen = {ip for _, ip, _ in result.replies}
        self.assertTrue(seen <= self.box.node_addresses(), f"masqueraded to node addresses, as trace said: {seen}")

    def test_a_cidr_that_selects_no_node_address_is_warned_about_once(self):
        flags = ["--nodeport-addresses", f"{NODE_V4}/32,{UNMATCHED_CIDR}"]
        for command, args in (("rules", ()), ("trace", ("--src", EXT_V4, "--dst", NODE_V4,
                                                        "--dport", str(WEB_NODEPORT)))):
            with self.subTest(command=command):
                out, stderr = self.offline(command, *flags, *args)
                lines = stderr.splitlines()
                self.assertEqual(len(lines), 1, stderr)
                self.assertIn(UNMATCHED_CIDR, lines[0])
                self.assertIn(f"--node-ip {NODE_V4}", lines[0], "says which addresses it looked at")
                self.assertNotIn(f"{NODE_V4}/32", stderr)
                if command == "trace":
                    self.assertIn("DNAT", out)

    def test_the_daemon_warns_once_per_cidr_that_selects_no_address(self):
        # In the lab node: its interfaces are the node's addresses.
        daemon = self.box.start_daemon(self.dir, [*NODE_FLAGS_NO_IP, *DAEMON_FLAGS, "--nodeport-addresses",
                                                  f"{NODE_V4}/32,{UNMATCHED_CIDR}"])
        self.addCleanup(daemon.stop)
        daemon.wait_sync(reason="start", timeout=30)
        mark = daemon.mark()
        daemon.proc.proc.send_signal(signal.SIGHUP)
        daemon.wait_sync(after=mark, reason="sighup", timeout=30)
        warnings = [line for line in daemon.lines.snapshot() if UNMATCHED_CIDR in line]
        self.assertEqual(len(warnings), 1, "\n".join(daemon.lines.snapshot()))
        self.assertTrue(warnings[0].startswith("W"), warnings[0])
        self.assertIn("this network namespace's interfaces", warnings[0])
        self.assertNotIn(f"{NODE_V4}/32", "\n".join(daemon.lines.snapshot()))
        self.assert_reaches(NODE_V4, WEB_NODEPORT, {"za", "zb"}, "NodePort on the selected address")


class DaemonNodeFromTheCluster(NodeTestCase):
    """`run` without --node-ip and --zone: both come from the Node."""

    def start(self) -> sb.Daemon:
        daemon = self.box.start_daemon(self.dir, [*NODE_FLAGS_NO_IP, *DAEMON_FLAGS])
        self.addCleanup(daemon.stop)
        daemon.wait_sync(reason="start", timeout=30)
        return daemon

    def put_node(self, daemon: sb.Daemon, internal_ip: str) -> None:
        mark = daemon.mark()
        write_atomically(self.dir / "node.yaml", [node_object(internal_ip)])
        daemon.lines.wait_for("node configuration changed", start=mark, timeout=30, what="the Node's change")
        sync = daemon.wait_sync(after=mark, reason="manifests-changed", timeout=30)
        self.assertEqual(sync.mode, "full", sync.text)

    def assert_zone_a_only(self, dst: str, port: int, what: str) -> None:
        self.assert_reaches(dst, port, {"za"}, what)
        trace = self.trace_live(dst, port)
        self.assertEqual((trace["verdict"], trace["endpoints"]), ("DNAT", self.eps("za")), f"{what}: {trace}")

    def test_node_present_at_start(self):
        write_atomically(self.dir / "node.yaml", [node_object(NODE_V4)])
        self.start()
        self.assert_zone_a_only(NODE_V4, WEB_NODEPORT, "NodePort on the Node's InternalIP")
        self.assert_zone_a_only(WEB_V4, 80, "ClusterIP")
        self.assertEqual(self.health_check(NODE_V4), "200", "healthCheckNodePort on the Node's InternalIP")

    def test_node_arriving_after_start_and_its_internal_ip_changing(self):
        daemon = self.start()
        # No Node yet: no zone (every endpoint), and the node IP is the
        # node's first address (10.244.1.1), not NODE_V4.
        self.assert_not_served(NODE_V4, WEB_NODEPORT, "NodePort before the Node")
        self.assert_reaches(WEB_V4, 80, {"za", "zb"}, "ClusterIP before the Node (no zone)")
        self.assertEqual(self.health_check(NODE_V4), "refused", "healthCheckNodePort before the Node")

        self.put_node(daemon, NODE_V4)
        self.assert_zone_a_only(NODE_V4, WEB_NODEPORT, "NodePort on the arrived Node's InternalIP")
        self.assert_zone_a_only(WEB_V4, 80, "ClusterIP once the Node's zone is known")
        self.assert_not_served(NODE_V4_ALT, WEB_NODEPORT, "NodePort on an address that is not the node IP")
        self.assertEqual(self.health_check(NODE_V4), "200", "healthCheckNodePort on the arrived Node's InternalIP")

        self.put_node(daemon, NODE_V4_ALT)
        self.box.flush_conntrack()
        self.assert_zone_a_only(NODE_V4_ALT, WEB_NODEPORT, "NodePort on the Node's new InternalIP")
        self.assert_not_served(NODE_V4, WEB_NODEPORT, "NodePort on the Node's former InternalIP")
        self.assertEqual(self.health_check(NODE_V4_ALT), "200", "healthCheckNodePort on the Node's new InternalIP")
        self.assertEqual(self.health_check(NODE_V4), "refused", "healthCheckNodePort on the former InternalIP")


if __name__ == "__main__":
    unittest.main()
