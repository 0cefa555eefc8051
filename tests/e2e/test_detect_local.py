"""End-to-end: --detect-local-mode BridgeInterface and InterfaceNamePrefix
(kube-proxy's interface-based recognition of this node's pods) with real
packets, for rules loaded by `nft -f` and programmed over netlink by `run
--once`.

Topology: the sandbox's node with three pods (see sandbox.py), one rewired:

      node: cbr0 (bridge) 10.244.1.1   vp2 10.244.2.1        vp3 10.244.3.1    ext0
              |                          |                      |                |
            vp1 (bridge port)            |                      |               ext 203.0.113.2
              |                          |                      |
            pod "br" 10.244.1.2        pod "be" 10.244.2.2     pod "vc" 10.244.3.2
            (a client on the bridge)   (the backend)           (a client on a veth
                                                                named vp3)

The service `web` (10.96.0.10 and fd00:10:96::10, port 80) has the backend
"be" as its only endpoint. Its echo answers with the client address it saw:
the client's own address when not masqueraded, the node's address on vp2
(10.244.2.1 / fd00:10:244:2::1) when masqueraded.

  BridgeInterface cbr0:    "br" keeps its address; "vc" (a pod address, but
                           not on the bridge) and ext are masqueraded.
  InterfaceNamePrefix vp:  "vc" keeps its address; "br" (its packets arrive
                           on cbr0) and ext are masqueraded.
  ClusterCIDR (contrast):  both pods keep their address; ext is masqueraded.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_detect_local (from tests/e2e).
"""

from __future__ import annotations

import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import EXT_V4, Pod  # noqa: E402

from sandbox import SVCPROXY  # noqa: E402

PODS = [Pod("br", 1), Pod("be", 2), Pod("vc", 3)]
WEB_V4, WEB_V6 = "10.96.0.10", "fd00:10:96::10"
BRIDGE = "cbr0"
PREFIX = "vp"


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-detect-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(8080, "tcp")])
        box = Env.box
        br = box.pods["br"]
        # Pod "br" moves behind a bridge: its veth's node end becomes a port
        # of cbr0, which takes over the gateway addresses.
        box.ip_batch(box.node, [
            "addr flush dev vp1",
            f"link add {BRIDGE} type bridge",
            f"link set {BRIDGE} type bridge stp_state 0 forward_delay 0",
            f"link set vp1 master {BRIDGE}",
            f"addr add {br.gw4}/24 dev {BRIDGE}",
            f"addr add {br.gw6}/64 dev {BRIDGE} nodad",
            f"link set {BRIDGE} up",
        ])
        be = box.pods["be"]
        ports = [{"name": "http", "port": 80, "targetPort": 8080}]
        objects = [sb.service("web", [WEB_V4, WEB_V6], ports)]
        objects += [sb.endpoint_slice("web", f"v{family}", family, [{"pod": be}], [{"name": "http", "port": 8080}])
                    for family in (4, 6)]
        (Env.tmp / "cluster").mkdir()
        (Env.tmp / "cluster" / "cluster.yaml").write_text(sb.to_yaml(objects))
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


