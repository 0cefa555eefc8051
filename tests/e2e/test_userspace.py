"""End-to-end: `svcproxy run --proxy-mode userspace` (and `auto` on a
kernel without nf_tables, see without_nftables.py) in the sandbox's node
namespace, with real
traffic from the external client namespace. No nftables rule is involved:
svcproxy puts the service addresses on `svcproxy0` (a dummy interface, or a
bridge on kernels without CONFIG_DUMMY) and proxies in userspace.

  - svcproxy0 carries exactly the ClusterIPs/external IPs; no nft table.
  - Round robin: 3000 connections over 3 pods, each within ±10 % of 1000.
  - Unready pod: after the sync that marks it unready, 0 new connections.
  - Killed pod (connection refused): 300 connections, none fails; the pod
    is ejected (logged once) and retried past.
  - ClientIP affinity sticks per client address.
  - UDP request/response through a VIP (answers come from the VIP).
  - UDP to a port with no endpoints: ICMP port unreachable ("refused").
  - IPv6 ClusterIP: TCP and UDP request/response through the VIP.
  - --userspace-drain-timeout: a held connection to a pod made unready is
    reset that long after the update; those to the other pods are not.
  - NodePort on the node IP.
  - No endpoints: the client's connect() is refused at once (no listener:
    the kernel answers the SYN with a RST), in userspace mode and, with the
    same assertion, in nftables mode (REJECT); with an endpoint it is
    answered; when the last endpoint goes, refused again.
  - fd exhaustion (ulimit -n 64): held connections keep working while
    accept() backs off, and new connections succeed once descriptors free.
  - A removed service's address leaves svcproxy0; `svcproxy cleanup` deletes
    svcproxy0.
  - `--proxy-mode auto` on a kernel without nf_tables (without_nftables.py)
    runs all of the above through the userspace proxy.
  - Without CAP_NET_ADMIN (setpriv): `--proxy-mode nftables` exits 1 naming
    the capability; `auto` falls back, and the userspace proxy, which needs
    it as well, exits 1 naming it.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_userspace (from tests/e2e).
"""

from __future__ import annotations

import re
import signal
import sys
import tempfile
import time
import unittest
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from manifest_dir import Manifests, node_object  # noqa: E402
from sandbox import NODE_V4, Pod, endpoint_slice, service  # noqa: E402

from sandbox import SVCPROXY  # noqa: E402
NS = "e2e"

PODS = [Pod("p1", 1), Pod("p2", 2), Pod("p3", 3)]
ECHO_PORTS = [(8080, "tcp"), (8080, "udp")]

WEB = "10.96.5.10"        # TCP 80 -> p1, p2, p3
STICKY = "10.96.5.11"     # TCP 80 -> p1, p2, p3, sessionAffinity ClientIP
DNS = "10.96.5.12"        # UDP 53 -> p1, p2
EMPTY = "10.96.5.13"      # TCP 80, no endpoints
NODEPORT_SVC, NODEPORT = "10.96.5.14", 30080  # NodePort TCP 30080 -> p1, p2
EXTERNAL_IP = "192.0.2.50"  # externalIP of WEB
EMPTY_UDP = "10.96.5.15"  # UDP 53, no endpoints
EMPTY_NODEPORT = 30081      # NodePort of EMPTY (in the no-endpoints tests only)
WEB6 = "fd00:10:96::510"  # TCP 80 -> p1, p2, p3 (IPv6)
DNS6 = "fd00:10:96::512"  # UDP 53 -> p1, p2 (IPv6)


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None
    echoes: dict[str, sb.Echo] = {}


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-userspace-"))
    try:
        Env.box, echoes = sb.start_pods_sandbox(SVCPROXY, PODS, ECHO_PORTS)
        for name, started in echoes.items():
            Env.echoes[name] = started[0]  # the TCP one
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


def family(ip: str) -> int:
    return 6 if ":" in ip else 4


def tcp_service(name: str, ip: str, endpoints: list[dict], **spec) -> list[dict]:
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    port = {"name": "http", "port": 80, "targetPort": 8080}
    if "node_port" in spec:
        port["nodePort"] = spec.pop("node_port")
        spec["type"] = "NodePort"
    return [service(name, [ip], [port], namespace=NS, **spec),
            endpoint_slice(name, "abcde", family(ip), endpoints, http, namespace=NS)]


