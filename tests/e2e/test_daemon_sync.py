"""End-to-end: the daemon (`svcproxy run --manifests DIR`) in the node
namespace, driven by edits of DIR, with live traffic through it.

  - UDP conntrack: a client sends a datagram every 10 ms from a fixed source
    port to a UDP ClusterIP; conntrack pins the flow to one endpoint. A
    partial sync of an unrelated service (one that even shares the pinned
    endpoint) deletes nothing and does not move the flow; removing the
    pinned endpoint deletes its entry and the other endpoint answers within
    100 ms of the sync's log line, the removed one never again. A UDP
    service that gains its first endpoint answers within 100 ms too.
  - No disruption: ≥ 2000 short TCP connections to service A, none failing,
    while 100 unrelated services are added and removed by ≥ 200 edits, each
    its own partial sync; a connection opened before the edits still works
    after them; the kernel ruleset then equals a fresh compile.
  - Drift: with --sync-period 1s, a set element deleted by hand (service A's
    classification), a flushed chain, a rogue element and chain are repaired
    by the next periodic check in a partial transaction of exactly those
    objects (its log line names them; `rules --live` equals `rules`); a
    deleted table is recreated by a full sync.
  - SIGTERM: exit 0 within 1 s, rules left in place.

Each test starts its own daemon on its own manifests directory (the start
is a full sync replacing whatever an earlier test left) and stops it.
Manifests are edited the way config tools do: a file written elsewhere on
the same filesystem, then os.rename'd into the directory (or unlinked). The
daemon's log lines ("sync done reason=... mode=... conntrack_deleted=...")
carry wall-clock times; traffic streams (streams.py) record time.time() per
reply, so the two are compared directly. Everything waits on log lines or
replies with deadlines, never on fixed sleeps.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_daemon_sync (from tests/e2e).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from manifest_dir import Manifests, node_object  # noqa: E402
from sandbox import NODE_V4, Pod, endpoint_slice, service  # noqa: E402

from sandbox import SVCPROXY  # noqa: E402
NS = "e2e"

# All on this node; each runs echo on TCP 8080 and UDP 8080 ("<pod>:8080 <client>").
PODS = [Pod("p1", 1), Pod("p2", 2), Pod("p3", 3)]
ECHO_PORTS = [(8080, "tcp"), (8080, "udp")]

TCP_A = "10.96.2.10"  # TCP 80 -> p1, p2 (the service that must not be disturbed)
UDP_A = "10.96.2.20"  # UDP 53 -> p1, p2 (the UDP flow under test)
UDP_D = "10.96.2.30"  # UDP 53 -> p1, p2 (unrelated, same endpoints as UDP_A)
UDP_E = "10.96.2.40"  # UDP 53, no endpoints at first
UDP_L = "10.96.2.60"  # UDP 53 -> p3 only (its last endpoint gets removed)
UDP_N, UDP_NODEPORT = "10.96.2.70", 30053  # NodePort UDP 30053 -> p1, p2
UDP_V6 = "fd00:10:96::280"  # UDP 53 -> p1, p2 over IPv6
BULK_COUNT = 100      # unrelated services bulk-001.. on 10.96.3.x, TCP 80 -> p3

UPDATE_BUDGET = 0.100  # seconds from the sync's log line to the first reply of the new endpoint

FOREIGN_TABLE = """
table inet foreign {
  set blocked { type ipv4_addr; elements = { 192.0.2.250 } }
  chain input { type filter hook input priority 0; policy accept; ip saddr @blocked drop; }
}
"""


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None
    foreign_before: str = ""


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-daemon-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, ECHO_PORTS)
        box = Env.box
        box.nft(box.node, FOREIGN_TABLE)
        Env.foreign_before = box.nft_list(box.node, ["table", "inet", "foreign"])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


# ---------------------------------------------------------------------- manifests

def tcp_service(name: str, ip: str, pods: list[Pod]) -> list[dict]:
    http = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    return [service(name, [ip], [{"name": "http", "port": 80, "targetPort": 8080}], namespace=NS),
            endpoint_slice(name, "abcde", 4, [{"pod": p} for p in pods], http, namespace=NS)]


def udp_service(name: str, ip: str, pods: list[Pod], *, node_port: int | None = None) -> list[dict]:
    dns = [{"name": "dns", "port": 8080, "protocol": "UDP"}]
    port = {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8080}
    if node_port:
        port["nodePort"] = node_port
    return [service(name, [ip], [port], namespace=NS, type="NodePort" if node_port else "ClusterIP"),
            endpoint_slice(name, "fghij", sb.family_of(ip), [{"pod": p} for p in pods], dns, namespace=NS)]


def bulk_name(i: int) -> str:
    return f"bulk-{i:03d}"


def bulk_ip(i: int) -> str:
    return f"10.96.3.{i}"


def base_objects(pods: dict[str, Pod]) -> dict[str, list[dict]]:
    """Every test's starting manifests: file name -> objects."""
    p1, p2, p3 = (pods[n] for n in ("p1", "p2", "p3"))
    return {
        "nodes.yaml": [node_object()],
        "svc-tcp-a.yaml": tcp_service("tcp-a", TCP_A, [p1, p2]),
        "svc-udp-a.yaml": udp_service("udp-a", UDP_A, [p1, p2]),
        "svc-udp-d.yaml": udp_service("udp-d", UDP_D, [p1, p2]),
        "svc-udp-e.yaml": udp_service("udp-e", UDP_E, []),
        "svc-udp-l.yaml": udp_service("udp-l", UDP_L, [p3]),
        "svc-udp-n.yaml": udp_service("udp-n", UDP_N, [p1, p2], node_port=UDP_NODEPORT),
        "svc-udp-v6.yaml": udp_service("udp-v6", UDP_V6, [p1, p2]),
    }


