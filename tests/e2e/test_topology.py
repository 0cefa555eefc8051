"""End-to-end: topology hints (trafficDistribution PreferSameNode,
PreferSameZone and its alias PreferClose) with real packets, every rule of
kube-proxy's topology.go (CategorizeEndpoints, topologyModeFromHints).

Topology: the sandbox's node "node-a" (see sandbox.py); its Node object in
the manifests carries topology.kubernetes.io/zone: zone-a. Four backend
pods, wired to node-a like every sandbox pod, whose EndpointSlice entries
say where they run (nodeName, zone), and one client pod that is no
endpoint:

      pod      nodeName   zone      what it stands for
      near     node-a     zone-a    this node's pod
      zone     node-b     zone-a    another node in this node's zone
      far      node-c     zone-b    another zone
      far2     node-d     zone-b    another zone
      cli      -          -         the client (10.244.9.2)

Every Service selects some of them with the hints the EndpointSlice
controller would write (PreferSameNode: forNodes and forZones; PreferSameZone
and PreferClose: forZones), or with hints a test needs. From the client, the
pods that answer are the ones kube-proxy would use:

  - node hints on every ready endpoint, one for node-a: only `near`;
  - zone hints: `near` and `zone`;
  - one ready endpoint without a hint: all of them;
  - node hints on every ready endpoint but none for node-a: zone hints;
  - hints only on endpoints that are not ready: ignored;
  - ready endpoints of the zone before a terminating one of the zone;
  - no ready endpoint: every serving-terminating one, hints ignored;
  - internalTrafficPolicy Local: this node's endpoint, whatever the hints,
    and its serving-terminating one when it has no ready one;
  - the Node without a zone label: ordinary zone hints are ignored, a
    forZones hint named "" is this node's.

Each flow is checked twice: the replies, and `svcproxy trace --json` of the
same packet (offline, and `trace --live` of what the kernel holds). The
rules are programmed by `run --once`; TestZoneLabelChange runs the daemon
and moves the Node to another zone, as kube-proxy's full sync on a topology
label change does.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_topology (from tests/e2e).
"""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from manifest_dir import Manifests, node_object  # noqa: E402
from sandbox import SVCPROXY, Pod  # noqa: E402

PORT = 8080
# Where each backend pod runs, as its EndpointSlice entry says.
PLACES = {"near": (sb.NODE_NAME, "zone-a"), "zone": ("node-b", "zone-a"), "far": ("node-c", "zone-b"),
          "far2": ("node-d", "zone-b")}
PODS = [Pod(name, i, node=node) for i, (name, (node, _)) in enumerate(PLACES.items(), 1)]
CLIENT = Pod("cli", 9)
CONNECTIONS = 40  # P(missing one of 4 random endpoints) = 4 * (3/4)^40, about 4e-5

READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-topology-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(PORT, "tcp")])
        Env.box.add_pods([CLIENT])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


def node(zone: str | None) -> dict:
    """The lab's Node, with `zone` as its topology.kubernetes.io/zone label (None: no label)."""
    obj = node_object()
    if zone is not None:
        obj["metadata"]["labels"]["topology.kubernetes.io/zone"] = zone
    return obj


def hinted(pod: str, hints: str = "", conditions: dict = READY, *, zones: list[str] | None = None) -> dict:
    """One endpoint of `pod` with its node's and zone's hints as the
    EndpointSlice controller writes them: hints "node" (PreferSameNode:
    forNodes and forZones), "zone" (PreferSameZone, PreferClose: forZones),
    "" none; `zones` overrides the forZones names."""
    node_name, zone = PLACES[pod]
    out = {"pod": pod, "conditions": conditions, "zone": zone, "hints": {}}
    if hints == "node":
        out["hints"]["forNodes"] = [{"name": node_name}]
    if hints in ("node", "zone") or zones is not None:
        out["hints"]["forZones"] = [{"name": z} for z in (zones if zones is not None else [zone])]
    return out


def service_objects(name: str, vip: str, endpoints: list[dict], **spec) -> list[dict]:
    """A ClusterIP Service (port 80 to PORT) and its IPv4 EndpointSlice with
    the endpoints' conditions, zones and hints."""
    pods = {p.name: p for p in PODS}
    objects = [sb.service(name, [vip], [{"name": "http", "port": 80, "targetPort": PORT}], **spec)]
    eps_slice = sb.endpoint_slice(name, "topo", 4, [{"pod": pods[e["pod"]], **e["conditions"]} for e in endpoints],
                                  [{"name": "http", "port": PORT}])
    for item, e in zip(eps_slice["endpoints"], endpoints):
        item["zone"] = e["zone"]
        if e["hints"]:
            item["hints"] = e["hints"]
    return objects + [eps_slice]


ALL = ("near", "zone", "far", "far2")

