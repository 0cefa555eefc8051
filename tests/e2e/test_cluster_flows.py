"""End-to-end: every flow of test_rules_nft with svcproxy fed by the real
kube-apiserver instead of manifests.

The fixtures are test_rules_nft's own (cluster_objects(): Services of every
kind, hand-made EndpointSlices, two Nodes), applied through kubectl to the
real API server (tests/cluster/cluster.py) as a client creates them:
without resourceVersion and uid, Services without their selector (so the
EndpointSlice controller leaves the fixtures' slices alone: it only manages
the slices of Services with a selector), LoadBalancer ingress IPs and Node
addresses written through the status subresource. Every fixture object
must be accepted (test_api_accepted_every_fixture names any the API
rejects). The sandbox's node namespace is linked to the control plane
(Cluster.attach), and `svcproxy run --kubeconfig` runs there with the
test class's flags (a fresh daemon per class: its start sync replaces what
the previous class's left).

test_rules_nft's flow classes are reused, not copied: imported as a module
and subclassed with a "cluster" loader. Each flow is checked as there: what
the test names (verdict, endpoints, masquerade), the packets against
`trace`, and `trace --live` against `trace`; here `trace` compiles what the
API server holds (`kubectl get services,endpointslices -A` and `get nodes`,
-o yaml: with the API's defaults and the `kubernetes` Service), so the
kernel the daemon programmed from its watch must equal the compile of the
same objects; test_kernel_holds_the_compile_of_the_api_objects checks the
whole ruleset (`rules --live`).

Topology, through the real EndpointSlice controller: a Service with
`trafficDistribution: PreferClose` and a selector, whose two pods (one on
node-a in zone-a, one on node-b in zone-b) the pod agent registers and
probes; the controller writes the zone hints, and from node-a only the
zone-a pod answers.

Needs root, openssl and the cluster binaries (tests/cluster/build.sh);
skipped with the reason otherwise.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_flows (from tests/e2e).
"""

from __future__ import annotations

import json
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
import test_daemon_sync as daemon_sync  # noqa: E402  (its fixtures only)
import test_node_addresses as node_addresses  # noqa: E402  (its fixtures only)
import test_rules_nft as base  # noqa: E402
from sandbox import EXT_V4, SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402
import labnode  # noqa: E402

CLUSTER = lab.ForTests()
NODES = [sb.NODE_NAME, sb.REMOTE_NODE_NAME]
REMOTE_NODE_IP = "198.51.100.77"  # node-b's InternalIP in the fixtures
# Topology: a selector Service whose hints the real controller writes.
TOPO_V4 = "10.96.0.130"
TOPO_PODS = {"a1": sb.NODE_NAME, "b1": sb.REMOTE_NODE_NAME}
TOPO_PROBE = {"port": 8080, "path": "/", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3,
              "successThreshold": 1}
API_DIR = "cluster-api"  # under base.Env.tmp: what the API server holds, as kubectl prints it


class Env:
    rejected: dict[str, str] = {}  # test_rules_nft's fixtures the API server refused
    dry_run: dict[str, dict[str, str]] = {}  # other fixture sets: what a server-side dry run refused
    agents: list = []


def setUpModule():
    base.setUpModule()
    try:
        cluster = CLUSTER.set_up_module()
        box = base.Env.box
        cluster.attach(box.node)
        # A dry run first: other fixture sets use the same service addresses as the ones applied below.
        Env.dry_run = other_fixtures_rejected(cluster)
        objects = [o for objs in base.cluster_objects(box.pods).values() for o in objs]
        Env.rejected = labnode.apply_objects(cluster, objects, drop_selector=True)
        start_topology(cluster, box)
        wait_api_objects(cluster, objects)
        dump_api_objects(cluster, base.Env.tmp / API_DIR)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    for agent in Env.agents:
        agent.stop(timeout=15)  # deletes its pods and its Node
    Env.agents = []
    if CLUSTER.cluster:
        labnode.delete_objects(CLUSTER.cluster, [base.NS], NODES)
    CLUSTER.release()
    base.tearDownModule()


def other_fixtures_rejected(cluster: lab.Cluster) -> dict[str, dict[str, str]]:
    """What the API server refuses of the other e2e fixture sets built by a
    function (test_node_addresses, test_daemon_sync; test_userspace's are
    applied by test_cluster_userspace) and of examples/ (whose default/kubernetes
    is the API server's own object): fixture set -> rejected objects."""
    pods = {p.name: p for p in (sb.Pod("za", 1), sb.Pod("zb", 2), sb.Pod("p1", 1), sb.Pod("p2", 2), sb.Pod("p3", 3))}
    for p in pods.values():  # the addresses sandbox.add_pods gives them
        p.v4, p.v6 = f"10.244.{p.index}.2", f"fd00:10:244:{p.index:x}::2"
    examples = [o for path in sorted((SOURCE_DIR / "examples").glob("*.yaml"))
                for o in labnode.read_manifests(cluster, path)
                if (o["metadata"].get("namespace"), o["metadata"]["name"]) != ("default", "kubernetes")]
    return {
        "test_node_addresses": labnode.rejected_by_dry_run(
            cluster, [*node_addresses.cluster_objects(pods), node_addresses.node_object(sb.NODE_V4)]),
        "test_daemon_sync": labnode.rejected_by_dry_run(
            cluster, [o for objs in daemon_sync.base_objects(pods).values() for o in objs]),
        "examples": labnode.rejected_by_dry_run(cluster, examples),
    }