def udp_service(name: str, ip: str, pods: list[Pod]) -> list[dict]:
    dns = [{"name": "dns", "port": 8080, "protocol": "UDP"}]
    port = {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8080}
    return [service(name, [ip], [port], namespace=NS),
            endpoint_slice(name, "fghij", family(ip), [{"pod": p} for p in pods], dns, namespace=NS)]


_STATS = re.compile(r"\] userspace stats (.*)$")


def assert_refused_at_once(test: unittest.TestCase, box: sb.Sandbox, dst: str, port: int) -> None:
    """20 connections to dst:port are each refused (connect() fails with
    ECONNREFUSED), none times out or is accepted and then reset."""
    start = time.monotonic()
    r = box.request(box.ext, dst, port, count=20, parallel=4, timeout=3)
    elapsed = time.monotonic() - start
    test.assertEqual(r.outcomes, {"refused": 20}, f"{dst}:{port}: {r.errors}")
    test.assertLess(elapsed, 2.5, f"{dst}:{port}")


class UserspaceTestCase(unittest.TestCase):
    """A daemon in userspace mode on a fresh manifests directory."""
    mode_flags = ["--proxy-mode", "userspace"]
    launcher: list[str] = []  # runs svcproxy (e.g. on a kernel without nf_tables)
    expect_mode_line = "proxy mode userspace (--proxy-mode userspace)"

    def setUp(self):
        self.box = Env.box
        self.pods = self.box.pods
        p1, p2, p3 = (self.pods[n] for n in ("p1", "p2", "p3"))
        self.m = self.new_source(f"{type(self).__name__}-{self.id().rpartition('.')[2]}")
        self.m.put("nodes.yaml", [node_object()])
        self.m.put("web.yaml", tcp_service("web", WEB, [{"pod": p} for p in (p1, p2, p3)],
                                           externalIPs=[EXTERNAL_IP]))
        self.m.put("sticky.yaml", tcp_service("sticky", STICKY, [{"pod": p} for p in (p1, p2, p3)],
                                              sessionAffinity="ClientIP",
                                              sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}))
        self.m.put("dns.yaml", udp_service("dns", DNS, [p1, p2]))
        self.m.put("empty.yaml", tcp_service("empty", EMPTY, []))
        self.m.put("np.yaml", tcp_service("np", NODEPORT_SVC, [{"pod": p} for p in (p1, p2)], node_port=NODEPORT))
        self.m.put("empty-udp.yaml", udp_service("empty-udp", EMPTY_UDP, []))
        self.m.put("web6.yaml", tcp_service("web6", WEB6, [{"pod": p} for p in (p1, p2, p3)]))
        self.m.put("dns6.yaml", udp_service("dns6", DNS6, [p1, p2]))
        self.daemon = self.start(self.m)
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_sync(reason="start", timeout=30)

    def new_source(self, name: str) -> Manifests:
        """Where the daemon's objects come from: a manifests directory."""
        return Manifests(Env.tmp / name)

    def others_service_ips(self) -> set[str]:
        """IPv4 addresses of Services the test did not put (none here; a
        real API server has its own `kubernetes` Service)."""
        return set()

    def start(self, source: Manifests, wrapper: list[str] | None = None, extra: list[str] | None = None) -> sb.Daemon:
        argv = [*(wrapper or []), *self.launcher, SVCPROXY, "run", *source.flags(), *sb.NODE_FLAGS,
                "--sync-period", "1h", *self.mode_flags, *(extra or [])]
        proc = sb.Background(self.box.node, argv, self.box.workdir / f"daemon-{len(self.box.background)}.log",
                             lines_from="stderr", stdin=False)
        self.box.background.append(proc)
        return sb.Daemon(proc)

    def edit(self, action, *args) -> sb.SyncLine:
        mark = self.daemon.mark()
        action(*args)
        return self.daemon.wait_sync(after=mark, reason=self.m.reason, timeout=10)

    def stats(self) -> dict[str, int]:
        """Counters as of now: SIGHUP forces a sync, which logs them."""
        mark = self.daemon.mark()
        self.daemon.proc.proc.send_signal(signal.SIGHUP)
        self.daemon.wait_sync(after=mark, reason="sighup", timeout=10)
        index = self.daemon.lines.wait_for(lambda line: _STATS.search(line) is not None, start=mark, timeout=5)
        text = _STATS.search(self.daemon.lines.snapshot(index)[0]).group(1)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text)}

    def log(self) -> str:
        return "\n    ".join(self.daemon.lines.snapshot()[-30:])

    def request(self, dst: str, port: int, **kw) -> sb.RequestResult:
        # Answers are awaited up to 5 s, not the sandbox's 1 s: a loaded CI
        # machine (or 7 parallel builds) delayed a few of 90 IPv6 answers
        # past 1 s. An answer that comes returns at once.
        kw.setdefault("timeout", 5)
        return self.box.request(self.box.ext, dst, port, **kw)

    # ------------------------------------------------------------------ tests

    def test_mode_and_interface(self):
        self.assertTrue(any(self.expect_mode_line in line for line in self.daemon.lines.snapshot()), self.log())
        link = self.box.exec(self.box.node, ["ip", "-d", "link", "show", "svcproxy0"]).stdout
        self.assertTrue(" dummy " in link or " bridge " in link, link)
        addrs = self.box.exec(self.box.node, ["ip", "-4", "-o", "addr", "show", "dev", "svcproxy0"]).stdout
        found = set(re.findall(r"inet (\S+)/32", addrs))
        self.assertEqual(found, {WEB, STICKY, DNS, EMPTY, NODEPORT_SVC, EXTERNAL_IP, EMPTY_UDP,
                                 *self.others_service_ips()})
        addrs6 = self.box.exec(self.box.node, ["ip", "-6", "-o", "addr", "show", "dev", "svcproxy0"]).stdout
        self.assertEqual(set(re.findall(r"inet6 (\S+)/128", addrs6)), {WEB6, DNS6}, addrs6)
        # No nftables involved.
        ruleset = self.box.exec(self.box.node, ["nft", "list", "tables"]).stdout
        self.assertNotIn("svcproxy", ruleset)
        # A removed service's address goes; the others stay.
        self.edit(self.m.remove, "empty.yaml")
        addrs = self.box.exec(self.box.node, ["ip", "-4", "-o", "addr", "show", "dev", "svcproxy0"]).stdout
        self.assertNotIn(EMPTY + "/32", addrs)
        self.assertIn(WEB + "/32", addrs)

    def test_round_robin_spread_over_3000_connections(self):
        r = self.request(WEB, 80, count=3000, parallel=16, timeout=5)
        self.assertEqual(r.outcomes, {"reply": 3000}, r.errors)
        spread = Counter(r.ids)
        self.assertEqual(set(spread), {"p1:8080", "p2:8080", "p3:8080"})
        for pod, n in spread.items():
            self.assertLessEqual(abs(n - 1000), 100, f"{pod}: {n} of 3000 ({spread})")
        # The client's address is not preserved: the pod sees the node.
        self.assertEqual({ip for _, ip, _ in r.replies}, {"10.244.1.1", "10.244.2.1", "10.244.3.1"})
        # externalIP answers too.
        r = self.request(EXTERNAL_IP, 80, count=30)
        self.assertEqual(r.outcomes, {"reply": 30}, r.errors)

    def test_unready_pod_gets_no_new_connections(self):
        p1, p2, p3 = (self.pods[n] for n in ("p1", "p2", "p3"))
        r = self.request(WEB, 80, count=30)
        self.assertIn("p3:8080", r.ids)
        sync = self.edit(self.m.put, "web.yaml", tcp_service(
            "web", WEB, [{"pod": p1}, {"pod": p2}, {"pod": p3, "ready": False, "serving": False,
                                                    "terminating": False}], externalIPs=[EXTERNAL_IP]))
        r = self.request(WEB, 80, count=600, parallel=16)
        self.assertEqual(r.outcomes, {"reply": 600}, r.errors)
        self.assertNotIn("p3:8080", r.ids)
        # How long the update took to apply (svcproxy0 + listeners + barrier).
        print(f"\n  unready update applied in {sync.duration_us} us", file=sys.stderr)
        self.assertLess(sync.duration_us, 1_000_000)

    def test_killed_pod_is_retried_past_and_ejected(self):
        echo = Env.echoes["p3"]
        echo.proc.send_signal(signal.SIGTERM)
        echo.proc.wait(timeout=5)
        try:
            r = self.request(WEB, 80, count=300, parallel=8, timeout=5)
            self.assertEqual(r.outcomes, {"reply": 300}, r.errors)
            self.assertEqual(set(r.ids), {"p1:8080", "p2:8080"})
            stats = self.stats()
            self.assertGreaterEqual(stats["ejections"], 1, stats)
            self.assertLessEqual(stats["connect_failures"], 8, stats)  # back-off: not one per round
            self.assertTrue(any("endpoint ejected endpoint=10.244.3.2:8080" in line
                                for line in self.daemon.lines.snapshot()), self.log())
        finally:
            pod = self.pods["p3"]
            Env.echoes["p3"] = self.box.start_pod_echoes(pod, [(8080, "tcp")])[0]

    def test_client_ip_affinity_sticks(self):
        a = self.request(STICKY, 80, count=40, parallel=4)
        self.assertEqual(a.outcomes, {"reply": 40}, a.errors)
        self.assertEqual(len(set(a.ids)), 1, a.ids)
        b = self.request(STICKY, 80, count=40, parallel=4, src=sb.EXT_V4_ALT)
        self.assertEqual(b.outcomes, {"reply": 40}, b.errors)
        self.assertEqual(len(set(b.ids)), 1, b.ids)
        # Different clients are balanced: the next new client lands elsewhere.
        self.assertNotEqual(a.ids[0], b.ids[0])

    def test_udp_request_response(self):
        r = self.request(DNS, 53, proto="udp", count=40, parallel=8)
        self.assertEqual(r.outcomes, {"reply": 40}, r.errors)
        self.assertEqual(set(r.ids), {"p1:8080", "p2:8080"})

    def test_udp_without_endpoints_is_refused(self):
        # No socket listens on a UDP port without endpoints: the kernel
        # answers ICMP port unreachable, as kube-proxy's REJECT does.
        r = self.request(EMPTY_UDP, 53, proto="udp", count=10, parallel=2, timeout=2)
        if r.outcomes != {"refused": 10}:
            # CI once saw 1 of 10 time out on a quiet machine (every ICMP
            # budget of the node lifted); the kernel's own counts say
            # whether the datagram arrived and what it answered.
            counters = self.box.exec(self.box.node, ["nstat", "-az", "UdpNoPorts", "UdpInErrors", "IcmpOutDestUnreachs",
                                                     "IcmpOutRateLimitGlobal", "IcmpOutRateLimitHost"]).stdout
            print(f"\n  {r.outcomes}; node counters:\n{counters}", file=sys.stderr)
        # Never an answer; each datagram refused (one datagram lost on the
        # way is UDP, not a listener: tolerated, and reported above).
        self.assertNotIn("reply", r.outcomes, r.replies)
        self.assertGreaterEqual(r.outcomes.get("refused", 0), 9, r.outcomes)
        self.assertEqual(set(r.outcomes) - {"refused", "timeout"}, set(), r.errors)

    def test_ipv6_cluster_ip(self):
        r = self.request(WEB6, 80, count=90, parallel=8)
        self.assertEqual(r.outcomes, {"reply": 90}, r.errors)
        self.assertEqual(set(r.ids), {"p1:8080", "p2:8080", "p3:8080"})
        # Over IPv6 to the pods too: each sees its gateway's (the node's) v6 address.
        self.assertEqual({ip for _, ip, _ in r.replies},
                         {f"fd00:10:244:{i}::1" for i in (1, 2, 3)}, r.replies[:5])
        r = self.request(DNS6, 53, proto="udp", count=40, parallel=8)
        self.assertEqual(r.outcomes, {"reply": 40}, r.errors)
        self.assertEqual(set(r.ids), {"p1:8080", "p2:8080"})

    def test_nodeport(self):
        r = self.request(NODE_V4, NODEPORT, count=40)
        self.assertEqual(r.outcomes, {"reply": 40}, r.errors)
        self.assertEqual(set(r.ids), {"p1:8080", "p2:8080"})

    def test_no_endpoints_refused_at_once(self):
        assert_refused_at_once(self, self.box, EMPTY, 80)
        self.assertEqual(self.stats()["accepted"], 0)  # the proxy never saw them