# ---------------------------------------------------------------------- conntrack (optional)

def udp_conntrack_entries(box: sb.Sandbox, sport: int, family: int = 4) -> list[dict]:
    """The node's UDP conntrack entries of `family` from source port `sport`
    (id, reply source), or [] when the conntrack tool is missing."""
    if not shutil.which("conntrack"):
        return []
    out = box.exec(box.node, ["conntrack", "-L", "-f", f"ipv{family}", "-p", "udp", "--sport", str(sport),
                              "-o", "id"], check=False)
    entries = []
    for line in out.stdout.splitlines():
        srcs = re.findall(r"\bsrc=(\S+)", line)
        ident = re.search(r"\bid=(\d+)", line)
        if len(srcs) == 2 and ident:
            entries.append({"id": int(ident.group(1)), "reply_src": srcs[1], "line": line})
    return entries


# ---------------------------------------------------------------------- tests

class DaemonTestCase(unittest.TestCase):
    """Starts `svcproxy run` on a fresh manifests directory holding the
    base services, waits for its start sync, stops it afterwards."""
    sync_period = "1h"  # no periodic full sync unless a test asks for one

    def setUp(self):
        self.box = Env.box
        self.box.flush_conntrack()
        self.pods = self.box.pods
        self.m = self.new_source(self.id().rpartition(".")[2])
        for name, objects in base_objects(self.pods).items():
            self.m.put(name, objects)
        self.flags = [*sb.NODE_FLAGS, "--sync-period", self.sync_period]
        self.daemon = self.start_daemon()
        self.addCleanup(self.daemon.stop)
        start = self.daemon.wait_sync(reason="start", timeout=30)
        self.assertEqual(start.mode, "full", start.text)

    def edit(self, action, *args) -> sb.SyncLine:
        """Applies one manifests edit and returns the sync it caused."""
        mark = self.daemon.mark()
        action(*args)
        return self.daemon.wait_sync(after=mark, reason=self.m.reason, timeout=10)

    def new_source(self, name: str) -> "Manifests":
        """Where the daemon's objects come from: a manifests directory
        (test_cluster_daemon_sync: the real API server, the same methods)."""
        return Manifests(Env.tmp / name)

    def start_daemon(self) -> sb.Daemon:
        proc = self.box.spawn(self.box.node, [SVCPROXY, "run", *self.m.flags(), *self.flags], name="daemon",
                              lines_from="stderr", stdin=False)
        return sb.Daemon(proc)

    def compiled(self) -> str:
        return self.box.svcproxy_run(["rules", "--manifests", str(self.m.snapshot()), *sb.NODE_FLAGS]).stdout

    def live(self) -> str:
        return self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout

    def assert_foreign_untouched(self) -> None:
        self.assertEqual(self.box.nft_list(self.box.node, ["table", "inet", "foreign"]), Env.foreign_before,
                         "svcproxy's syncs changed the foreign table")

    def log_tail(self, n: int = 20) -> str:
        return "\n    ".join(self.daemon.lines.snapshot()[-n:])