# name -> (ClusterIP, endpoints, extra spec, pods that answer from node-a in zone-a)
SERVICES = {
    # trafficDistribution PreferSameNode: node hints on every ready endpoint.
    "same-node": ("10.96.7.1", [hinted(p, "node") for p in ALL], {"trafficDistribution": "PreferSameNode"},
                  {"near"}),
    # PreferSameZone and PreferClose give the same slices: zone hints only.
    "same-zone": ("10.96.7.2", [hinted(p, "zone") for p in ALL], {"trafficDistribution": "PreferSameZone"},
                  {"near", "zone"}),
    "close": ("10.96.7.3", [hinted(p, "zone") for p in ALL], {"trafficDistribution": "PreferClose"},
              {"near", "zone"}),
    # One ready endpoint without a hint (its node had no zone label when the
    # controller wrote the slice): no topology.
    "one-unhinted": ("10.96.7.4", [hinted("near", "zone"), hinted("zone", "zone"), hinted("far", "zone"),
                                   hinted("far2")], {}, set(ALL)),
    # PreferSameNode without a pod on node-a: no node hint names it, so the
    # zone hints (which the controller writes too) decide.
    "node-fallback": ("10.96.7.5", [hinted(p, "node") for p in ("zone", "far", "far2")],
                      {"trafficDistribution": "PreferSameNode"}, {"zone"}),
    # Node hints on only some ready endpoints: zone hints decide.
    "node-partial": ("10.96.7.6", [hinted("near", "node"), hinted("zone", "zone"), hinted("far", "zone"),
                                   hinted("far2", "zone")], {}, {"near", "zone"}),
    # The only endpoints hinted for node-a and zone-a are not ready (one not
    # serving, one terminating): hints of unready endpoints decide nothing.
    "unready-hints": ("10.96.7.7", [hinted("near", "node", NOT_READY), hinted("zone", "node", TERMINATING),
                                    hinted("far", "node"), hinted("far2", "node")], {}, {"far", "far2"}),
    # Ready first: the zone's ready endpoint, not its terminating one.
    "ready-first": ("10.96.7.8", [hinted("near", "zone", TERMINATING), hinted("zone", "zone"),
                                  hinted("far", "zone"), hinted("far2", "zone")], {}, {"zone"}),
    # A ready endpoint in another zone comes before this zone's terminating one.
    "ready-elsewhere": ("10.96.7.9", [hinted("near", "node", NOT_READY), hinted("zone", "zone", TERMINATING),
                                      hinted("far", "zone", TERMINATING), hinted("far2", "zone")], {}, {"far2"}),
    # No ready endpoint anywhere: every serving-terminating one, whatever its hints.
    "all-terminating": ("10.96.7.10", [hinted("near", "node", NOT_READY), hinted("zone", "zone", TERMINATING),
                                       hinted("far", "zone", TERMINATING)], {}, {"zone", "far"}),
    # internalTrafficPolicy Local wins over hints that send node-a elsewhere.
    "local": ("10.96.7.11", [hinted("near", zones=["zone-b"]), hinted("zone", "zone"), hinted("far", "zone")],
              {"internalTrafficPolicy": "Local"}, {"near"}),
    # ... and falls back to this node's serving-terminating endpoint, not
    # to the ready ones the hints name.
    "local-terminating": ("10.96.7.12", [hinted("near", "node", TERMINATING), hinted("zone", "node"),
                                         hinted("far", "node")], {"internalTrafficPolicy": "Local"}, {"near"}),
}

# The same Services on a node without a zone label: what answers instead.
WITHOUT_ZONE = {"same-node": {"near"}, "same-zone": set(ALL), "close": set(ALL),
                "node-fallback": {"zone", "far", "far2"}, "node-partial": set(ALL),
                "ready-first": {"zone", "far", "far2"}}
# A Service whose hints name the empty zone: a node without the label is in it.
EMPTY_ZONE = ("10.96.7.13", [hinted("near", zones=["zone-b"]), hinted("zone", zones=[""]),
                             hinted("far", zones=["zone-b"])], {}, {"zone"})


def service_list(services: dict) -> list[dict]:
    out = []
    for name, (vip, endpoints, spec, _) in services.items():
        out += service_objects(name, vip, endpoints, **spec)
    return out


def answering(test: unittest.TestCase, flags: list[str], vip: str) -> set[str]:
    """The pods that answer CONNECTIONS fresh connections from the client pod
    to vip:80; `test` fails unless every one is answered and trace (offline
    from `flags`, and live in the node) names exactly those pods."""
    box = Env.box
    client = box.pods[CLIENT.name]
    traced = box.trace(flags, ["--src", client.v4, "--dst", vip, "--dport", "80"])
    test.assertEqual(traced["verdict"], "DNAT", traced)
    result = box.request(client.ns, vip, 80, count=CONNECTIONS, timeout=2.0)
    test.assertEqual(result.outcomes, {"reply": CONNECTIONS}, result.raw)
    reached = {reply_id.rpartition(":")[0] for reply_id in result.ids}  # echo ids are "<pod>:<port>"
    by_ip = {p.v4: p.name for p in PODS}
    test.assertEqual({by_ip[sb.split_hostport(e)[0]] for e in traced["endpoints"]}, reached,
                     f"trace and the packets disagree for {vip}: {traced}")
    return reached


