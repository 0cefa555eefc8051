"""End-to-end against a real control plane: trafficDistribution PreferSameNode,
PreferSameZone and PreferClose, with the hints the REAL EndpointSlice
controller writes.

The lab is test_cluster_multinode's (its _build_lab, borrowed): three nodes
on one lab network, node 1 in zone-a, nodes 2 and 3 in zone-b (the pod
agents create the Nodes with their topology.kubernetes.io/zone label), a web
pod and a client pod on each, each node running `svcproxy run --kubeconfig`.
The web pods of nodes 1 and 2 also carry the label pair=yes.

  Service         selector    trafficDistribution  iTP     node 1   node 2        node 3
  same-node       app=web     PreferSameNode               web-1    web-2         web-3
  same-zone       app=web     PreferSameZone               web-1    web-2, web-3  web-2, web-3
  close           app=web     PreferClose                  web-1    web-2, web-3  web-2, web-3
  pair-same-node  pair=yes    PreferSameNode               web-1    web-2         web-2 (*)
  zonal-local     app=web     PreferSameZone       Local   web-1    web-2         web-3
  all             app=web     -                            every web pod

  (*) no endpoint has a node hint for node 3, so the zone hints the
      controller writes beside the node hints decide: web-2, zone-b's.

First the slices are checked to carry exactly the hints kube-proxy's
topology.go reads (forNodes for PreferSameNode only, forZones for all
three); then, from each node's client pod, the pods that answer are the
table's, and `svcproxy trace` of the same packet against the API server's
objects (compiled for that node) names the same pods. Every test ends with
each node's kernel equal to `svcproxy rules` of the API server's objects.
Last, node 3's Node is relabelled into zone-a through the API: its svcproxy
makes a full sync (kube-proxy resyncs on a topology label change) and its
client then reaches zone-a's pods.

Needs root, openssl and the cluster binaries (tests/cluster/build.sh).
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_topology (from tests/e2e).
"""

from __future__ import annotations

import json
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
import test_cluster_multinode as multi  # noqa: E402 - its lab, not its tests (none are imported by name)
from sandbox import SVCPROXY  # noqa: E402

NAMESPACE = multi.NAMESPACE
PORT = multi.PORT
CONNECTIONS = multi.CONNECTIONS
CONVERGE = multi.CONVERGE
ZONES = multi.ZONES  # node 1 zone-a, nodes 2 and 3 zone-b
PAIR = ("web-1", "web-2")  # the pods labelled pair=yes
CLUSTER = multi.lab.ForTests()


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    CLUSTER.set_up_module()


def tearDownModule():
    CLUSTER.release()


SERVICES = [
    multi.service("same-node", {"app": "web"}, trafficDistribution="PreferSameNode"),
    multi.service("same-zone", {"app": "web"}, trafficDistribution="PreferSameZone"),
    multi.service("close", {"app": "web"}, trafficDistribution="PreferClose"),
    multi.service("pair-same-node", {"pair": "yes"}, trafficDistribution="PreferSameNode"),
    multi.service("zonal-local", {"app": "web"}, trafficDistribution="PreferSameZone",
                  internalTrafficPolicy="Local"),
    multi.service("all", {"app": "web"}),
]