class TestUdpConntrack(DaemonTestCase):

    def start_udp_flow(self, dst: str, sport: int, port: int = 53) -> sb.Background:
        self.family = sb.family_of(dst)
        stream = self.box.start_stream(self.box.ext, "udp", dst, port, sport=sport, interval=0.01)
        self.addCleanup(stream.stop)
        return stream

    @staticmethod
    def replies(stream: sb.Background, start: int = 0) -> list[dict]:
        return [r for r in stream.json_lines(start) if "id" in r]

    def wait_replies(self, stream: sb.Background, count: int, *, start: int = 0, after_time: float = 0.0,
                     timeout: float = 10) -> int:
        """Waits for `count` replies (received after `after_time`) from line
        `start` on; returns the line count then."""
        def reply_after(line: str) -> bool:
            try:
                r = json.loads(line)
            except ValueError:
                return False
            return "id" in r and r["t"] > after_time
        stream.lines.wait_count(reply_after, count, start=start, timeout=timeout, what="UDP replies")
        return len(stream.lines)

    def pinned_endpoint(self, stream: sb.Background, sport: int,
                        candidates: set[str] = frozenset({"p1:8080", "p2:8080"})) -> str:
        """The endpoint conntrack pinned the flow to (all of 30 replies)."""
        self.wait_replies(stream, 30)
        ids = {r["id"] for r in self.replies(stream)}
        self.assertEqual(len(ids), 1, f"one UDP flow from a fixed port must stick to one endpoint: {ids}")
        pinned = ids.pop()
        self.assertIn(pinned, candidates)
        entries = udp_conntrack_entries(self.box, sport, self.family)
        if shutil.which("conntrack"):  # the flow is one conntrack entry, replied by the pinned endpoint
            self.assertEqual([e["reply_src"] for e in entries], [self.pods[pinned.partition(":")[0]].ip(self.family)],
                             f"conntrack entries of the flow: {entries}")
        return pinned

    def test_unrelated_partial_sync_keeps_the_udp_flow_on_its_endpoint(self):
        sport = 40101
        stream = self.start_udp_flow(UDP_A, sport)
        pinned = self.pinned_endpoint(stream, sport)
        entries_before = udp_conntrack_entries(self.box, sport, self.family)
        # udp-d shares udp-a's endpoints and loses the very endpoint udp-a's
        # flow is pinned to. Nothing talks to udp-d, so nothing is stale;
        # udp-a's entry has the same reply source and must survive.
        pinned_pod = pinned.partition(":")[0]
        keep = [p for n, p in self.pods.items() if n in ("p1", "p2") and n != pinned_pod]
        sync = self.edit(self.m.put, "svc-udp-d.yaml", udp_service("udp-d", UDP_D, keep))
        self.assertEqual(sync.mode, "partial", sync.text)
        self.assertEqual(sync.conntrack_deleted, 0, f"a sync of an unrelated service deleted conntrack entries: "
                                                    f"{sync.text}")
        # A second unrelated edit: a new UDP service appears.
        sync = self.edit(self.m.put, "svc-udp-f.yaml", udp_service("udp-f", "10.96.2.50", keep))
        self.assertEqual((sync.mode, sync.conntrack_deleted), ("partial", 0), sync.text)
        # 40 replies (0.4 s) after that sync: still the pinned endpoint.
        mark = len(stream.lines)
        self.wait_replies(stream, 40, start=mark, after_time=sync.time)
        after = self.replies(stream, mark)
        self.assertEqual({r["id"] for r in after}, {pinned}, "the flow moved after an unrelated sync")
        if entries_before:
            self.assertEqual([e["id"] for e in udp_conntrack_entries(self.box, sport, self.family)],
                             [e["id"] for e in entries_before], "the flow's conntrack entry was replaced")
        errors = [r for r in stream.json_lines() if "error" in r]
        self.assertEqual(errors, [])

    def assert_flow_leaves_removed_endpoint(self, stream: sb.Background, sport: int, pinned: str, expect: str,
                                            edit) -> None:
        """Applies `edit` (which removes `pinned` from the service) and
        checks: a partial sync that deleted ≥ 1 conntrack entry; then, within
        UPDATE_BUDGET of its log line, the flow's first reply from endpoint
        `expect` (or, with expect="refused", its first rejection); never
        `pinned` again afterwards."""
        def event(r: dict) -> str | None:
            return r.get("id", r.get("error"))

        def is_new(line: str) -> bool:
            try:
                return event(json.loads(line)) == expect
            except ValueError:
                return False

        mark = len(stream.lines)
        t_edit = time.time()
        sync = self.edit(edit)
        self.assertEqual(sync.mode, "partial", sync.text)
        self.assertGreaterEqual(sync.conntrack_deleted, 1,
                                f"the removed endpoint's UDP conntrack entry was not deleted: {sync.text}")
        try:
            stream.lines.wait_for(is_new, start=mark, timeout=5, what=f"{expect} after the edit")
            moved = True
        except sb.SandboxError:
            moved = False
        if not moved:
            last = [event(r) for r in stream.json_lines(mark) if "t" in r][-5:]
            self.fail(f"no {expect!r} within 5 s of removing {pinned} ({sync.text}); the flow stays on the "
                      f"removed endpoint: last replies {last}; conntrack: "
                      f"{[e['line'] for e in udp_conntrack_entries(self.box, sport, self.family)]}")
        # 0.5 s more of the flow after the sync.
        stream.lines.wait_count(lambda line: '"t"' in line and ('"id"' in line or '"error"' in line)
                                and json.loads(line)["t"] > sync.time, 50, start=mark, timeout=10,
                                what="the flow after the sync")
        events = [r for r in stream.json_lines(mark) if "t" in r and event(r)]
        first = next(r for r in events if event(r) == expect)
        delay = first["t"] - sync.time
        detail = (f"edit at {t_edit:.6f}, sync logged at {sync.time:.6f} ({sync.text}), first {expect!r} at "
                  f"{first['t']:.6f}")
        print(f"\n  udp: {sync.text.split('] ', 1)[1]}; first {expect!r} {1000 * delay:+.1f} ms from the sync line",
              file=sys.stderr)
        self.assertGreaterEqual(first["t"], t_edit, f"{expect!r} before the edit: {detail}")
        self.assertLessEqual(delay, UPDATE_BUDGET, f"the flow moved {1000 * delay:.1f} ms after the sync line "
                                                   f"(budget {UPDATE_BUDGET * 1000:.0f} ms): {detail}")
        later = [event(r) for r in events if r["t"] > first["t"]]
        self.assertNotIn(pinned, later, f"the removed endpoint {pinned} answered after {expect!r}: {detail}")
        self.assertEqual(set(later), {expect}, detail)
        if expect != "refused" and shutil.which("conntrack"):
            entries = udp_conntrack_entries(self.box, sport, self.family)
            self.assertEqual([e["reply_src"] for e in entries], [self.pods[expect.partition(":")[0]].ip(self.family)],
                             f"{entries}")

    def test_removed_endpoint_flow_moves_to_the_other_within_100ms_of_the_sync(self):
        sport = 40102
        stream = self.start_udp_flow(UDP_A, sport)
        pinned = self.pinned_endpoint(stream, sport)
        other = ({"p1:8080", "p2:8080"} - {pinned}).pop()
        self.assert_flow_leaves_removed_endpoint(
            stream, sport, pinned, other,
            lambda: self.m.put("svc-udp-a.yaml", udp_service("udp-a", UDP_A, [self.pods[other.partition(":")[0]]])))

    def test_ipv6_flow_moves_to_the_other_within_100ms_of_the_sync(self):
        sport = 40106
        stream = self.start_udp_flow(UDP_V6, sport)
        pinned = self.pinned_endpoint(stream, sport)
        other = ({"p1:8080", "p2:8080"} - {pinned}).pop()
        self.assert_flow_leaves_removed_endpoint(
            stream, sport, pinned, other,
            lambda: self.m.put("svc-udp-v6.yaml", udp_service("udp-v6", UDP_V6, [self.pods[other.partition(":")[0]]])))

    def test_nodeport_flow_moves_to_the_other_within_100ms_of_the_sync(self):
        sport = 40104
        stream = self.start_udp_flow(NODE_V4, sport, port=UDP_NODEPORT)
        pinned = self.pinned_endpoint(stream, sport)
        other = ({"p1:8080", "p2:8080"} - {pinned}).pop()
        self.assert_flow_leaves_removed_endpoint(
            stream, sport, pinned, other,
            lambda: self.m.put("svc-udp-n.yaml", udp_service("udp-n", UDP_N, [self.pods[other.partition(":")[0]]],
                                                             node_port=UDP_NODEPORT)))

    def test_flow_to_a_service_losing_its_last_endpoint_is_rejected_within_100ms(self):
        # Left in conntrack, the flow would keep reaching the removed pod (or
        # a dead one: kube-proxy's 13 h blackhole, #139628).
        sport = 40105
        stream = self.start_udp_flow(UDP_L, sport)
        pinned = self.pinned_endpoint(stream, sport, candidates={"p3:8080"})
        self.assert_flow_leaves_removed_endpoint(
            stream, sport, pinned, "refused", lambda: self.m.put("svc-udp-l.yaml", udp_service("udp-l", UDP_L, [])))

    def test_udp_service_gaining_its_first_endpoint_answers_within_100ms(self):
        sport = 40103
        stream = self.start_udp_flow(UDP_E, sport)
        # No endpoints: rejected (ICMP port unreachable, "refused" on the
        # connected socket), never answered.
        stream.lines.wait_count(lambda line: '"error": "refused"' in line, 5, timeout=10, what="rejections")
        self.assertEqual(self.replies(stream), [])
        mark = len(stream.lines)
        sync = self.edit(self.m.put, "svc-udp-e.yaml", udp_service("udp-e", UDP_E, [self.pods["p3"]]))
        self.assertEqual(sync.mode, "partial", sync.text)
        stream.lines.wait_for(lambda line: '"id": "p3:8080"' in line, start=mark, timeout=5,
                              what="a reply from p3 after the endpoint was added")
        first = next(r for r in self.replies(stream, mark))
        print(f"\n  udp: {sync.text.split('] ', 1)[1]}; first reply from p3 "
              f"{1000 * (first['t'] - sync.time):+.1f} ms from the sync line", file=sys.stderr)
        self.assertLessEqual(first["t"] - sync.time, UPDATE_BUDGET,
                             f"first reply {1000 * (first['t'] - sync.time):.1f} ms after the sync line: {sync.text}")
        self.wait_replies(stream, 30, start=mark, after_time=sync.time)
        later = [r for r in stream.json_lines(mark) if ("id" in r or "error" in r) and r["t"] > first["t"]]
        self.assertEqual({r.get("id", r.get("error")) for r in later}, {"p3:8080"},
                         "after the first answer every datagram is answered by the new endpoint")


    # The start sync is full: what changed while svcproxy was down is unknown,
    # so it deletes the UDP entries whose endpoint is gone (and only those),
    # or the flow would stay pinned to a dead pod (kube-proxy #139628).
    def test_endpoint_removed_while_the_daemon_was_down_is_left_after_restart(self):
        sport = 40107
        stream = self.start_udp_flow(UDP_A, sport)
        pinned = self.pinned_endpoint(stream, sport)
        other = ({"p1:8080", "p2:8080"} - {pinned}).pop()
        rc, _ = self.daemon.stop()
        self.assertEqual(rc, 0)
        self.m.put("svc-udp-a.yaml", udp_service("udp-a", UDP_A, [self.pods[other.partition(":")[0]]]))
        mark = len(stream.lines)
        self.daemon = self.start_daemon()
        self.addCleanup(self.daemon.stop)
        start = self.daemon.wait_sync(reason="start", timeout=30)
        self.wait_replies(stream, 100, start=mark, after_time=start.time)  # 1 s of the flow after the restart
        after = [r for r in self.replies(stream, mark) if r["t"] > start.time + UPDATE_BUDGET]
        self.assertEqual({r["id"] for r in after}, {other},
                         f"{UPDATE_BUDGET * 1000:.0f} ms after the restart ({start.text}) the flow is still answered "
                         f"by {pinned}, removed while svcproxy was down")


