"""Differential test: the real kube-proxy (nftables mode) and svcproxy, side
by side against one real control plane, answer the same packets the same way.

Topology: two identical lab topologies (sandbox.py), one per proxy ("twins").
Each has the same node (same name, same addresses), external client, sink,
and the same pods at the same addresses, each running the same echo
servers. Both node namespaces are linked to the control plane
(tests/cluster/cluster.py). Why two copies rather than one pod set routed
from two nodes: a pod set shared by two nodes would need the pods' return
traffic split between two gateways, and reverse NAT must happen in the node
that did the DNAT; two copies keep every packet inside one topology, exactly
as sandbox.py's other tests have it, and the twins differ only by the proxy.
Both proxies run under the same node name (`--hostname-override`), so the
one Node object (InternalIP = the node IP both copies share) and the
EndpointSlices' nodeName split the endpoints into local and remote for both
alike. The pod agents (tests/cluster/podagent.py) run in the kube-proxy
twin's node namespace: one registers the node with the local pods web-1
and web-2, one a second node with web-3 (a "remote" pod, wired like the
others; only its nodeName says where it runs), and they probe the
kube-proxy twin's copies for real; the svcproxy twin's copies serve the
same ids, so readiness (all Ready here) is the same for both. Services are
created with kubectl; the real EndpointSlice controller builds their
slices. Then kube-proxy v1.37.2 (`--proxy-mode=nftables`, conntrack
sysctl writes off: see tests/cluster/README.md) runs in one node namespace
and `svcproxy run --kubeconfig` in the other.

For every flow (ClusterIP TCP from a pod and from off-cluster, ClusterIP
UDP, NodePort, Services without endpoints (TCP, UDP, NodePort), ClientIP
affinity, externalTrafficPolicy Local over a NodePort and a LoadBalancer
IP, and with only a remote endpoint, internalTrafficPolicy Local, a
LoadBalancer ingress IP, trafficDistribution PreferSameNode and
PreferSameZone with the remote node in another zone) the same batch of fresh connections goes through
each twin, and three observations are compared: the verdict (reply /
refused / timeout ...), the set of endpoints that answered (for affinity:
how many), and the source addresses the echo servers saw (masquerade or
not). A table of both sides is printed. The eTP=Local LoadBalancers'
healthCheckNodePorts are asked from outside on both twins (status,
localEndpoints). The comparator itself is checked on real packets: pointing
one twin at a different Service must be reported as a difference.

Needs root, openssl and the cluster binaries (tests/cluster/build.sh);
skipped with the reason otherwise.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_differential (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import sys
import unittest
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402
import labnode  # noqa: E402

NAMESPACE = f"diff-{os.getpid()}"
NODE = f"diff-{os.getpid()}-node"
REMOTE_NODE = f"diff-{os.getpid()}-remote"
REMOTE_NODE_IP = "192.0.2.50"
LOCAL_PODS = [sb.Pod("web-1", 1, node=NODE), sb.Pod("web-2", 2, node=NODE)]
REMOTE_PODS = [sb.Pod("web-3", 3, node=REMOTE_NODE)]
NOTHING = {"app": "nothing"}  # a selector no pod matches
CLIENT_POD = "client"  # a pod of no Service: the in-cluster client
TCP_PORT, UDP_PORT = 8080, 5353
LB_IP = "192.0.2.100"
CONNECTIONS = 40  # per flow and twin: P(missing one of 3 random endpoints) = 3 * (2/3)^40, about 3e-7
PROBE = {"port": TCP_PORT, "path": "/", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3,
         "successThreshold": 1}
CLUSTER_CIDRS = ",".join(sb.CLUSTER_CIDRS)

# Flows where the two proxies differ on purpose: flow name -> reason (README, "Where it differs from
# kube-proxy"). Empty: none of the flows below differs.
INTENDED_DIFFERENCES: dict[str, str] = {}

CLUSTER = lab.ForTests()


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    CLUSTER.set_up_module()


def tearDownModule():
    CLUSTER.release()


def service(name: str, *, selector: dict | None = None, udp: bool = False, type: str = "ClusterIP",
            **spec) -> dict:
    port = {"name": "p", "port": 53 if udp else 80, "targetPort": UDP_PORT if udp else TCP_PORT,
            "protocol": "UDP" if udp else "TCP"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": selector or {"app": "web"}, "type": type, "ports": [port], **spec}}


SERVICES = [
    service("tcp"),
    service("udp", udp=True),
    service("nodeport", type="NodePort"),
    service("empty", selector=NOTHING),
    service("empty-udp", selector=NOTHING, udp=True),
    service("empty-nodeport", selector=NOTHING, type="NodePort"),
    service("affinity", sessionAffinity="ClientIP"),
    service("etp-local", type="NodePort", externalTrafficPolicy="Local"),
    service("itp-local", internalTrafficPolicy="Local"),
    service("lb", type="LoadBalancer"),
    service("lb-local", type="LoadBalancer", externalTrafficPolicy="Local"),
    # Its only endpoint is on the other node: external traffic has no local endpoint to go to.
    service("lb-remote", type="LoadBalancer", externalTrafficPolicy="Local", selector={"pod": "web-3"}),
    # The controller's hints: forNodes (and forZones) / forZones; web-3's node is in zone-b.
    service("same-node", trafficDistribution="PreferSameNode"),
    service("same-zone", trafficDistribution="PreferSameZone"),
]
LB_INGRESS = {"lb": LB_IP, "lb-local": "192.0.2.101", "lb-remote": "192.0.2.102"}
# Endpoint slices each Service must have before the proxies start: its pods, all ready.
ALL_PODS = {p.name for p in LOCAL_PODS + REMOTE_PODS}


@dataclass(frozen=True)
class Flow:
    name: str
    client: str  # "ext" (off-cluster) or "pod" (the client pod)
    service: str
    target: str  # "cluster-ip", "node-port", "lb"
    udp: bool = False
    affinity: bool = False  # compare how many endpoints answered, not which (the pick is random)


FLOWS = [
    Flow("clusterip-tcp-from-pod", "pod", "tcp", "cluster-ip"),
    Flow("clusterip-tcp-from-ext", "ext", "tcp", "cluster-ip"),
    Flow("clusterip-udp-from-pod", "pod", "udp", "cluster-ip", udp=True),
    Flow("nodeport-from-ext", "ext", "nodeport", "node-port"),
    Flow("nodeport-from-pod", "pod", "nodeport", "node-port"),
    Flow("no-endpoints", "pod", "empty", "cluster-ip"),
    Flow("no-endpoints-udp", "pod", "empty-udp", "cluster-ip", udp=True),
    Flow("no-endpoints-nodeport", "ext", "empty-nodeport", "node-port"),
    Flow("affinity-clientip", "pod", "affinity", "cluster-ip", affinity=True),
    Flow("etp-local-nodeport", "ext", "etp-local", "node-port"),
    Flow("etp-local-nodeport-from-pod", "pod", "etp-local", "node-port"),
    Flow("etp-local-clusterip", "pod", "etp-local", "cluster-ip"),
    Flow("itp-local-from-pod", "pod", "itp-local", "cluster-ip"),
    Flow("loadbalancer-ip", "ext", "lb", "lb"),
    Flow("loadbalancer-ip-etp-local", "ext", "lb-local", "lb"),
    Flow("loadbalancer-ip-etp-local-remote-only", "ext", "lb-remote", "lb"),
    Flow("etp-local-remote-only-from-pod", "pod", "lb-remote", "cluster-ip"),
    Flow("prefer-same-node-from-pod", "pod", "same-node", "cluster-ip"),
    Flow("prefer-same-zone-from-pod", "pod", "same-zone", "cluster-ip"),
]


@dataclass(frozen=True)
class Observation:
    verdict: str  # the outcomes of all connections, e.g. "reply" or "refused" or "reply 38, timeout 2"
    endpoints: str  # the pod ids that answered (sorted), or for affinity flows how many
    sources: str  # the client addresses the echo servers saw (sorted)


def observe(result: sb.RequestResult, affinity: bool) -> Observation:
    verdict = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items())) if len(result.outcomes) > 1 \
        else next(iter(result.outcomes), "none")
    ids = sorted(set(result.ids))
    endpoints = f"{len(ids)} endpoint(s)" if affinity else ",".join(ids) or "-"
    sources = ",".join(sorted({ip for _, ip, _ in result.replies})) or "-"
    return Observation(verdict, endpoints, sources)


class Twin:
    """One lab topology, its proxy and the client namespaces."""

    def __init__(self, label: str, box: sb.Sandbox):
        self.label, self.box = label, box
        self.proxy: sb.Background | None = None

    def client_ns(self, client: str) -> str:
        return self.box.ext if client == "ext" else self.box.pods[CLIENT_POD].ns

    def send(self, flow: Flow, addresses: dict) -> Observation:
        dst, port = addresses[flow.service][flow.target]
        result = self.box.request(self.client_ns(flow.client), dst, port, proto="udp" if flow.udp else "tcp",
                                  count=CONNECTIONS, timeout=1.0)
        return observe(result, flow.affinity)


class TestDifferential(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = CLUSTER.cluster
        cls.twins: list[Twin] = []
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        for label in ("kube-proxy", "svcproxy"):
            box = sb.Sandbox(SVCPROXY)
            cls.twins.append(Twin(label, box))
            box.build()
            box.add_pods(LOCAL_PODS if label == "kube-proxy" else [sb.Pod(p.name, p.index, node=NODE)
                                                                     for p in LOCAL_PODS])
            box.add_pods(REMOTE_PODS if label == "kube-proxy" else [sb.Pod(p.name, p.index, node=REMOTE_NODE)
                                                                      for p in REMOTE_PODS])
            box.add_pods([sb.Pod(CLIENT_POD, 9)])
            cls.cluster.attach(box.node)
            echoes = []
            for name in ALL_PODS:
                echoes += box.start_pod_echoes(box.pods[name], [(TCP_PORT, "tcp"), (UDP_PORT, "udp")],
                                               id_format="{pod}", wait=False)
            box.wait_ready(echoes)
        cls.kp, cls.svp = cls.twins
        cls.agents = [cls._start_agent(NODE, sb.NODE_V4, LOCAL_PODS), cls._start_agent(REMOTE_NODE, REMOTE_NODE_IP,
                                                                                     REMOTE_PODS, "zone-b")]
        for agent, pods in zip(cls.agents, (LOCAL_PODS, REMOTE_PODS)):
            labnode.wait_registered(agent, [p.name for p in pods])
        cls.cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "items": SERVICES}))
        for name, ip in LB_INGRESS.items():
            cls.cluster.kubectl("patch", "service", "-n", NAMESPACE, name, "--subresource=status", "--type=merge",
                                "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}))
        cls.addresses = cls._addresses()
        cls._wait_slices(60)
        # Both proxies start once every slice is complete, so their first sync has everything.
        cls.kp.proxy = labnode.start_kube_proxy(cls.kp.box, cls.cluster, NODE, CLUSTER_CIDRS)
        cls.svp.proxy = labnode.start_svcproxy(cls.svp.box, SVCPROXY, cls.cluster, NODE, sb.NODE_V4, CLUSTER_CIDRS)
        sb.Daemon(cls.svp.proxy).wait_sync(reason="start", timeout=60)
        labnode.wait_kube_proxy_synced(cls.kp.box, cls.kp.proxy, [a["cluster-ip"][0] for a in cls.addresses.values()],
                                       90)

    @classmethod
    def tearDownClass(cls):
        # Proxies and agents first (closing an agent's stdin deletes its Pods and Node), then the
        # namespace's objects (no namespace controller runs), then the topologies.
        for twin in cls.twins:
            if twin.proxy:
                twin.proxy.stop()
        for agent in getattr(cls, "agents", []):
            agent.stop(timeout=15)
        cls.cluster.kubectl("delete", "services,endpointslices,pods", "--all", "-n", NAMESPACE,
                            "--ignore-not-found", "--wait=false", check=False)
        cls.cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
        cls.cluster.kubectl("delete", "nodes", NODE, REMOTE_NODE, "--ignore-not-found", "--wait=false",
                            check=False)
        for twin in cls.twins:
            twin.box.close()

    # ------------------------------------------------------------ set-up helpers

    @classmethod
    def _start_agent(cls, node: str, ip: str, pods: list[sb.Pod], zone: str = "zone-a") -> sb.Background:
        return labnode.start_agent(cls.kp.box, cls.cluster, node, ip, [
            labnode.pod_config(p.name, NAMESPACE, [p.v4], labels={"app": "web", "pod": p.name},
                               ports=[{"name": "p", "containerPort": TCP_PORT}], probe=PROBE) for p in pods],
                                   zone=zone)

    @classmethod
    def _addresses(cls) -> dict:
        """Service name -> {"cluster-ip"|"node-port"|"lb": (address, port)}."""
        items = json.loads(cls.cluster.kubectl("get", "services", "-n", NAMESPACE, "-o", "json").stdout)["items"]
        result = {}
        for item in items:
            spec, port = item["spec"], item["spec"]["ports"][0]
            result[item["metadata"]["name"]] = {
                "cluster-ip": (spec["clusterIP"], port["port"]),
                "node-port": (sb.NODE_V4, port.get("nodePort")),
                "lb": (LB_INGRESS.get(item["metadata"]["name"]), port["port"]),
                "health": (sb.NODE_V4, spec.get("healthCheckNodePort")),
            }
        return result

    @classmethod
    def _wait_slices(cls, timeout: float) -> None:
        wanted = {s["metadata"]["name"]: set() if s["spec"]["selector"] == NOTHING
                  else {s["spec"]["selector"]["pod"]} if "pod" in s["spec"]["selector"] else ALL_PODS
                  for s in SERVICES}
        labnode.wait_slices(cls.cluster, NAMESPACE, {name: {p: True for p in pods} for name, pods in wanted.items()},
                            timeout)

    # ------------------------------------------------------------ tests

    def compare(self, flows: list[Flow], svp_flows: list[Flow] | None = None) -> list[tuple[Flow, Observation,
                                                                                              Observation]]:
        rows = []
        for flow, svp_flow in zip(flows, svp_flows or flows):
            rows.append((flow, self.kp.send(flow, self.addresses), self.svp.send(svp_flow, self.addresses)))
        return rows

    @staticmethod
    def table(rows) -> str:
        header = ("flow", "kube-proxy", "svcproxy", "")
        lines = [header]
        for flow, kp, svp in rows:
            for field in ("verdict", "endpoints", "sources"):
                a, b = getattr(kp, field), getattr(svp, field)
                lines.append((f"{flow.name} {field}", a, b, "same" if a == b else "DIFFERS"))
        widths = [max(len(r[i]) for r in lines) for i in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)

    def test_every_flow_answers_alike(self):
        rows = self.compare(FLOWS)
        print("\n" + self.table(rows), file=sys.stderr)
        for flow, kp, svp in rows:
            with self.subTest(flow=flow.name):
                if flow.name in INTENDED_DIFFERENCES:
                    self.assertNotEqual(kp, svp, f"{flow.name} no longer differs: {INTENDED_DIFFERENCES[flow.name]}")
                else:
                    self.assertEqual(kp, svp, f"{flow.name}: kube-proxy and svcproxy disagree")
        # The comparison is only worth something if the flows exercise what they are named after.
        seen = {flow.name: kp for flow, kp, _ in rows}
        self.assertEqual(seen["clusterip-tcp-from-pod"].endpoints, "web-1,web-2,web-3")
        self.assertEqual(seen["clusterip-tcp-from-pod"].sources, "10.244.9.2", "a pod's source is kept")
        self.assertEqual(seen["no-endpoints"].verdict, "refused")
        self.assertEqual(seen["affinity-clientip"].endpoints, "1 endpoint(s)")
        self.assertEqual(seen["etp-local-nodeport"].endpoints, "web-1,web-2")
        self.assertEqual(seen["etp-local-nodeport"].sources, sb.EXT_V4, "eTP=Local keeps the client's address")
        self.assertEqual(seen["itp-local-from-pod"].endpoints, "web-1,web-2")
        self.assertNotIn(sb.EXT_V4, seen["nodeport-from-ext"].sources, "eTP=Cluster masquerades")
        self.assertEqual(seen["prefer-same-node-from-pod"].endpoints, "web-1,web-2", "this node's pods")
        self.assertEqual(seen["prefer-same-zone-from-pod"].endpoints, "web-1,web-2", "zone-a's pods")

    def test_health_check_node_ports_answer_alike(self):
        """An eTP=Local LoadBalancer's healthCheckNodePort, asked from outside: status and the
        localEndpoints count (the load balancer's view of this node)."""
        rows = []
        for name in ("lb-local", "lb-remote"):
            ip, port = self.addresses[name]["health"]
            answers = [self.health(twin, ip, port) for twin in (self.kp, self.svp)]
            rows.append((name, *answers))
            print(f"\nhealth check {name} (:{port}): kube-proxy {answers[0]}, svcproxy {answers[1]}", file=sys.stderr)
        for name, kp, svp in rows:
            self.assertEqual(kp, svp, f"health check of {name}")
        self.assertEqual([kp for _, kp, _ in rows], [(200, 2), (503, 0)])

    @staticmethod
    def health(twin: Twin, ip: str, port: int) -> tuple[int, int | None]:
        """(HTTP status, localEndpoints) of GET / on a health check node port, from the external client."""
        out = twin.box.exec(twin.box.ext, ["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}",
                                           f"http://{ip}:{port}/"], check=False).stdout
        body, _, code = out.rpartition("\n")
        try:
            local = json.loads(body)["localEndpoints"]
        except (ValueError, KeyError):
            local = None
        return int(code or 0), local

    def test_comparator_reports_a_mismatch(self):
        """The same flow, with the svcproxy twin pointed at a different Service (ClientIP affinity
        instead of the plain one, then a Service without endpoints): both must show as differences."""
        plain = Flow("clusterip-tcp-from-pod", "pod", "tcp", "cluster-ip")
        other = [Flow("clusterip-tcp-from-pod", "pod", "affinity", "cluster-ip"),
                 Flow("clusterip-tcp-from-pod", "pod", "empty", "cluster-ip")]
        rows = self.compare([plain, plain], other)
        print("\n" + self.table(rows), file=sys.stderr)
        for _, kp, svp in rows:
            self.assertNotEqual(kp, svp)


if __name__ == "__main__":
    unittest.main()
