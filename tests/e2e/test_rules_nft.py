"""End-to-end: `svcproxy rules` loaded with `nft -f` into a node namespace,
real TCP/UDP traffic through it, and `svcproxy trace` checked against what
the packets actually did.

Every flow is checked twice (three times: `trace --live`, run in the node
namespace on the ruleset the kernel holds, must print what `trace` prints):
  1. trace agrees with the behaviour the test names (kube-proxy semantics);
  2. the packets agree with trace: the verdict (echo reply <-> DNAT/ACCEPT,
     connection refused <-> REJECT, timeout <-> DROP), the endpoints reached
     (a subset of trace's, and all of them when enough requests were sent),
     and masquerade (the source address the echo saw).

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_rules_nft (from tests/e2e).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import (EXT_V4, EXT_V4_ALT, EXT_V6, NODE_V4, NODE_V6, SINK_ID, Pod,  # noqa: E402
                     endpoint_slice, endpoint_str, family_of, service)

from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402
NS = "e2e"

# Pods: a* run on this node (node-a); b1 stands for a pod on node-b; m1 is
# the endpoint of a selectorless service whose slice has no nodeName (and
# of nothing else). a3 is not ready in every EndpointSlice. Each runs echo
# on TCP 8080, UDP 8080 and TCP 9090 and answers "<pod>:<port> <client>".
PODS = [Pod("a1", 1), Pod("a2", 2), Pod("a3", 3), Pod("b1", 201, node=sb.REMOTE_NODE_NAME), Pod("m1", 4)]
ECHO_PORTS = [(8080, "tcp"), (8080, "udp"), (9090, "tcp")]

# Service addresses used below.
WEB_V4, WEB_V6 = "10.96.0.10", "fd00:10:96::10"
DNS = "10.96.0.20"
EMPTY, EMPTY_EXT, EMPTY_LB = "10.96.0.30", "192.0.2.30", "192.0.2.31"
LOCAL_ONLY = "10.96.0.40"
LB, LB_INGRESS, LB_EXT, LB_V6 = "10.96.0.50", "192.0.2.51", "192.0.2.52", "fd00:10:96::50"
CL, CL_INGRESS, CL_EXT = "10.96.0.60", "192.0.2.61", "192.0.2.62"
AFFINITY = "10.96.0.70"
LOCAL_MIXED = "10.96.0.80"
DRAINING = "10.96.0.90"
LB_NODE, LB_NODE_INGRESS = "10.96.0.100", "192.0.2.101"
UDP_NP, UDP_NODEPORT = "10.96.0.110", 30110
MANUAL_V4, MANUAL_V6 = "10.96.0.120", "fd00:10:96::120"
UNALLOCATED_V4, UNALLOCATED_V6 = "10.96.0.200", "fd00:10:96::200"
NOT_A_SERVICE = "192.0.2.99"
WEB_NODEPORT, EMPTY_NODEPORT, LB_NODEPORT, CL_NODEPORT = 30080, 30030, 30050, 30060


def cluster_objects(pods: dict[str, Pod]) -> dict[str, list[dict]]:
    """The scenario cluster, as files of kubectl-shaped objects."""
    a1, a2, a3, b1, m1 = (pods[n] for n in ("a1", "a2", "a3", "b1", "m1"))
    unready = {"ready": False, "serving": False, "terminating": False}
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]

    def eps(*items):
        return [dict(pod=p, **(unready if p is a3 else {})) for p in items]

    services = [
        service("web", [WEB_V4, WEB_V6], [{"name": "http", "port": 80, "targetPort": 8080,
                                           "nodePort": WEB_NODEPORT}], namespace=NS, type="NodePort"),
        service("dns", [DNS], [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": "dns-tcp"}],
                namespace=NS),
        # One node port for TCP and UDP: the API server allows that only on the same port (else
        # "provided port is already allocated"; test_cluster_flows applies these to a real one).
        service("empty", [EMPTY], [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": EMPTY_NODEPORT},
                                   {"name": "syslog", "port": 80, "protocol": "UDP", "targetPort": 8080,
                                    "nodePort": EMPTY_NODEPORT}],
                namespace=NS, type="LoadBalancer", externalIPs=[EMPTY_EXT], ingress=[EMPTY_LB]),
        service("local-only", [LOCAL_ONLY], [{"name": "http", "port": 80, "targetPort": 8080},
                                             {"name": "udp", "port": 80, "protocol": "UDP", "targetPort": 8080}],
                namespace=NS, internalTrafficPolicy="Local"),
        service("lb", [LB, LB_V6], [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": LB_NODEPORT}],
                namespace=NS, type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=32050,
                externalIPs=[LB_EXT], loadBalancerSourceRanges=[f"{EXT_V4}/32"],
                ingress=[LB_INGRESS, {"ip": "192.0.2.59", "ipMode": "Proxy"}]),
        service("ext-cluster", [CL], [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": CL_NODEPORT}],
                namespace=NS, type="LoadBalancer", externalIPs=[CL_EXT], ingress=[CL_INGRESS]),
        service("affinity", [AFFINITY], [{"name": "http", "port": 80, "targetPort": 8080}], namespace=NS,
                sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}),
        service("local-mixed", [LOCAL_MIXED], [{"name": "http", "port": 80, "targetPort": 8080}], namespace=NS,
                internalTrafficPolicy="Local"),
        service("draining", [DRAINING], [{"name": "http", "port": 80, "targetPort": 8080}], namespace=NS),
        service("lb-node", [LB_NODE], [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30100}],
                namespace=NS, type="LoadBalancer", loadBalancerSourceRanges=[f"{NODE_V4}/32"],
                ingress=[LB_NODE_INGRESS]),
        service("udp-np", [UDP_NP], [{"name": "syslog", "port": 514, "protocol": "UDP", "targetPort": 8080,
                                      "nodePort": UDP_NODEPORT}], namespace=NS, type="NodePort"),
        selectorless("manual", [MANUAL_V4, MANUAL_V6], [{"name": "http", "port": 80, "targetPort": 8080}]),
        # Not ours / not proxied: must not appear.
        service("headless", ["None"], [{"name": "http", "port": 80}], namespace=NS),
    ]
    slices = [
        # web: two IPv4 slices merged, one IPv6 slice; a3 never ready.
        endpoint_slice("web", "ab12c", 4, eps(a1, a2), http, namespace=NS),
        endpoint_slice("web", "de34f", 4, eps(a3, b1), http, namespace=NS),
        endpoint_slice("web", "v6x9z", 6, eps(a1, a2, a3, b1), http, namespace=NS),
        endpoint_slice("dns", "k2l3m", 4, eps(a1, a2),
                       [{"name": "dns", "port": 8080, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 9090, "protocol": "TCP"}], namespace=NS),
        endpoint_slice("empty", "q1w2e", 4, eps(a3),
                       http + [{"name": "syslog", "port": 8080, "protocol": "UDP"}], namespace=NS),
        endpoint_slice("local-only", "r4t5y", 4, eps(b1),
                       http + [{"name": "udp", "port": 8080, "protocol": "UDP"}], namespace=NS),
        endpoint_slice("lb", "u7i8o", 4, eps(a1, b1), http, namespace=NS),
        endpoint_slice("lb", "v6p0a", 6, eps(a1, b1), http, namespace=NS),
        endpoint_slice("ext-cluster", "s1d2f", 4, eps(a1, b1), http, namespace=NS),
        endpoint_slice("affinity", "g3h4j", 4, eps(a1, a2, b1), http, namespace=NS),
        endpoint_slice("local-mixed", "z9x8c", 4, eps(a1, b1), http, namespace=NS),
        # No ready endpoint: the serving-and-terminating one is used, never the non-serving one.
        endpoint_slice("draining", "m1n2b", 4,
                       [{"pod": a1, "ready": False, "serving": True, "terminating": True},
                        {"pod": a2, "ready": False, "serving": False, "terminating": True}], http, namespace=NS),
        endpoint_slice("lb-node", "c5v6b", 4, eps(a2), http, namespace=NS),
        endpoint_slice("udp-np", "l7k8j", 4, eps(a1, b1), [{"name": "syslog", "port": 8080, "protocol": "UDP"}],
                       namespace=NS),
        *[hand_written(endpoint_slice("manual", f"v{family}", family, [{"pod": m1, "node": None}], http,
                                      namespace=NS)) for family in (4, 6)],
    ]
    nodes = [{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone},
                     "name": name, "resourceVersion": "1000"},
        "spec": {"podCIDR": cidr4, "podCIDRs": [cidr4, cidr6]},
        "status": {"addresses": [{"address": ip, "type": "InternalIP"}]},
    } for name, zone, cidr4, cidr6, ip in [
        (sb.NODE_NAME, "zone-a", "10.244.0.0/17", "fd00:10:244::/57", NODE_V4),
        (sb.REMOTE_NODE_NAME, "zone-b", "10.244.128.0/17", "fd00:10:244:80::/57", "198.51.100.77"),
    ]]
    return {"services.yaml": services, "endpointslices.yaml": slices, "nodes.yaml": nodes}


def selectorless(name: str, cluster_ips: list[str], ports: list[dict]) -> dict:
    """A Service without a selector: its EndpointSlices are written by hand
    (or by another controller), not by the EndpointSlice controller."""
    svc = service(name, cluster_ips, ports, namespace=NS)
    del svc["spec"]["selector"]
    return svc


def hand_written(eps: dict) -> dict:
    eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = "staff.example.com"
    return eps


def write_manifests(directory: Path, files: dict[str, list[dict]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, objects in files.items():
        if name == "nodes.yaml":
            # A typed list as the API returns it: items without kind/apiVersion.
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in objects]
            doc = {"apiVersion": "v1", "items": items, "kind": "NodeList", "metadata": {"resourceVersion": "1000"}}
            (directory / name).write_text(sb.to_yaml([doc]))
        elif name == "endpointslices.yaml":
            # kubectl's `get -o yaml` wrapper: a plain List, items keep their kind.
            doc = {"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}}
            (directory / name).write_text(sb.to_yaml([doc]))
        else:
            (directory / name).write_text(sb.to_yaml(objects))


class Env:
    """Module-wide sandbox: built once, torn down in tearDownModule."""
    box: sb.Sandbox | None = None
    tmp: Path | None = None
    foreign_before: str = ""


FOREIGN_TABLE = """
table inet foreign {
  set blocked { type ipv4_addr; elements = { 192.0.2.250 } }
  chain input { type filter hook input priority 0; policy accept; ip saddr @blocked drop; }
}
"""


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, ECHO_PORTS)
        box = Env.box
        box.nft(box.node, FOREIGN_TABLE)
        Env.foreign_before = box.nft_list(box.node, ["table", "inet", "foreign"])
        write_manifests(Env.tmp / "cluster", cluster_objects(box.pods))
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


class FlowTestCase(unittest.TestCase):
    """Loads one ruleset for the class; flow() checks one kind of packet.

    `loader` says how the ruleset reaches the kernel: "nft" (`svcproxy
    rules` piped to `nft -f`) here; test_rules_netlink runs the same classes
    with "netlink" (`svcproxy run --once` inside the node namespace)."""
    extra_flags: list[str] = []
    manifests = "cluster"
    loader = "nft"

    @classmethod
    def setUpClass(cls):
        cls.box = Env.box
        cls.dir = Env.tmp / cls.manifests
        cls.ruleset = cls.svcproxy("rules")
        cls.program()
        cls.box.flush_conntrack()

    @classmethod
    def program(cls, manifests: Path | None = None) -> None:
        """Programs the node with the ruleset for `manifests` (default: the
        class's) and the class's flags, through cls.loader."""
        directory = manifests or cls.dir
        flags = ["--manifests", str(directory), *sb.NODE_FLAGS, *cls.extra_flags]
        if cls.loader == "nft":
            text = cls.ruleset if manifests is None else cls.box.svcproxy_run(["rules", *flags]).stdout
            cls.box.nft(cls.box.node, text)
        elif cls.loader == "netlink":
            cls.box.svcproxy_in(cls.box.node, ["run", "--once", *flags])
        else:
            raise ValueError(f"unknown loader {cls.loader!r}")

    @classmethod
    def svcproxy(cls, command: str, *args: str) -> str:
        argv = [command, "--manifests", str(cls.dir), *sb.NODE_FLAGS, *cls.extra_flags, *args]
        return cls.box.svcproxy_run(argv).stdout

    def trace(self, src: str, dst: str, dport: int, proto: str) -> dict:
        """Offline trace, checked against `trace --live` of the loaded ruleset."""
        flags = ["--manifests", str(self.dir), *sb.NODE_FLAGS, *self.extra_flags]
        return self.box.trace(flags, ["--src", src, "--dst", dst, "--dport", str(dport), "--proto", proto])

    def pod(self, name: str) -> Pod:
        return self.box.pods[name]

    def eps(self, family: int, port: int, *pods: str) -> set[str]:
        return {endpoint_str(self.pod(p).ip(family), port) for p in pods}

    def endpoint_of(self, reply_id: str, family: int) -> str:
        if reply_id == SINK_ID:
            return SINK_ID
        name, _, port = reply_id.rpartition(":")
        return endpoint_str(self.pod(name).ip(family), int(port))

    def flow(self, client: str, src: str, dst: str, port: int, proto: str = "tcp", *, expect: str,
             endpoints: set[str] | None = None, masquerade: bool | None = None, count: int | None = None,
             affinity: bool = False) -> dict:
        """Sends traffic from namespace `client` (bound to src) and checks
        trace against `expect`/`endpoints`/`masquerade` and the packets
        against trace. Returns the trace."""
        family = family_of(dst)
        what = f"{proto} {src} -> {endpoint_str(dst, port)}"
        t = self.trace(src, dst, port, proto)
        t_eps = set(t.get("endpoints", []))
        context = f"\n  flow: {what}\n  trace: {json.dumps(t)}"

        # 1. trace predicts the behaviour the test names.
        self.assertEqual(t["verdict"], expect, f"trace verdict{context}")
        if endpoints is not None:
            self.assertEqual(t_eps, endpoints, f"trace endpoints{context}")
        if masquerade is not None:
            self.assertEqual(bool(t.get("masquerade")), masquerade, f"trace masquerade{context}")

        # 2. the packets do what trace predicted.
        if count is None:
            count = max(20, 20 * len(t_eps)) if t["verdict"] in ("DNAT", "ACCEPT") else 2
        parallel = 1 if affinity else 16
        # An ICMP error that comes back while connect() still holds the socket
        # lock only becomes a soft error (TcpExtLockDroppedIcmps; seen with
        # ICMPv6 over veth): the refusal then surfaces when the SYN is
        # retransmitted after the initial 1 s RTO. So REJECT and DROP are told
        # apart with a timeout past that retransmission.
        timeout = 1.0 if t["verdict"] in ("DNAT", "ACCEPT") else 2.0
        r = self.box.request(client, dst, port, proto=proto, count=count, src=src, timeout=timeout,
                             parallel=parallel)
        reached = {self.endpoint_of(i, family) for i in r.ids}
        context += f"\n  packets: {r.outcomes} reached={sorted(reached)} errors={r.errors}"
        if t["verdict"] in ("DNAT", "ACCEPT"):
            self.assertEqual(r.outcomes, {"reply": count}, f"every request answered{context}")
        if t["verdict"] == "DNAT":
            self.assertLessEqual(reached, t_eps, f"reached only trace's endpoints{context}")
            if not affinity:
                self.assertEqual(reached, t_eps, f"reached every trace endpoint in {count} requests{context}")
            self.check_masquerade(t, r, src, family, context)
        elif t["verdict"] == "ACCEPT":
            # Not a service: delivered unchanged, to the pod that owns dst or
            # out of the default route to the sink.
            owners = {p.name for p in self.box.pods.values() if dst in (p.v4, p.v6)}
            answered = {i.rpartition(":")[0] if i != SINK_ID else SINK_ID for i in r.ids}
            self.assertLessEqual(answered, owners or {SINK_ID}, f"unchanged destination{context}")
            self.assertEqual({ip for _, ip, _ in r.replies}, {src}, f"source unchanged{context}")
        elif t["verdict"] == "REJECT":
            self.assertTrue(set(r.outcomes) <= {"refused", "unreachable"} and r.outcomes,
                            f"REJECT is seen as connection refused{context}")
        elif t["verdict"] == "DROP":
            self.assertTrue(set(r.outcomes) <= {"timeout", "eperm"} and r.outcomes,
                            f"DROP is seen as a timeout{context}")
        return t

    def check_masquerade(self, t: dict, r: sb.RequestResult, src: str, family: int, context: str) -> None:
        masq_eps = set(t.get("masquerade_endpoints", t.get("endpoints", []) if t.get("masquerade") else []))
        node_addresses = self.box.node_addresses()
        for reply_id, seen_ip, _ in r.replies:
            ep = self.endpoint_of(reply_id, family)
            expected = ep in masq_eps
            detail = f"{context}\n  reply from {reply_id} saw client {seen_ip}"
            if expected:
                self.assertIn(seen_ip, node_addresses, f"masqueraded to a node address{detail}")
            else:
                self.assertEqual(seen_ip, src, f"client address kept (no masquerade){detail}")


class TestServices(FlowTestCase):
    """The default ruleset (no --masquerade-all)."""

    # ClusterIP ---------------------------------------------------------------

    def test_clusterip_reaches_every_ready_pod_never_unready(self):
        t = self.flow(self.pod("a3").ns, self.pod("a3").v4, WEB_V4, 80, expect="DNAT",
                      endpoints=self.eps(4, 8080, "a1", "a2", "b1"), masquerade=False, count=60)
        self.assertNotIn(endpoint_str(self.pod("a3").v4, 8080), t["endpoints"])

    def test_clusterip_from_outside_cluster_cidr_is_masqueraded(self):
        self.flow(self.box.ext, EXT_V4, WEB_V4, 80, expect="DNAT",
                  endpoints=self.eps(4, 8080, "a1", "a2", "b1"), masquerade=True, count=60)

    def test_clusterip_from_the_node_itself(self):
        # The node's own address is outside the cluster CIDR: masqueraded.
        self.flow(self.box.node, NODE_V4, WEB_V4, 80, expect="DNAT",
                  endpoints=self.eps(4, 8080, "a1", "a2", "b1"), masquerade=True, count=60)
        self.flow(self.box.node, NODE_V6, WEB_V6, 80, expect="DNAT",
                  endpoints=self.eps(6, 8080, "a1", "a2", "b1"), masquerade=True, count=60)

    def test_clusterip_ipv6(self):
        self.flow(self.box.ext, EXT_V6, WEB_V6, 80, expect="DNAT",
                  endpoints=self.eps(6, 8080, "a1", "a2", "b1"), masquerade=True, count=60)
        self.flow(self.pod("a3").ns, self.pod("a3").v6, WEB_V6, 80, expect="DNAT",
                  endpoints=self.eps(6, 8080, "a1", "a2", "b1"), masquerade=False, count=60)

    def test_named_target_port_and_tcp_udp_on_same_port(self):
        a3 = self.pod("a3")
        self.flow(a3.ns, a3.v4, DNS, 53, "udp", expect="DNAT", endpoints=self.eps(4, 8080, "a1", "a2"),
                  masquerade=False)
        self.flow(a3.ns, a3.v4, DNS, 53, "tcp", expect="DNAT", endpoints=self.eps(4, 9090, "a1", "a2"),
                  masquerade=False)

    def test_hairpin_is_masqueraded_only_when_landing_on_itself(self):
        # a1 runs here; b1's slice entries name node-b, but its packets reach
        # this node (kube-proxy masquerades hairpin for every endpoint).
        for name in ("a1", "b1"):
            for family in (4, 6):
                pod = self.pod(name)
                vip = WEB_V4 if family == 4 else WEB_V6
                with self.subTest(client=name, family=family):
                    t = self.flow(pod.ns, pod.ip(family), vip, 80, expect="DNAT",
                                  endpoints=self.eps(family, 8080, "a1", "a2", "b1"), masquerade=True, count=60)
                    self.assertEqual(set(t.get("masquerade_endpoints", [])), self.eps(family, 8080, name))

    def test_hairpin_to_an_endpoint_without_node_name(self):
        # A selectorless service whose hand-written slice has no nodeName:
        # m1 connects to its ClusterIP, lands on itself and is answered
        # (without masquerade the reply would bypass the node: a timeout).
        m1 = self.pod("m1")
        for family, vip in ((4, MANUAL_V4), (6, MANUAL_V6)):
            with self.subTest(family=family):
                self.flow(m1.ns, m1.ip(family), vip, 80, expect="DNAT", endpoints=self.eps(family, 8080, "m1"),
                          masquerade=True)

    def test_undefined_port_of_a_clusterip_is_rejected(self):
        a3 = self.pod("a3")
        self.flow(a3.ns, a3.v4, WEB_V4, 81, expect="REJECT")
        self.flow(a3.ns, a3.v4, WEB_V4, 80, "udp", expect="REJECT")
        self.flow(self.box.ext, EXT_V6, WEB_V6, 81, expect="REJECT")

    def test_unallocated_service_ip_is_dropped(self):
        a3 = self.pod("a3")
        self.flow(a3.ns, a3.v4, UNALLOCATED_V4, 80, expect="DROP")
        self.flow(self.box.ext, EXT_V4, UNALLOCATED_V4, 53, "udp", expect="DROP")
        self.flow(self.box.ext, EXT_V6, UNALLOCATED_V6, 80, expect="DROP")

    def test_internal_traffic_policy_local_without_local_endpoints_drops(self):
        a3 = self.pod("a3")
        self.flow(a3.ns, a3.v4, LOCAL_ONLY, 80, expect="DROP")
        self.flow(a3.ns, a3.v4, LOCAL_ONLY, 80, "udp", expect="DROP")
        self.flow(self.box.ext, EXT_V4, LOCAL_ONLY, 80, expect="DROP")

    def test_session_affinity_client_ip_sticks(self):
        for ns, src in ((self.box.ext, EXT_V4), (self.pod("a3").ns, self.pod("a3").v4)):
            self.flow(ns, src, AFFINITY, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1", "a2", "b1"),
                      count=1, affinity=True)
            r = self.box.request(ns, AFFINITY, 80, count=30, src=src, parallel=1)
            self.assertEqual(r.outcomes, {"reply": 30})
            self.assertEqual(len(set(r.ids)), 1, f"ClientIP affinity from {src}: {r.ids}")

    def test_internal_traffic_policy_local_uses_only_local_endpoints(self):
        a3 = self.pod("a3")
        self.flow(a3.ns, a3.v4, LOCAL_MIXED, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"),
                  masquerade=False)

    def test_terminating_endpoints_serve_when_none_is_ready(self):
        a3 = self.pod("a3")
        self.flow(a3.ns, a3.v4, DRAINING, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"), masquerade=False)

    # No endpoints --------------------------------------------------------------

    def test_no_endpoints_rejects_on_every_address(self):
        ext = self.box.ext
        for dst, port in ((EMPTY, 80), (EMPTY_EXT, 80), (EMPTY_LB, 80), (NODE_V4, EMPTY_NODEPORT)):
            with self.subTest(dst=dst, port=port):
                self.flow(ext, EXT_V4, dst, port, expect="REJECT")
        with self.subTest(proto="udp"):
            self.flow(ext, EXT_V4, EMPTY, 80, "udp", expect="REJECT")
            self.flow(ext, EXT_V4, NODE_V4, EMPTY_NODEPORT, "udp", expect="REJECT")

    # NodePort, externalIPs, load balancers -------------------------------------------

    def test_nodeport_cluster_policy_is_masqueraded(self):
        self.flow(self.box.ext, EXT_V4, NODE_V4, WEB_NODEPORT, expect="DNAT",
                  endpoints=self.eps(4, 8080, "a1", "a2", "b1"), masquerade=True, count=60)
        self.flow(self.box.ext, EXT_V6, NODE_V6, WEB_NODEPORT, expect="DNAT",
                  endpoints=self.eps(6, 8080, "a1", "a2", "b1"), masquerade=True, count=60)

    def test_external_ip_and_lb_ip_cluster_policy_are_masqueraded(self):
        for dst in (CL_EXT, CL_INGRESS):
            with self.subTest(dst=dst):
                self.flow(self.box.ext, EXT_V4_ALT, dst, 80, expect="DNAT",
                          endpoints=self.eps(4, 8080, "a1", "b1"), masquerade=True)
        self.flow(self.box.ext, EXT_V4, NODE_V4, CL_NODEPORT, expect="DNAT",
                  endpoints=self.eps(4, 8080, "a1", "b1"), masquerade=True)

    def test_external_policy_local_keeps_client_address_and_uses_local_pods(self):
        ext = self.box.ext
        self.flow(ext, EXT_V4, LB_INGRESS, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"), masquerade=False)
        self.flow(ext, EXT_V4, LB_EXT, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"), masquerade=False)
        self.flow(ext, EXT_V4, NODE_V4, LB_NODEPORT, expect="DNAT", endpoints=self.eps(4, 8080, "a1"),
                  masquerade=False)
        self.flow(ext, EXT_V6, NODE_V6, LB_NODEPORT, expect="DNAT", endpoints=self.eps(6, 8080, "a1"),
                  masquerade=False)

    def test_external_policy_local_short_circuits_pods_and_the_node(self):
        a2 = self.pod("a2")
        self.flow(a2.ns, a2.v4, LB_EXT, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1", "b1"),
                  masquerade=False)
        self.flow(self.box.node, NODE_V4, LB_EXT, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1", "b1"),
                  masquerade=True)
        self.flow(self.box.node, NODE_V4, NODE_V4, LB_NODEPORT, expect="DNAT",
                  endpoints=self.eps(4, 8080, "a1", "b1"), masquerade=True)

    def test_load_balancer_source_ranges(self):
        ext = self.box.ext
        # allowed source
        self.flow(ext, EXT_V4, LB_INGRESS, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"))
        # another source: dropped at the LB IP ...
        self.flow(ext, EXT_V4_ALT, LB_INGRESS, 80, expect="DROP")
        # ... but the NodePort and externalIPs of the same service are not filtered
        self.flow(ext, EXT_V4_ALT, NODE_V4, LB_NODEPORT, expect="DNAT", endpoints=self.eps(4, 8080, "a1"),
                  masquerade=False)
        self.flow(ext, EXT_V4_ALT, LB_EXT, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"),
                  masquerade=False)

    def test_source_range_containing_a_node_ip_admits_the_node(self):
        self.flow(self.box.node, NODE_V4, LB_NODE_INGRESS, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a2"),
                  masquerade=True)
        self.flow(self.box.ext, EXT_V4, LB_NODE_INGRESS, 80, expect="DROP")

    def test_udp_nodeport(self):
        self.flow(self.box.ext, EXT_V4, NODE_V4, UDP_NODEPORT, "udp", expect="DNAT",
                  endpoints=self.eps(4, 8080, "a1", "b1"), masquerade=True)

    def test_proxy_mode_ingress_is_not_captured(self):
        self.flow(self.box.ext, EXT_V4, "192.0.2.59", 80, expect="ACCEPT")

    # Not services -------------------------------------------------------------------

    def test_other_traffic_passes_untouched(self):
        self.flow(self.box.ext, EXT_V4, NOT_A_SERVICE, 80, expect="ACCEPT")
        self.flow(self.box.ext, EXT_V4, self.pod("a1").v4, 8080, expect="ACCEPT")
        self.flow(self.pod("a2").ns, self.pod("a2").v6, self.pod("b1").v6, 8080, "udp", expect="ACCEPT")

    # The ruleset itself ------------------------------------------------------------

    def test_load_is_idempotent_and_replaces_older_tables(self):
        box = self.box

        def listing():
            tables = [line.split()[1:] for line in box.nft_list(box.node, ["tables"]).splitlines()]
            ours = [t for t in tables if t[-1] == "svcproxy"]
            self.assertTrue(ours, "no svcproxy table loaded")
            text = "".join(box.nft_list(box.node, ["table", *t]) for t in ours)
            # What counters counted is traffic (earlier tests'), not ruleset.
            return re.sub(r"packets \d+ bytes \d+", "packets 0 bytes 0", text)

        first = listing()
        self.program()
        self.assertEqual(listing(), first, "loading the same ruleset twice changed the kernel state")
        # An older, different ruleset is replaced whole.
        empty = Env.tmp / "empty"
        empty.mkdir(exist_ok=True)
        self.program(empty)
        self.assertNotEqual(listing(), first)
        self.program()
        self.assertEqual(listing(), first, "loading over an older ruleset left traces of it")
        box.flush_conntrack()

    def test_trace_live_evaluates_what_the_kernel_holds(self):
        # The check every flow() makes can fail: with an empty ruleset in the
        # kernel, trace --live no longer agrees with the compiled trace.
        flags = ["--manifests", str(self.dir), *sb.NODE_FLAGS, *self.extra_flags]
        packet = ["--src", EXT_V4, "--dst", WEB_V4, "--dport", "80", "--proto", "tcp"]
        empty = Env.tmp / "empty"
        empty.mkdir(exist_ok=True)
        try:
            self.program(empty)
            with self.assertRaisesRegex(AssertionError, "trace --live differs from trace"):
                self.box.trace(flags, packet)
        finally:
            self.program()
            self.box.flush_conntrack()
        self.assertEqual(self.box.trace(flags, packet)["verdict"], "DNAT")

    def test_manifests_decode_without_diagnostics(self):
        # --strict: any object skipped as unusable is exit status 1. The
        # scenario manifests are all valid (the headless service is skipped
        # by design, not as an error).
        result = subprocess.run([SVCPROXY, "rules", "--strict", "--manifests", str(self.dir), *sb.NODE_FLAGS],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual((result.returncode, result.stderr), (0, ""))

    def test_foreign_table_untouched(self):
        box = self.box
        self.program()
        self.assertEqual(box.nft_list(box.node, ["table", "inet", "foreign"]), Env.foreign_before)

    def test_examples_pass_nft_check(self):
        examples = SOURCE_DIR / "examples"
        if not any(examples.glob("*.yaml")):
            self.skipTest("no example manifests")
        text = self.box.svcproxy_run(["rules", "--manifests", str(examples), *sb.NODE_FLAGS]).stdout
        self.box.nft(self.box.node, text, check_only=True)


class TestMasqueradeAll(FlowTestCase):
    extra_flags = ["--masquerade-all"]

    def test_pod_to_clusterip_is_masqueraded(self):
        a3 = self.pod("a3")
        self.flow(a3.ns, a3.v4, WEB_V4, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1", "a2", "b1"),
                  masquerade=True, count=60)
        self.flow(a3.ns, a3.v6, WEB_V6, 80, expect="DNAT", endpoints=self.eps(6, 8080, "a1", "a2", "b1"),
                  masquerade=True)
        self.flow(a3.ns, a3.v4, DNS, 53, "udp", expect="DNAT", endpoints=self.eps(4, 8080, "a1", "a2"),
                  masquerade=True)

    def test_external_traffic_still_follows_policies(self):
        # masquerade-all marks service traffic; trace says which, the packets must agree.
        self.flow(self.box.ext, EXT_V4, LB_INGRESS, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"))
        self.flow(self.box.ext, EXT_V4, NODE_V4, WEB_NODEPORT, expect="DNAT",
                  endpoints=self.eps(4, 8080, "a1", "a2", "b1"), masquerade=True)
        self.flow(self.box.ext, EXT_V4_ALT, LB_INGRESS, 80, expect="DROP")


if __name__ == "__main__":
    unittest.main(verbosity=2)