class TestNoDisruption(DaemonTestCase):
    MIN_REQUESTS = 2000

    def test_many_unrelated_partial_syncs_never_disturb_service_a(self):
        box = self.box
        a_ids = {"p1:8080", "p2:8080"}
        # A connection opened before the edits, kept open across them.
        hold = box.start_stream(box.ext, "tcp-hold", TCP_A, 80, timeout=2)
        self.addCleanup(hold.stop)
        hold.lines.wait_for('"connected"', timeout=10, what="the long-lived connection")
        first = hold.json_lines()[0]
        self.assertTrue(first.get("connected"), f"long-lived connection to A: {first}")
        self.assertIn(first["id"], a_ids)

        # Short connections to A, four at a time, for the whole edit sequence.
        loop = box.start_stream(box.ext, "tcp-loop", TCP_A, 80, parallel=4, timeout=2)
        self.addCleanup(loop.stop)
        loop.lines.wait_count(lambda line: '"t0"' in line, 20, timeout=10, what="requests to A before the edits")

        p3 = self.pods["p3"]
        edit_start = time.time()
        syncs: list[sb.SyncLine] = []
        for i in range(1, BULK_COUNT + 1):
            syncs.append(self.edit(self.m.put, f"svc-{bulk_name(i)}.yaml", tcp_service(bulk_name(i), bulk_ip(i), [p3])))
        # The added services work (the partial syncs did program them).
        r = box.request(box.ext, bulk_ip(BULK_COUNT // 2), 80, count=4)
        self.assertEqual(r.ids, ["p3:8080"] * 4, f"a service added by a partial sync: {r.outcomes} {r.errors}")
        for i in range(1, BULK_COUNT + 1):
            syncs.append(self.edit(self.m.remove, f"svc-{bulk_name(i)}.yaml"))

        def in_window(end: float) -> list[dict]:
            return [r for r in loop.json_lines() if "t0" in r and r["t0"] >= edit_start and r["t1"] <= end]

        # Keep editing (one unrelated service added, removed, ...) until at
        # least MIN_REQUESTS requests ran entirely inside the edit window.
        extra = 0
        deadline = time.monotonic() + 90
        while len(in_window(syncs[-1].time)) < self.MIN_REQUESTS and time.monotonic() < deadline:
            name = f"svc-{bulk_name(BULK_COUNT + 1)}.yaml"
            if extra % 2 == 0:
                syncs.append(self.edit(self.m.put, name, tcp_service(bulk_name(BULK_COUNT + 1), bulk_ip(200), [p3])))
            else:
                syncs.append(self.edit(self.m.remove, name))
            extra += 1
        if extra % 2:
            syncs.append(self.edit(self.m.remove, f"svc-{bulk_name(BULK_COUNT + 1)}.yaml"))
        edit_end = syncs[-1].time

        loop.stop()
        results = [r for r in loop.json_lines() if "t0" in r]
        window = in_window(edit_end)
        failed = [r for r in results if "error" in r]
        durations = sorted(s.duration_us for s in syncs)
        summary = (f"{len(results)} requests, {len(window)} inside the {edit_end - edit_start:.1f} s edit window; "
                   f"{len(syncs)} syncs, duration_us median {durations[len(durations) // 2]} max {durations[-1]}")
        print(f"\n  no-disruption: {summary}", file=sys.stderr)
        self.assertEqual(failed[:10], [], f"requests to A failed during the edits ({len(failed)} in all): {summary}")
        self.assertGreaterEqual(len(window), self.MIN_REQUESTS, summary)
        self.assertLessEqual({r["id"] for r in results}, a_ids)
        self.assertGreaterEqual(len(syncs), 2 * BULK_COUNT)
        not_partial = [s.text for s in syncs if s.mode != "partial"]
        self.assertEqual(not_partial, [], "every edit must be a partial sync")
        # Each edit was its own sync, and no sync ran that the edits did not cause.
        all_syncs = self.daemon.syncs()
        self.assertEqual(len(all_syncs), len(syncs) + 1, "syncs other than the start and one per edit:\n    "
                         + "\n    ".join(s.text for s in all_syncs if s.reason != self.m.reason))

        # The connection opened before the edits still works, on the same endpoint.
        mark = len(hold.lines)
        hold.send_line("again")
        hold.lines.wait_for(lambda line: True, start=mark, timeout=5, what="the long-lived connection's answer")
        answer = hold.json_lines(mark)[0]
        self.assertEqual(answer, {"id": first["id"]}, "the connection opened before the edits broke")

        self.assertEqual(self.live(), self.compiled(), "after the partial syncs the kernel differs from a compile")
        self.assert_foreign_untouched()


def set_elements(ruleset: str, name: str) -> list[str]:
    """The elements of set `name` in the ip table of an nft listing."""
    m = re.search(r"^table ip svcproxy \{.*?^\tset " + re.escape(name) + r" \{(.*?)^\t\}", ruleset, re.M | re.S)
    if not m:
        return []
    body = m.group(1).partition("elements = {")[2].rpartition("}")[0]
    return [e.strip() for e in body.split(",") if e.strip()]


class TestDriftRepair(DaemonTestCase):
    """The --sync-period timer checks the kernel against what svcproxy
    programmed (readback diff off the event thread) and repairs exactly what
    drifted in a partial transaction; only a missing table takes a full one."""
    sync_period = "1s"

    def drift_line(self, after: int, timeout: float = 10) -> tuple[dict, sb.SyncLine]:
        """The first "drift repaired" line at or after `after`, its fields,
        and the sync line that follows it (the repair's transaction)."""
        index = self.daemon.lines.wait_for(lambda line: "] drift repaired " in line, start=after, timeout=timeout,
                                           what="a drift repair")
        fields = sb.log_fields(self.daemon.lines.snapshot(index)[0].partition("] drift repaired ")[2])
        sync = self.daemon.wait_sync(after=index, reason="sync-period", timeout=5)
        return fields, sync

    def drift_counts(self, fields: dict) -> dict[str, int]:
        keys = ("missing_elements", "extra_elements", "changed_chains", "missing_chains", "extra_chains",
                "missing_sets", "extra_sets")
        return {k: int(fields[k]) for k in keys if int(fields[k])}

    def assert_repaired(self, compiled: str) -> None:
        self.assertEqual(self.live(), compiled, f"not repaired:\n    {self.log_tail()}")
        r = self.box.request(self.box.ext, TCP_A, 80, count=10)
        self.assertEqual(r.outcomes, {"reply": 10})
        self.assert_foreign_untouched()
        full = [s.text for s in self.daemon.syncs() if s.mode == "full" and s.reason != "start"]
        self.assertEqual(full, [], "drift of elements and chains is repaired without a full sync")

    def test_periodic_checks_of_an_undrifted_kernel_change_nothing(self):
        mark = self.daemon.mark()
        syncs = [self.daemon.wait_sync(after=mark, reason="sync-period", timeout=10)]
        syncs.append(self.daemon.wait_sync(after=syncs[0].index + 1, reason="sync-period", timeout=10))
        self.assertEqual([(s.mode, s.operations) for s in syncs], [("partial", 0)] * 2, [s.text for s in syncs])
        self.assertFalse(any("drift repaired" in line for line in self.daemon.lines.snapshot()), self.log_tail())
        fields = sb.log_fields(syncs[1].text)
        self.assertGreater(int(fields["elements_read"]), 0, syncs[1].text)

    def test_hand_deleted_set_element_is_added_back_by_a_partial_repair(self):
        box = self.box
        compiled = self.compiled()
        element = f"{TCP_A} . tcp . 80"
        # Service A's address . protocol . port classifies it as a ClusterIP
        # service (set cluster-ip); without it, its traffic is rejected.
        self.assertIn(element, set_elements(compiled, "cluster-ip"))
        mark = self.daemon.mark()
        box.exec(box.node, ["nft", "delete", "element", "ip", "svcproxy", "cluster-ip", f"{{ {element} }}"])
        fields, sync = self.drift_line(mark)
        self.assertEqual(self.drift_counts(fields), {"missing_elements": 1}, fields)
        self.assertEqual(fields["objects"], f"ip cluster-ip missing element {element}")
        self.assertEqual((sync.mode, sync.operations), ("partial", 1), sync.text)
        self.assert_repaired(compiled)

    def test_flushed_chain_is_rewritten_by_a_partial_repair(self):
        box = self.box
        compiled = self.compiled()
        mark = self.daemon.mark()
        box.exec(box.node, ["nft", "flush", "chain", "ip", "svcproxy", "services"])
        fields, sync = self.drift_line(mark)
        self.assertEqual(self.drift_counts(fields), {"changed_chains": 1}, fields)
        self.assertEqual(fields["objects"], "ip changed chain services")
        self.assertEqual((sync.mode, sync.operations), ("partial", 1), sync.text)
        self.assert_repaired(compiled)

    def test_rogue_element_and_chain_are_deleted_by_a_partial_repair(self):
        box = self.box
        compiled = self.compiled()
        mark = self.daemon.mark()
        # One transaction, so one check sees both.
        box.nft(box.node, "add element ip svcproxy cluster-ip { 10.96.9.9 . tcp . 80 }\n"
                          "add chain ip svcproxy rogue\n")
        fields, sync = self.drift_line(mark)
        self.assertEqual(self.drift_counts(fields), {"extra_elements": 1, "extra_chains": 1}, fields)
        self.assertEqual(fields["objects"], "ip cluster-ip extra element 10.96.9.9 . tcp . 80, ip extra chain rogue")
        self.assertEqual((sync.mode, sync.operations), ("partial", 2), sync.text)
        self.assert_repaired(compiled)

    def test_deleted_table_is_recreated_by_a_full_sync(self):
        box = self.box
        compiled = self.compiled()
        mark = self.daemon.mark()
        box.exec(box.node, ["nft", "delete", "table", "ip", "svcproxy"])
        fields, sync = self.drift_line(mark)
        self.assertEqual(fields["full"], "true", fields)
        self.assertEqual(sync.mode, "full", sync.text)
        self.assertEqual(self.live(), compiled, f"not repaired by {sync.text}")
        r = box.request(box.ext, TCP_A, 80, count=10)
        self.assertEqual(r.outcomes, {"reply": 10})
        self.assert_foreign_untouched()


class TestSigterm(DaemonTestCase):

    def test_sigterm_exits_0_within_1s_and_leaves_the_rules(self):
        box = self.box
        compiled = self.compiled()
        rc, elapsed = self.daemon.stop(signal.SIGTERM, timeout=5)
        self.assertEqual(rc, 0, f"exit status after SIGTERM; log:\n    {self.log_tail()}")
        self.assertLess(elapsed, 1.0, f"took {elapsed:.3f} s to exit")
        tables = sorted(" ".join(line.split()[1:]) for line in box.nft_list(box.node, ["tables"]).splitlines()
                        if line.split() and line.split()[-1] == "svcproxy")
        self.assertEqual(tables, ["ip svcproxy", "ip6 svcproxy"], "SIGTERM must leave the rules in place")
        self.assertEqual(self.live(), compiled)
        r = box.request(box.ext, TCP_A, 80, count=10)
        self.assertEqual(r.outcomes, {"reply": 10}, "traffic after the daemon exited")
        self.assert_foreign_untouched()


if __name__ == "__main__":
    unittest.main(verbosity=2)
