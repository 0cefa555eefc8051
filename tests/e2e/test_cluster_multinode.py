"""End-to-end against a real control plane: three nodes, the DaemonSet's shape.

Topology (every namespace is the test's own; nothing touches the host's):

                       lab (bridge br0, the external client 192.168.50.100)
          +-------------------------+-------------------------+
      192.168.50.1              192.168.50.2              192.168.50.3
      node 1, zone-a            node 2, zone-b            node 3, zone-b
       |        |                |        |                |        |
     web-1   client-1          web-2   client-2          web-3   client-3
   10.244.11.2 10.244.19.2   10.244.21.2 10.244.29.2   10.244.31.2 10.244.39.2

Each node namespace routes its own pods (one veth each, as sandbox.py does)
and the other nodes' pods via their node's address on br0 (the cross-node
pod routes a CNI would set up). Each node is linked to the control plane
(tests/cluster/cluster.py, `attach`) and runs its own pod agent
(tests/cluster/podagent.py: its Node with the zone label and InternalIP, its
web pod, the pod's readiness probe for real) and its own `svcproxy run
--kubeconfig --hostname-override <node>`. The client pods are not API
objects: they only send. Services are created with kubectl; the real
EndpointSlice controller builds the slices (nodeName, zone and, for
trafficDistribution PreferClose, hints.forZones).

  - Cross-node ClusterIP: from each node's client pod a selector Service
    reaches the web pods of every node, with the pod's own source address.
  - externalTrafficPolicy Local (LoadBalancer, so it has a
    healthCheckNodePort): from outside, each node's NodePort reaches only
    its own pod, keeping the client's address; for a Service whose only
    pod is on node 1, nodes 2 and 3 drop it (as kube-proxy: no answer,
    nothing forwarded) and their healthCheckNodePort answers 503 with
    localEndpoints 0 while node 1's answers 200 with localEndpoints 1
    (kube-proxy's JSON body: service namespace/name, localEndpoints,
    serviceProxyHealthy).
  - Topology hints: with PreferClose each node sends only to its zone's
    endpoints (node 1: web-1; nodes 2 and 3: web-2 and web-3).

Every test ends with each node's kernel (`svcproxy rules --live` in the
node) equal to `svcproxy rules --manifests` of `kubectl get
services,endpointslices,nodes,servicecidrs -A -o yaml` with that node's
flags.

Needs root, openssl and the cluster binaries (tests/cluster/build.sh).
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_multinode (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import sys
import time
import unittest
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402

PODAGENT = SOURCE_DIR / "tests" / "cluster" / "podagent.py"
NAMESPACE = f"multi-{os.getpid()}"
EXT_IP = "192.168.50.100"
CLUSTER_CIDR = "10.244.0.0/16"
PORT = 8080
PROBE = {"port": PORT, "path": "/", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3,
         "successThreshold": 1}
CONNECTIONS = 30  # per request batch: P(missing one of 3 random endpoints) = 3 * (2/3)^30, about 1.6e-5
CONVERGE = 60.0  # seconds, on two busy cores


@dataclass
class LabNode:
    index: int  # 1..3
    zone: str
    name: str = ""
    ip: str = ""
    ns: str = ""
    web: sb.Pod | None = None
    client: sb.Pod | None = None
    agent: sb.Background | None = None
    daemon: sb.Daemon | None = None

    def flags(self) -> list[str]:
        return ["--hostname-override", self.name, "--node-ip", self.ip, "--cluster-cidr", CLUSTER_CIDR]


ZONES = ("zone-a", "zone-b", "zone-b")
CLUSTER = lab.ForTests()


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    CLUSTER.set_up_module()


def tearDownModule():
    CLUSTER.release()


def service(name: str, selector: dict, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": PORT}], **spec}}


SERVICES = [
    service("all", {"app": "web"}),
    service("only-3", {"pod": "web-3"}),
    service("etp-local", {"app": "web"}, type="LoadBalancer", externalTrafficPolicy="Local"),
    service("etp-one", {"pod": "web-1"}, type="LoadBalancer", externalTrafficPolicy="Local"),
    service("zonal", {"app": "web"}, trafficDistribution="PreferClose"),
]


class TestMultiNode(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = CLUSTER.cluster
        cls.box = sb.Sandbox(SVCPROXY)
        cls.nodes = [LabNode(i, zone) for i, zone in enumerate(ZONES, 1)]
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        started = time.monotonic()
        cls._build_lab()
        echoes = []
        for node in cls.nodes:
            for pod in (node.web, node.client):
                echoes.append(cls.box.start_echo(pod.ns, f"[::]:{PORT}", id=pod.name, wait=False))
        cls.box.wait_ready(echoes)
        for node in cls.nodes:
            cls.cluster.attach(node.ns)
            node.agent = cls._start_agent(node)
        for node in cls.nodes:
            _wait_agent(node.agent, lambda e, p=node.web.name: e.get("event") == "ready" and e["pod"] == p
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
        print(f"\nmulti-node lab up in {time.monotonic() - started:.1f} s", file=sys.stderr)

    @classmethod
    def _build_lab(cls):
        """The lab network, three nodes on it, a web and a client pod on each, cross-node pod routes."""
        box = cls.box
        lab_ns = cls.lab_ns = f"{box.prefix}-lab"
        box._add_netns(lab_ns)
        box._sysctls(lab_ns, sb._LEAF_SYSCTLS)
        box.ip_batch(lab_ns, ["link set lo up", "link add br0 type bridge", "link set br0 up",
                              f"addr add {EXT_IP}/24 dev br0"])
        for node in cls.nodes:
            i = node.index
            node.name, node.ip, node.ns = f"multi-{os.getpid()}-node{i}", f"192.168.50.{i}", f"{box.prefix}-n{i}"
            box._add_netns(node.ns)
            box._sysctls(node.ns, sb._NODE_SYSCTLS)
            box.ip_batch(node.ns, ["link set lo up", f"link add eth0 type veth peer name n{i} netns {lab_ns}",
                                   f"addr add {node.ip}/24 dev eth0", "link set eth0 up"])
            box.ip_batch(lab_ns, [f"link set n{i} master br0", f"link set n{i} up"])
            node.web, node.client = sb.Pod(f"web-{i}", 10 * i + 1, node=node.name), sb.Pod(f"client-{i}", 10 * i + 9)
            cmds = []
            for k, pod in ((1, node.web), (9, node.client)):
                pod.ns = f"{box.prefix}-{pod.name}"
                pod.v4, pod.gw4 = f"10.244.{pod.index}.2", f"10.244.{pod.index}.1"
                box._add_netns(pod.ns)
                box._sysctls(pod.ns, sb._LEAF_SYSCTLS)
                cmds += [f"link add vp{k} type veth peer name eth0 netns {pod.ns}", f"addr add {pod.gw4}/24 dev vp{k}",
                         f"link set vp{k} up"]
            box.ip_batch(node.ns, cmds)
            for pod in (node.web, node.client):
                box.ip_batch(pod.ns, ["link set lo up", f"addr add {pod.v4}/24 dev eth0", "link set eth0 up",
                                      f"route add default via {pod.gw4}"])
        for node in cls.nodes:
            box.ip_batch(node.ns, [f"route add 10.244.{pod.index}.0/24 via {other.ip}"
                                   for other in cls.nodes if other is not node
                                   for pod in (other.web, other.client)])

    @classmethod
    def _start_agent(cls, node: LabNode) -> sb.Background:
        info = cls.cluster.info()
        config = {key: info[key] for key in ("server", "ca", "cert", "key")}
        config["node"] = {"name": node.name, "ip": node.ip, "zone": node.zone}
        config["pods"] = [{"name": node.web.name, "namespace": NAMESPACE, "ips": [node.web.v4],
                           "labels": {"app": "web", "pod": node.web.name},
                           "ports": [{"name": "http", "containerPort": PORT}], "probe": PROBE}]
        path = cls.box.workdir / f"podagent-{node.index}.json"
        path.write_text(json.dumps(config))
        return cls.box.spawn(node.ns, [sys.executable, str(PODAGENT), str(path)], name=f"podagent-{node.index}")

    @classmethod
    def _slices(cls) -> dict[str, dict[str, list[str] | None]]:
        """Service -> {ready pod: its hinted zones (None without hints)}, as the API server has them."""
        out = cls.cluster.kubectl("get", "endpointslices", "-n", NAMESPACE, "-o", "json").stdout
        result: dict[str, dict] = {}
        for item in json.loads(out)["items"]:
            pods = result.setdefault(item["metadata"]["labels"]["kubernetes.io/service-name"], {})
            for e in item.get("endpoints") or []:
                if e["conditions"].get("ready"):
                    hints = (e.get("hints") or {}).get("forZones")
                    pods[e["targetRef"]["name"]] = sorted(z["name"] for z in hints) if hints else None
        return result

    @classmethod
    def _wait_slices(cls, timeout: float) -> None:
        every = {"web-1": None, "web-2": None, "web-3": None}
        wanted = {"all": every, "only-3": {"web-3": None}, "etp-local": every, "etp-one": {"web-1": None},
                  "zonal": {"web-1": ["zone-a"], "web-2": ["zone-b"], "web-3": ["zone-b"]}}
        deadline = time.monotonic() + timeout
        while (seen := cls._slices()) != wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"EndpointSlices {seen}, wanted {wanted} within {timeout} s")
            time.sleep(0.2)  # polling the API server with a deadline

    @classmethod
    def tearDownClass(cls):
        # Proxies, then agents (closing an agent's stdin deletes its Pod and Node), then the namespace's
        # objects (no namespace controller runs), then the lab.
        for node in cls.nodes:
            if node.daemon:
                node.daemon.stop()
        for node in cls.nodes:
            if node.agent:
                node.agent.stop(timeout=15)
        cls.cluster.kubectl("delete", "services,endpointslices,pods", "--all", "-n", NAMESPACE,
                            "--ignore-not-found", "--wait=false", check=False)
        cls.cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
        cls.cluster.kubectl("delete", "nodes", *(n.name for n in cls.nodes if n.name), "--ignore-not-found",
                            "--wait=false", check=False)
        cls.box.close()

    # ------------------------------------------------------------ helpers

    def tearDown(self):
        self.assert_kernels_are_truth()

    def cluster_ip(self, name: str) -> str:
        return self.services[name]["spec"]["clusterIP"]

    def node_port(self, name: str) -> int:
        return self.services[name]["spec"]["ports"][0]["nodePort"]

    def health_port(self, name: str) -> int:
        return self.services[name]["spec"]["healthCheckNodePort"]

    def send(self, ns: str, dst: str, port: int, count: int = CONNECTIONS) -> sb.RequestResult:
        return self.box.request(ns, dst, port, count=count, timeout=1.0)

    def truth(self, node: LabNode, objects: Path) -> str:
        return self.box.svcproxy_run(["rules", "--manifests", str(objects), *node.flags()]).stdout

    def assert_kernels_are_truth(self, timeout: float = CONVERGE) -> None:
        """Each node's kernel holds the rules of the API server's objects, compiled for that node."""
        objects = self.box.workdir / "truth.yaml"
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while True:
                objects.write_text(self.cluster.kubectl("get", "services,endpointslices,nodes,servicecidrs", "-A",
                                                        "-o", "yaml", timeout=120).stdout)
                live = self.box.svcproxy_in(node.ns, ["rules", "--live"]).stdout
                truth = self.truth(node, objects)
                if live == truth:
                    break
                if time.monotonic() > deadline:
                    self.assertEqual(live, truth, f"{node.name}'s kernel is not the API server's state")
                time.sleep(0.5)  # a daemon may still be syncing (another test's objects): polling with a deadline

    def health(self, node: LabNode, port: int) -> tuple[int, dict]:
        """(HTTP status, JSON body) of GET / on a healthCheckNodePort, from the external client."""
        out = self.box.exec(self.lab_ns, ["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}",
                                          f"http://{node.ip}:{port}/"], check=False).stdout
        body, _, code = out.rpartition("\n")
        try:
            return int(code or 0), json.loads(body)
        except ValueError:
            return int(code or 0), {"unparsed": body}

    # ------------------------------------------------------------ tests

    def test_cluster_ip_reaches_pods_on_every_node(self):
        webs = {n.web.name for n in self.nodes}
        for node in self.nodes:
            with self.subTest(client=node.client.name):
                result = self.send(node.client.ns, self.cluster_ip("all"), 80)
                self.assertEqual(result.outcomes, {"reply": CONNECTIONS}, result.errors)
                self.assertEqual(set(result.ids), webs, "every node's pod answers through the ClusterIP")
                self.assertEqual({ip for _, ip, _ in result.replies}, {node.client.v4},
                                 "pod-to-pod across nodes keeps the pod's address")
        # From node 1 to a Service whose only pod is on node 3.
        result = self.send(self.nodes[0].client.ns, self.cluster_ip("only-3"), 80, count=5)
        self.assertEqual(result.outcomes, {"reply": 5}, result.errors)
        self.assertEqual(set(result.ids), {"web-3"})

    def test_external_traffic_policy_local_serves_only_local_endpoints(self):
        for node in self.nodes:
            with self.subTest(node=node.name):
                result = self.send(self.lab_ns, node.ip, self.node_port("etp-local"))
                self.assertEqual(result.outcomes, {"reply": CONNECTIONS}, result.errors)
                self.assertEqual(set(result.ids), {node.web.name}, "a node's NodePort sends only to its own pod")
                self.assertEqual({ip for _, ip, _ in result.replies}, {EXT_IP}, "eTP=Local keeps the client's address")
                status, body = self.health(node, self.health_port("etp-local"))
                self.assertEqual((status, body.get("localEndpoints")), (200, 1), body)

        first, *others = self.nodes
        result = self.send(self.lab_ns, first.ip, self.node_port("etp-one"), count=5)
        self.assertEqual((result.outcomes, set(result.ids)), ({"reply": 5}, {"web-1"}), result.errors)
        status, body = self.health(first, self.health_port("etp-one"))
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"service": {"namespace": NAMESPACE, "name": "etp-one"}, "localEndpoints": 1,
                                "serviceProxyHealthy": True})
        for node in others:
            with self.subTest(node=node.name):
                # No local endpoint: dropped (kube-proxy drops, it does not reject), nothing answers.
                result = self.send(self.lab_ns, node.ip, self.node_port("etp-one"), count=3)
                self.assertEqual(result.outcomes, {"timeout": 3}, result.raw)
                status, body = self.health(node, self.health_port("etp-one"))
                self.assertEqual(status, 503, body)
                self.assertEqual(body, {"service": {"namespace": NAMESPACE, "name": "etp-one"}, "localEndpoints": 0,
                                        "serviceProxyHealthy": True})

    def test_topology_hints_keep_traffic_in_the_zone(self):
        same_zone = {zone: {n.web.name for n in self.nodes if n.zone == zone} for zone in ZONES}
        for node in self.nodes:
            with self.subTest(node=node.name, zone=node.zone):
                result = self.send(node.client.ns, self.cluster_ip("zonal"), 80)
                self.assertEqual(result.outcomes, {"reply": CONNECTIONS}, result.errors)
                self.assertEqual(set(result.ids), same_zone[node.zone])
        # The plain Service from the same clients still spreads over all zones (the hints make the difference).
        self.assertEqual(set(self.send(self.nodes[0].client.ns, self.cluster_ip("all"), 80).ids),
                         {n.web.name for n in self.nodes})


def _wait_agent(agent: sb.Background, predicate, what: str, timeout: float) -> dict:
    def match(line: str) -> bool:
        try:
            return predicate(json.loads(line))
        except (ValueError, KeyError):
            return False
    index = agent.lines.wait_for(match, timeout=timeout, what=f"pod agent: {what}")
    return json.loads(agent.lines.snapshot(index)[0])


if __name__ == "__main__":
    unittest.main()