class DetectLocalCase(unittest.TestCase):
    """Programs the node for `mode_flags` through `loader` ("nft": `svcproxy
    rules` piped to `nft -f`; "netlink": `svcproxy run --once`), then checks
    who is masqueraded. Subclasses say which clients are local."""
    mode_flags: list[str] = []
    loader = "nft"
    local_clients: tuple[str, ...] = ()
    remote_clients: tuple[str, ...] = ()

    @classmethod
    def setUpClass(cls):
        if cls is DetectLocalCase or cls.__name__.startswith("_"):
            raise unittest.SkipTest("base class")
        cls.box = Env.box
        cls.flags = ["--manifests", str(Env.tmp / "cluster"), *sb.NODE_FLAGS, *cls.mode_flags]
        cls.ruleset = cls.box.svcproxy_run(["rules", *cls.flags]).stdout
        if cls.loader == "nft":
            cls.box.nft(cls.box.node, cls.ruleset)
        else:
            cls.box.svcproxy_in(cls.box.node, ["run", "--once", *cls.flags])
        cls.box.flush_conntrack()

    def seen_by_backend(self, client_ns: str, dst: str) -> set[str]:
        """The client addresses the backend saw for a few fresh connections."""
        result = self.box.request(client_ns, dst, 80, count=4, timeout=2.0)
        self.assertEqual(result.outcomes.get("reply"), 4, f"from {client_ns} to {dst}: {result.raw}")
        self.assertEqual({r[0] for r in result.replies}, {"be:8080"})
        return {r[1] for r in result.replies}

    def node_address_towards_backend(self, family: int) -> str:
        return self.box.pods["be"].gw6 if family == 6 else self.box.pods["be"].gw4

    def test_local_pods_keep_their_address(self):
        for name in self.local_clients:
            pod = self.box.pods[name]
            for family, vip in ((4, WEB_V4), (6, WEB_V6)):
                with self.subTest(client=name, family=family):
                    self.assertEqual(self.seen_by_backend(pod.ns, vip), {pod.ip(family)})

    def test_other_clients_are_masqueraded(self):
        clients = [(self.box.pods[n].ns, n) for n in self.remote_clients] + [(self.box.ext, "ext")]
        for ns, name in clients:
            for family, vip in ((4, WEB_V4), (6, WEB_V6)):
                with self.subTest(client=name, family=family):
                    self.assertEqual(self.seen_by_backend(ns, vip), {self.node_address_towards_backend(family)})

    def test_kernel_holds_what_rules_printed(self):
        if self.loader == "netlink":
            live = self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout
            self.assertEqual(live, self.ruleset, "rules --live differs from rules")
            return
        # nft lists every rule line back as svcproxy printed it.
        listed = (self.box.nft_list(self.box.node, ["table", "ip", "svcproxy"]) +
                  self.box.nft_list(self.box.node, ["table", "ip6", "svcproxy"]))
        listed_lines = {line.strip() for line in listed.splitlines()}
        printed = [line.strip() for line in self.ruleset.splitlines() if "iifname" in line or "cluster-cidrs" in line]
        self.assertTrue(printed)
        for line in printed:
            self.assertIn(line, listed_lines)


class _InterfaceMode(DetectLocalCase):
    def test_trace_says_the_input_interface_is_unknown(self):
        out = json.dumps(self.box.trace(self.flags, ["--src", EXT_V4, "--dst", WEB_V4, "--dport", "80"]))
        notes = json.loads(out).get("notes", [])
        self.assertEqual(len(notes), 1, out)
        self.assertIn("input interface is unknown", notes[0])

    def test_trace_with_the_input_interface_follows_the_mode(self):
        # A pod's packet (on the bridge, or on a prefixed veth) is local: not
        # masqueraded; the same packet arriving elsewhere is.
        local_iif = BRIDGE if "BridgeInterface" in self.mode_flags else PREFIX + "9"

        def masquerade(iif):
            result = self.box.trace(self.flags, ["--src", EXT_V4, "--dst", WEB_V4, "--dport", "80", "--iif", iif])
            out = json.dumps(result)
            self.assertNotIn("notes", result, out)
            self.assertEqual(result["verdict"], "DNAT", out)
            return result["masquerade"]
        self.assertFalse(masquerade(local_iif))
        self.assertTrue(masquerade("eth9"))


class BridgeInterfaceNft(_InterfaceMode):
    mode_flags = ["--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", BRIDGE]
    local_clients = ("br",)
    remote_clients = ("vc",)


class BridgeInterfaceNetlink(BridgeInterfaceNft):
    loader = "netlink"


class InterfaceNamePrefixNft(_InterfaceMode):
    mode_flags = ["--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", PREFIX]
    local_clients = ("vc",)
    remote_clients = ("br",)


class InterfaceNamePrefixNetlink(InterfaceNamePrefixNft):
    loader = "netlink"


class ClusterCidrContrast(DetectLocalCase):
    """The default mode on the same topology: every pod address is local,
    whatever interface it comes in on."""
    local_clients = ("br", "vc")
    remote_clients = ()


if __name__ == "__main__":
    unittest.main()