class TopologyCase(unittest.TestCase):
    """Writes the Services with the Node in `zone`, programs node-a with
    `run --once`, then checks each Service from the client pod."""
    zone: str | None = "zone-a"
    services: dict = SERVICES

    @classmethod
    def setUpClass(cls):
        if cls is TopologyCase:
            raise unittest.SkipTest("base class")
        cls.box = Env.box
        cls.dir = Env.tmp / cls.__name__
        cls.dir.mkdir()
        (cls.dir / "cluster.yaml").write_text(sb.to_yaml([node(cls.zone), *service_list(cls.services)]))
        cls.flags = ["--manifests", str(cls.dir), *sb.NODE_FLAGS]
        cls.box.svcproxy_in(cls.box.node, ["run", "--once", *cls.flags])
        cls.box.flush_conntrack()

    def check(self, expected: dict[str, set[str]]) -> None:
        for name, pods in expected.items():
            with self.subTest(service=name):
                self.assertEqual(answering(self, self.flags, self.services[name][0]), pods)


class TestHintsInZoneA(TopologyCase):

    def test_node_hints_keep_traffic_on_this_node(self):
        self.check({"same-node": {"near"}})

    def test_zone_hints_keep_traffic_in_this_zone(self):
        # PreferClose is PreferSameZone's deprecated alias: the same slices, the same pods.
        self.check({"same-zone": {"near", "zone"}, "close": {"near", "zone"}})

    def test_a_ready_endpoint_without_a_hint_turns_topology_off(self):
        self.check({"one-unhinted": set(ALL)})

    def test_node_hints_fall_back_to_zone_hints(self):
        self.check({"node-fallback": {"zone"}, "node-partial": {"near", "zone"}})

    def test_hints_of_endpoints_that_are_not_ready_decide_nothing(self):
        self.check({"unready-hints": {"far", "far2"}})

    def test_ready_endpoints_first_then_serving_terminating(self):
        self.check({"ready-first": {"zone"}, "ready-elsewhere": {"far2"}, "all-terminating": {"zone", "far"}})

    def test_local_policy_wins_over_hints(self):
        self.check({"local": {"near"}, "local-terminating": {"near"}})


class TestNodeWithoutZoneLabel(TopologyCase):
    """The same Services on a Node without topology.kubernetes.io/zone
    (kube-proxy's zone is then ""), plus one hinted for the zone ""."""
    zone = None
    services = {**{name: SERVICES[name] for name in WITHOUT_ZONE}, "empty-zone": EMPTY_ZONE}

    def test_zone_hints_are_ignored_node_hints_still_apply(self):
        self.check(WITHOUT_ZONE)

    def test_a_zone_hint_named_empty_is_this_nodes(self):
        self.check({"empty-zone": {"zone"}})


class TestZoneLabelChange(unittest.TestCase):
    """The daemon: the Node's zone label changes from zone-a to zone-b; the
    next sync is full (kube-proxy resyncs everything on a topology label
    change) and moves zone-hinted traffic to zone-b's pods, while node hints
    keep the node's own pod."""

    def test_moving_the_node_to_another_zone_moves_its_traffic(self):
        box = Env.box
        services = {name: SERVICES[name] for name in ("same-node", "same-zone")}
        m = Manifests(Env.tmp / "zone-change")
        m.put("nodes.yaml", [node("zone-a")])
        m.put("services.yaml", service_list(services))
        flags = [*m.flags(), *sb.NODE_FLAGS]
        daemon = sb.Daemon(box.spawn(box.node, [SVCPROXY, "run", *flags], name="daemon", lines_from="stderr",
                                     stdin=False))
        self.addCleanup(daemon.stop)
        daemon.wait_sync(reason="start", timeout=30)
        box.flush_conntrack()
        self.assertEqual(answering(self, flags, services["same-zone"][0]), {"near", "zone"})

        mark = daemon.mark()
        m.put("nodes.yaml", [node("zone-b")])
        sync = daemon.wait_sync(after=mark, reason=m.reason, timeout=10)
        self.assertEqual(sync.mode, "full", sync.text)
        box.flush_conntrack()
        self.assertEqual(answering(self, flags, services["same-zone"][0]), {"far", "far2"})
        self.assertEqual(answering(self, flags, services["same-node"][0]), {"near"})


if __name__ == "__main__":
    unittest.main()