def start_topology(cluster: lab.Cluster, box: sb.Sandbox) -> None:
    """The topology Service and its two pods (one agent per node, both in
    the lab node's namespace, where every pod address is routed)."""
    for pod, node in TOPO_PODS.items():
        ip = sb.NODE_V4 if node == sb.NODE_NAME else REMOTE_NODE_IP
        zone = "zone-a" if node == sb.NODE_NAME else "zone-b"
        agent = labnode.start_agent(box, cluster, node, ip, [
            labnode.pod_config(pod, base.NS, [box.pods[pod].v4], labels={"topo": "yes"},
                               ports=[{"name": "http", "containerPort": 8080}], probe=TOPO_PROBE)], zone=zone)
        Env.agents.append(agent)
        labnode.wait_registered(agent, [pod])
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "topo", "namespace": base.NS},
        "spec": {"selector": {"topo": "yes"}, "clusterIP": TOPO_V4, "trafficDistribution": "PreferClose",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))


def wait_api_objects(cluster: lab.Cluster, objects: list[dict], timeout: float = 60) -> None:
    """Until the API server holds every accepted fixture slice and the
    topology slice with both pods ready and hinted."""
    slices = {o["metadata"]["name"] for o in objects if o["kind"] == "EndpointSlice"}
    deadline = time.monotonic() + timeout
    while True:
        items = json.loads(cluster.kubectl("get", "endpointslices", "-n", base.NS, "-o", "json").stdout)["items"]
        names = {i["metadata"]["name"] for i in items}
        topo = [e for i in items if i["metadata"]["labels"].get("kubernetes.io/service-name") == "topo"
                and i["addressType"] == "IPv4" for e in i.get("endpoints") or []]
        hinted = {e["targetRef"]["name"] for e in topo if e["conditions"].get("ready") and e.get("hints")}
        if slices <= names and hinted == set(TOPO_PODS):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"API server: slices {sorted(names)}, wanted {sorted(slices)}; topo endpoints "
                                 f"{json.dumps(topo)}")
        time.sleep(0.2)  # polling the API server with a deadline


def dump_api_objects(cluster: lab.Cluster, directory: Path) -> None:
    """What the API server holds, as `kubectl get -o yaml` prints it: the
    manifests the offline compile (trace, rules) reads."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "services.yaml").write_text(
        cluster.kubectl("get", "services,endpointslices", "-A", "-o", "yaml").stdout)
    (directory / "nodes.yaml").write_text(cluster.kubectl("get", "nodes", "-o", "yaml").stdout)


class FromApiServer:
    """Mixed into test_rules_nft's flow classes: the node is programmed by
    `svcproxy run --kubeconfig` (one daemon per class, with its flags)."""
    loader = "cluster"
    manifests = API_DIR
    daemon: sb.Daemon | None = None

    @classmethod
    def program(cls, manifests: Path | None = None) -> None:
        if manifests is not None:
            raise unittest.SkipTest("the cluster loader programs only what the API server holds")
        if cls.daemon is None:
            cluster = CLUSTER.cluster
            proc = labnode.start_svcproxy(cls.box, SVCPROXY, cluster, sb.NODE_NAME, f"{sb.NODE_V4},{sb.NODE_V6}",
                                          ",".join(sb.CLUSTER_CIDRS),
                                          ["--service-cidr", ",".join(sb.SERVICE_CIDRS), "--sync-period", "1h",
                                           *cls.extra_flags])
            cls.daemon = sb.Daemon(proc)
            sync = cls.daemon.wait_sync(reason="start", timeout=60)
            assert sync.mode == "full", sync.text

    @classmethod
    def tearDownClass(cls):
        if cls.daemon:
            cls.daemon.stop()
            cls.daemon = None
        super().tearDownClass()

    def test_kernel_holds_the_compile_of_the_api_objects(self):
        live = self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout
        self.assertTrue(live.strip(), "rules --live printed nothing")
        self.assertEqual(live, self.ruleset, "the daemon fed by the API server programmed something else than "
                                             "`svcproxy rules` compiles from `kubectl get -o yaml`")

    # test_rules_nft's loader tests program other manifests; that is the nft and netlink loaders' business.
    def test_load_is_idempotent_and_replaces_older_tables(self):
        self.skipTest("programs other manifests (test_rules_nft, test_rules_netlink)")

    def test_trace_live_evaluates_what_the_kernel_holds(self):
        self.skipTest("programs other manifests (test_rules_nft, test_rules_netlink)")


class TestServicesFromApiServer(FromApiServer, base.TestServices):

    def test_api_accepted_every_fixture(self):
        self.assertEqual(Env.rejected, {}, "fixture objects the API server rejected")
        self.assertEqual(Env.dry_run, {"test_node_addresses": {}, "test_daemon_sync": {}, "examples": {}},
                         "fixture objects of other sets a server-side dry run rejected")

    def test_topology_hints_from_the_controller_keep_traffic_in_zone(self):
        ext, a3 = self.box.ext, self.pod("a3")
        self.flow(a3.ns, a3.v4, TOPO_V4, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"), masquerade=False)
        self.flow(ext, EXT_V4, TOPO_V4, 80, expect="DNAT", endpoints=self.eps(4, 8080, "a1"), masquerade=True)


class TestMasqueradeAllFromApiServer(FromApiServer, base.TestMasqueradeAll):
    pass


if __name__ == "__main__":
    unittest.main(verbosity=2)