class TestClusterTopology(unittest.TestCase):

    # The lab of test_cluster_multinode, as it builds and removes it.
    _build_lab = multi.TestMultiNode.__dict__["_build_lab"]
    tearDownClass = multi.TestMultiNode.__dict__["tearDownClass"]
    truth = multi.TestMultiNode.truth
    assert_kernels_are_truth = multi.TestMultiNode.assert_kernels_are_truth

    @classmethod
    def setUpClass(cls):
        cls.cluster = CLUSTER.cluster
        cls.box = sb.Sandbox(SVCPROXY)
        cls.nodes = [multi.LabNode(i, zone) for i, zone in enumerate(ZONES, 1)]
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        started = time.monotonic()
        cls._build_lab()
        echoes = [cls.box.start_echo(pod.ns, f"[::]:{PORT}", id=pod.name, wait=False)
                  for node in cls.nodes for pod in (node.web, node.client)]
        cls.box.wait_ready(echoes)
        for node in cls.nodes:
            cls.cluster.attach(node.ns)
            node.agent = cls._start_agent(node)
        for node in cls.nodes:
            multi._wait_agent(node.agent, lambda e, p=node.web.name: e.get("event") == "ready" and e["pod"] == p
                              and e["ready"], f"{node.web.name} Ready", 30)
        cls.cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "items": SERVICES}))
        cls.services = {item["metadata"]["name"]: item for item in json.loads(cls.cluster.kubectl(
            "get", "services", "-n", NAMESPACE, "-o", "json").stdout)["items"]}
        cls._wait_slices(CONVERGE)
        for node in cls.nodes:
            argv = [SVCPROXY, "run", "--kubeconfig", str(cls.cluster.kubeconfig), *node.flags(),
                    "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249"]
            node.daemon = sb.Daemon(cls.box.spawn(node.ns, argv, name=f"svcproxy-{node.index}", lines_from="stderr",
                                                  stdin=False))
        for node in cls.nodes:
            node.daemon.wait_sync(reason="start", timeout=CONVERGE)
        print(f"\ntopology lab up in {time.monotonic() - started:.1f} s", file=sys.stderr)

    @classmethod
    def _start_agent(cls, node: multi.LabNode) -> sb.Background:
        """The node's pod agent: its Node (with the zone label) and its web pod."""
        info = cls.cluster.info()
        config = {key: info[key] for key in ("server", "ca", "cert", "key")}
        config["node"] = {"name": node.name, "ip": node.ip, "zone": node.zone}
        labels = {"app": "web", "pod": node.web.name, **({"pair": "yes"} if node.web.name in PAIR else {})}
        config["pods"] = [{"name": node.web.name, "namespace": NAMESPACE, "ips": [node.web.v4], "labels": labels,
                           "ports": [{"name": "http", "containerPort": PORT}], "probe": multi.PROBE}]
        path = cls.box.workdir / f"podagent-{node.index}.json"
        path.write_text(json.dumps(config))
        return cls.box.spawn(node.ns, [sys.executable, str(multi.PODAGENT), str(path)], name=f"podagent-{node.index}")

    @classmethod
    def _hints(cls) -> dict[str, dict[str, dict]]:
        """Service -> {ready pod: {"zones": [...], "nodes": [...]}} (absent kinds left out), from the API server."""
        out = cls.cluster.kubectl("get", "endpointslices", "-n", NAMESPACE, "-o", "json").stdout
        result: dict[str, dict] = {}
        for item in json.loads(out)["items"]:
            pods = result.setdefault(item["metadata"]["labels"]["kubernetes.io/service-name"], {})
            for e in item.get("endpoints") or []:
                if e["conditions"].get("ready"):
                    hints = e.get("hints") or {}
                    pods[e["targetRef"]["name"]] = {
                        kind: sorted(h["name"] for h in hints[field])
                        for kind, field in (("zones", "forZones"), ("nodes", "forNodes")) if hints.get(field)}
        return result

    @classmethod
    def _wanted_hints(cls) -> dict[str, dict[str, dict]]:
        """What the EndpointSlice controller writes for each trafficDistribution."""
        place = {n.web.name: (n.name, n.zone) for n in cls.nodes}

        def zone_and_node(pod):
            return {"zones": [place[pod][1]], "nodes": [place[pod][0]]}

        webs = sorted(place)
        return {"same-node": {p: zone_and_node(p) for p in webs},
                "same-zone": {p: {"zones": [place[p][1]]} for p in webs},
                "close": {p: {"zones": [place[p][1]]} for p in webs},
                "pair-same-node": {p: zone_and_node(p) for p in PAIR},
                "zonal-local": {p: {"zones": [place[p][1]]} for p in webs},
                "all": {p: {} for p in webs}}

    @classmethod
    def _wait_slices(cls, timeout: float) -> None:
        wanted = cls._wanted_hints()
        deadline = time.monotonic() + timeout
        while (seen := cls._hints()) != wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"EndpointSlice hints {seen}, wanted {wanted} within {timeout} s")
            time.sleep(0.2)  # polling the API server with a deadline

    # ------------------------------------------------------------ helpers

    def tearDown(self):
        self.assert_kernels_are_truth()

    def answering(self, node: multi.LabNode, service: str) -> set[str]:
        """The web pods that answer node's client pod on the Service's
        ClusterIP; trace of the same packet, compiled for that node from the
        API server's objects, must name the same pods."""
        vip = self.services[service]["spec"]["clusterIP"]
        result = self.box.request(node.client.ns, vip, 80, count=CONNECTIONS, timeout=1.0)
        self.assertEqual(result.outcomes, {"reply": CONNECTIONS}, result.errors)
        reached = set(result.ids)
        objects = self.box.workdir / f"trace-{node.index}.yaml"
        objects.write_text(self.cluster.kubectl("get", "services,endpointslices,nodes,servicecidrs", "-A", "-o",
                                                "yaml", timeout=120).stdout)
        traced = json.loads(self.box.svcproxy_run(["trace", "--manifests", str(objects), *node.flags(), "--json",
                                                   "--src", node.client.v4, "--dst", vip, "--dport", "80"]).stdout)
        by_ip = {n.web.v4: n.web.name for n in self.nodes}
        self.assertEqual({by_ip[sb.split_hostport(e)[0]] for e in traced.get("endpoints", [])}, reached,
                         f"trace and the packets disagree on {node.name} for {service}: {traced}")
        return reached

    def check(self, service: str, expected: dict[int, set[str]]) -> None:
        """expected: node index -> the web pods its client reaches."""
        for node in self.nodes:
            with self.subTest(service=service, node=node.name, zone=node.zone):
                self.assertEqual(self.answering(node, service), expected[node.index])

    # ------------------------------------------------------------ tests

    def test_prefer_same_node_keeps_traffic_on_the_node(self):
        self.check("same-node", {1: {"web-1"}, 2: {"web-2"}, 3: {"web-3"}})

    def test_prefer_same_zone_and_prefer_close_keep_traffic_in_the_zone(self):
        for service in ("same-zone", "close"):
            self.check(service, {1: {"web-1"}, 2: {"web-2", "web-3"}, 3: {"web-2", "web-3"}})

    def test_prefer_same_node_without_a_local_pod_falls_back_to_the_zone(self):
        self.check("pair-same-node", {1: {"web-1"}, 2: {"web-2"}, 3: {"web-2"}})

    def test_internal_traffic_policy_local_wins_over_zone_hints(self):
        self.check("zonal-local", {1: {"web-1"}, 2: {"web-2"}, 3: {"web-3"}})

    def test_without_trafficdistribution_every_pod_answers(self):
        webs = {n.web.name for n in self.nodes}
        self.check("all", {1: webs, 2: webs, 3: webs})

    def test_zone_label_change_moves_the_node_to_its_new_zone(self):
        """Node 3 relabelled zone-b -> zone-a through the API: its svcproxy
        (watching its Node) makes a full sync, and its client now reaches
        zone-a's pods: web-1 (and web-3 if the controller rewrote its hint),
        never web-2 of zone-b."""
        third = self.nodes[2]
        self.assertEqual(self.answering(third, "same-zone"), {"web-2", "web-3"})
        mark = third.daemon.mark()
        self.addCleanup(self._relabel, third, "zone-b")
        self._relabel(third, "zone-a")
        third.daemon.lines.wait_for(lambda line: (sync := sb.parse_sync_line(line)) is not None and sync.ok
                                    and sync.mode == "full", start=mark, timeout=CONVERGE,
                                    what=f"{third.name}: a full sync after its zone changed")
        self.assert_kernels_are_truth()
        reached = self.answering(third, "same-zone")
        self.assertIn("web-1", reached)
        self.assertNotIn("web-2", reached)
        self.assertEqual(self.answering(third, "same-node"), {"web-3"}, "node hints do not depend on the zone")

    def _relabel(self, node: multi.LabNode, zone: str) -> None:
        self.cluster.kubectl("label", "node", node.name, f"topology.kubernetes.io/zone={zone}", "--overwrite")


if __name__ == "__main__":
    unittest.main()