class TestUserspace(UserspaceTestCase):
    def test_fd_exhaustion_survives(self):
        """A daemon under `ulimit -n 64`: hold connections until accept()
        runs out of descriptors; the held ones keep working; after they
        close, new connections are served again."""
        self.daemon.stop()
        m = self.new_source("fd-exhaustion")
        m.put("nodes.yaml", [node_object()])
        p1, p2 = self.pods["p1"], self.pods["p2"]
        m.put("web.yaml", tcp_service("web", WEB, [{"pod": p1}, {"pod": p2}]))
        daemon = self.start(m, wrapper=["sh", "-c", 'ulimit -n 64 && exec "$@"', "sh"])
        self.daemon = daemon
        self.addCleanup(daemon.stop)
        daemon.wait_sync(reason="start", timeout=30)
        script = r"""
import socket, struct, sys, time
dst = sys.argv[1]
def reset(s):
    # Close with a reset: the echo server never closes its half after a
    # FIN, which would keep the proxy's side open for its half-close
    # timeout; a reset frees the proxy's descriptors at once.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
def ask(s):
    s.sendall(b"hi\n")
    return s.recv(100)
# Open connections one by one (each answered) until one is not answered in
# time: the proxy ran out of descriptors and the newcomer waits.
alive = []
for i in range(60):
    s = socket.create_connection((dst, 80), timeout=1)
    try:
        if not ask(s):
            break
    except OSError:
        reset(s)
        break
    alive.append(s)
waiting = [socket.create_connection((dst, 80), timeout=1) for _ in range(10)]
# Every connection established before the exhaustion still works.
still = 0
for s in alive:
    try:
        if ask(s):
            still += 1
    except OSError:
        pass
print("alive", len(alive), "still", still)
for s in alive + waiting:
    reset(s)
def fresh_ok():
    try:
        s = socket.create_connection((dst, 80), timeout=10)
        try:
            return bool(ask(s))
        finally:
            reset(s)
    except OSError:
        return False
# Closed connections give their descriptors back; then new connections are
# served again, every one.
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not fresh_ok():
    pass
print("fresh", sum(fresh_ok() for _ in range(20)))
"""
        out = self.box.exec(self.box.ext, [sys.executable, "-c", script, WEB], timeout=120).stdout
        m = re.search(r"alive (\d+) still (\d+)", out)
        self.assertIsNotNone(m, out)
        self.assertGreaterEqual(int(m.group(1)), 5, out + self.log())
        self.assertLess(int(m.group(1)), 60, "never ran out of descriptors: " + out)
        self.assertEqual(m.group(1), m.group(2), out + self.log())
        self.assertIn("fresh 20", out, out + self.log())
        self.assertIsNone(daemon.proc.proc.poll(), "the daemon died")
        self.assertTrue(any("accept paused" in line for line in daemon.lines.snapshot()), self.log())

    def test_drain_timeout_resets_connections_to_a_removed_pod(self):
        """--userspace-drain-timeout 1s: a held connection to each pod; p3
        is made unready; its connection is reset about 1 s after that sync,
        the others stay open and keep working."""
        self.daemon.stop()
        self.daemon = self.start(self.m, extra=["--userspace-drain-timeout", "1s"])
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_sync(reason="start", timeout=30)
        script = r"""
import select, socket, sys, time
held = {}
deadline = time.monotonic() + 20
while len(held) < 3 and time.monotonic() < deadline:
    s = socket.create_connection((sys.argv[1], 80), timeout=5)
    s.sendall(b"hi\n")
    pod = s.recv(200).decode().split()[0]
    if pod in held:
        s.close()
    else:
        held[pod] = s
print("held", " ".join(sorted(held)), flush=True)
open_ = {s.fileno(): (pod, s) for pod, s in held.items()}
for line in sys.stdin:
    if line.strip() == "check":
        for pod, s in sorted(held.items()):
            if s.fileno() in open_:
                s.sendall(b"hi\n")
                print("alive" if s.recv(200).decode().startswith(pod) else "dead", pod, flush=True)
        continue
    # "wait": report the next connection that ends (EOF or reset), with when.
    ready, _, _ = select.select(list(open_), [], [], 10)
    for fd in ready:
        pod, s = open_[fd]
        try:
            data = s.recv(200)
        except OSError:
            data = b""
        if not data:
            del open_[fd]
            print("closed", pod, time.monotonic(), flush=True)
    if not ready:
        print("nothing closed", flush=True)
"""
        holder = sb.Background(self.box.ext, [sys.executable, "-c", script, WEB],
                               self.box.workdir / "drain-holder.log")
        self.box.background.append(holder)
        self.addCleanup(holder.stop)
        holder.lines.wait_for(lambda line: line.startswith("held"), timeout=30, what="held connections")
        self.assertEqual(holder.lines.snapshot()[0], "held p1:8080 p2:8080 p3:8080")
        p1, p2, p3 = (self.pods[n] for n in ("p1", "p2", "p3"))
        mark = len(holder.lines)
        removed = time.monotonic()
        self.edit(self.m.put, "web.yaml", tcp_service(
            "web", WEB, [{"pod": p1}, {"pod": p2}, {"pod": p3, "ready": False, "serving": False,
                                                    "terminating": False}], externalIPs=[EXTERNAL_IP]))
        holder.send_line("wait")
        index = holder.lines.wait_for(lambda line: line.startswith(("closed", "nothing")), start=mark, timeout=15,
                                      what="a connection ending")
        line = holder.lines.snapshot(index)[0]
        self.assertTrue(line.startswith("closed p3:8080 "), line)
        elapsed = float(line.split()[2]) - removed
        self.assertGreaterEqual(elapsed, 1.0, line)
        self.assertLess(elapsed, 5.0, line)
        mark = len(holder.lines)
        holder.send_line("check")
        holder.lines.wait_count(lambda line: line.startswith(("alive", "dead")), 2, start=mark, timeout=10,
                                what="the kept connections answering")
        self.assertEqual(holder.lines.snapshot(mark)[:2], ["alive p1:8080", "alive p2:8080"])
        self.assertEqual(self.stats()["drained"], 1)

    def test_cleanup_removes_the_interface(self):
        self.daemon.stop()
        self.box.svcproxy_in(self.box.node, ["cleanup"])
        r = self.box.exec(self.box.node, ["ip", "link", "show", "svcproxy0"], check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)


class TestAutoFallsBackToUserspace(UserspaceTestCase):
    """`--proxy-mode auto` on a kernel without nf_tables: the probe really
    fails (without_nftables.py: socket(NETLINK_NETFILTER) answers
    EPROTONOSUPPORT, as such a kernel does; svcproxy keeps CAP_NET_ADMIN,
    which the userspace proxy needs for svcproxy0's addresses), and the same
    traffic tests pass through the userspace proxy."""
    mode_flags = ["--proxy-mode", "auto"]
    launcher = [sys.executable, str(Path(__file__).resolve().parent / "without_nftables.py")]
    expect_mode_line = ("proxy mode userspace (--proxy-mode auto: nftables unusable: cannot program nftables "
                        "(needs CAP_NET_ADMIN and nf_tables): netlink: socket(NETLINK_NETFILTER): "
                        "Protocol not supported)")


class TestWithoutCapNetAdmin(unittest.TestCase):
    """svcproxy without CAP_NET_ADMIN: setpriv drops it from the inheritable
    and bounding sets, so the svcproxy it execs has it in no set. The probe
    really fails: nf_tables answers the probe's first transaction EPERM.
    Neither dataplane can run then (the userspace proxy needs the capability
    too, for svcproxy0 and its addresses over rtnetlink), and each says so,
    naming the capability."""
    DROP = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"]

    def setUp(self):
        self.box = Env.box
        self.m = Manifests(Env.tmp / f"{type(self).__name__}-{self.id().rpartition('.')[2]}")
        self.m.put("nodes.yaml", [node_object()])
        self.m.put("web.yaml", tcp_service("web", WEB, [{"pod": self.box.pods["p1"]}]))

    def run_without(self, mode: str):
        argv = [*self.DROP, SVCPROXY, "run", "--manifests", str(self.m.dir), *sb.NODE_FLAGS, "--proxy-mode", mode]
        return self.box.exec(self.box.node, argv, check=False, timeout=60)

    def test_the_capability_is_really_dropped(self):
        status = self.box.exec(self.box.node, [*self.DROP, "cat", "/proc/self/status"]).stdout
        caps = {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M)}
        net_admin = 1 << 12
        self.assertEqual([k for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb") if caps[k] & net_admin], [])
        self.assertTrue(caps["CapEff"] & (1 << 21), "CAP_SYS_ADMIN kept: only CAP_NET_ADMIN is dropped")

    def test_nftables_mode_exits_1_naming_cap_net_admin(self):
        r = self.run_without("nftables")
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = [line for line in r.stderr.splitlines() if "--proxy-mode nftables: cannot program nftables" in line]
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("svcproxy needs CAP_NET_ADMIN", lines[0])
        self.assertNotIn("svcproxy", self.box.exec(self.box.node, ["nft", "list", "tables"]).stdout)

    def test_auto_falls_back_and_the_userspace_proxy_names_cap_net_admin_too(self):
        r = self.run_without("auto")
        self.assertEqual(r.returncode, 1, r.stderr)
        fallback = [line for line in r.stderr.splitlines()
                    if "proxy mode userspace (--proxy-mode auto: nftables unusable: cannot program nftables" in line]
        self.assertEqual(len(fallback), 1, r.stderr)
        self.assertIn("svcproxy needs CAP_NET_ADMIN", fallback[0])
        last = r.stderr.strip().splitlines()[-1]
        self.assertIn("vip interface: ", last)
        self.assertIn("Operation not permitted (svcproxy needs CAP_NET_ADMIN)", last)


class NoEndpointsTestCase(unittest.TestCase):
    """A TCP service (ClusterIP and NodePort) in each proxy mode, the mode
    the only difference: refused at once without endpoints, answered with
    one, refused again once it is gone."""
    mode = ""

    def setUp(self):
        self.box = Env.box
        # svcproxy0's addresses and nftables table outlive a daemon: start
        # from a node without either (so one mode is not answered by what
        # the other left), and leave none behind.
        self.box.svcproxy_in(self.box.node, ["cleanup"])
        self.addCleanup(self.box.svcproxy_in, self.box.node, ["cleanup"], check=False)
        self.m = Manifests(Env.tmp / f"{type(self).__name__}-{self.id().rpartition('.')[2]}")
        self.m.put("nodes.yaml", [node_object()])
        self.m.put("empty.yaml", self.empty([]))
        self.daemon = self.box.start_daemon(self.m.dir, [*sb.NODE_FLAGS, "--sync-period", "1h",
                                                         "--proxy-mode", self.mode])
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_sync(reason="start", timeout=30)
        self.assertTrue(any(f"proxy mode {self.mode} (--proxy-mode {self.mode}" in line
                            for line in self.daemon.lines.snapshot()))

    @staticmethod
    def empty(endpoints: list[dict]) -> list[dict]:
        return tcp_service("empty", EMPTY, endpoints, node_port=EMPTY_NODEPORT)

    def edit(self, action, *args) -> None:
        mark = self.daemon.mark()
        action(*args)
        self.daemon.wait_sync(after=mark, reason="manifests-changed", timeout=10)

    def test_tcp_without_endpoints_is_refused_at_once(self):
        for dst, port in ((EMPTY, 80), (NODE_V4, EMPTY_NODEPORT)):
            assert_refused_at_once(self, self.box, dst, port)
        self.edit(self.m.put, "empty.yaml", self.empty([{"pod": self.box.pods["p1"]}]))
        for dst, port in ((EMPTY, 80), (NODE_V4, EMPTY_NODEPORT)):
            r = self.box.request(self.box.ext, dst, port, count=10)
            self.assertEqual(r.outcomes, {"reply": 10}, f"{dst}:{port}: {r.errors}")
        self.edit(self.m.put, "empty.yaml", self.empty([]))
        for dst, port in ((EMPTY, 80), (NODE_V4, EMPTY_NODEPORT)):
            assert_refused_at_once(self, self.box, dst, port)


class TestNoEndpointsUserspace(NoEndpointsTestCase):
    mode = "userspace"


class TestNoEndpointsNftables(NoEndpointsTestCase):
    mode = "nftables"


del UserspaceTestCase, NoEndpointsTestCase  # only the concrete classes run

if __name__ == "__main__":
    unittest.main()
