"""End-to-end: a restart does not flush conntrack (kube-proxy issue 122740).

A client in the external namespace sends a UDP datagram every 10 ms from a
fixed source port to a ClusterIP with two endpoints; conntrack pins the flow
to one of them (one entry in the node's conntrack table).

  - kill -9 + restart, then SIGTERM + restart: each new daemon's first sync
    (reason=start, mode=full) deletes no conntrack entry; the flow's entry
    is the same (same id) afterwards, `conntrack -E` in the node namespace
    saw no DESTROY (and no NEW) event for the flow across the restart, and
    the flow's datagrams after the start sync are all answered by the same
    endpoint.
  - The flow's endpoint removed while the daemon is down (kube-proxy deletes
    the UDP entries of endpoints that are gone, whenever it learns of it):
    the new daemon's start sync deletes the entry (conntrack_deleted >= 1,
    a DESTROY event for its id), and the flow is answered by the remaining
    endpoint from then on.

The event listener runs for the whole test; a marker entry inserted and
deleted with `conntrack -I`/`-D` before each restart and after each check
shows it was reading, and that it has read every event up to the check
(events of one namespace arrive in order).

Needs root (network namespaces) and the conntrack tool; skipped otherwise.
Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_conntrack_restart (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import NODE_V4, Pod, endpoint_slice, service  # noqa: E402

from sandbox import SVCPROXY  # noqa: E402

NS = "ctr"
PODS = [Pod("p1", 1), Pod("p2", 2)]
UDP_IP = "10.96.7.20"  # UDP 53 -> p1, p2 (UDP 8080)
MARKER_SRC, MARKER_DST = "198.51.100.1", "198.51.100.2"  # never routed: conntrack -I only


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    if not shutil.which("conntrack"):
        raise unittest.SkipTest("needs the conntrack tool (conntrack-tools)")
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-ctrestart-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(8080, "udp")])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


def node_object() -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"labels": {"kubernetes.io/hostname": sb.NODE_NAME}, "name": sb.NODE_NAME},
        "status": {"addresses": [{"address": NODE_V4, "type": "InternalIP"}]},
    }


def udp_service(pods: list[Pod]) -> list[dict]:
    return [service("dns", [UDP_IP], [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8080}],
                    namespace=NS),
            endpoint_slice("dns", "abcde", 4, [{"pod": p} for p in pods],
                           [{"name": "dns", "port": 8080, "protocol": "UDP"}], namespace=NS)]


# conntrack -E -o id: "    [NEW] udp      17 30 src=... dst=... sport=N dport=M ... id=123 ..."
_EVENT = re.compile(r"^\s*\[(\w+)\]\s+udp\b.*?\bsport=(\d+)\b.*?\bid=(\d+)")


def parse_event(line: str) -> tuple[str, int, int] | None:
    """(type, original source port, id) of a conntrack event line."""
    m = _EVENT.match(line)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


class TestConntrackAcrossRestart(unittest.TestCase):

    def setUp(self):
        self.box = Env.box
        self.box.flush_conntrack()
        self.pods = self.box.pods
        self.dir = Env.tmp / self.id().rpartition(".")[2]
        self.dir.mkdir()
        self.put("nodes.yaml", [node_object()])
        self.put("dns.yaml", udp_service([self.pods["p1"], self.pods["p2"]]))
        self.flags = [*sb.NODE_FLAGS, "--sync-period", "1h"]
        self.events = self.box.spawn(self.box.node, ["stdbuf", "-oL", "conntrack", "-E", "-e", "NEW,DESTROY",
                                                     "-p", "udp", "-o", "id"], name="conntrack-events")
        self.addCleanup(self.events.stop)
        self.markers = 0
        self.start_daemon()

    def put(self, name: str, objects: list[dict]) -> None:
        staging = self.dir.with_name(self.dir.name + "." + name)
        staging.write_text(sb.to_yaml(objects))
        os.rename(staging, self.dir / name)

    def start_daemon(self) -> sb.SyncLine:
        self.daemon = self.box.start_daemon(self.dir, self.flags)
        self.addCleanup(self.daemon.stop)
        start = self.daemon.wait_sync(reason="start", timeout=30)
        self.assertEqual(start.mode, "full", start.text)
        return start

    def marker(self) -> int:
        """Inserts and deletes a marker entry, waits until the listener has
        printed its DESTROY: every earlier event has been read by then.
        Returns the listener's line count."""
        self.markers += 1
        sport = 60000 + self.markers
        tuple_ = ["-p", "udp", "-s", MARKER_SRC, "-d", MARKER_DST, "--sport", str(sport), "--dport", "9"]
        self.box.exec(self.box.node, ["conntrack", "-I", *tuple_, "-t", "30"])
        self.box.exec(self.box.node, ["conntrack", "-D", *tuple_])
        self.events.lines.wait_for(lambda line: (parse_event(line) or ("",))[:2] == ("DESTROY", sport),
                                   timeout=10, what=f"the conntrack event of marker {sport}")
        return len(self.events.lines)

    def flow_events(self, sport: int, start: int, end: int) -> list[tuple[str, int, int]]:
        events = [parse_event(line) for line in self.events.lines.snapshot(start)[:end - start]]
        return [e for e in events if e and e[1] == sport]

    def entry(self, sport: int) -> dict:
        """The flow's one conntrack entry: its id and reply source (the endpoint)."""
        out = self.box.exec(self.box.node, ["conntrack", "-L", "-p", "udp", "--sport", str(sport), "-o", "id"],
                            check=False).stdout
        entries = []
        for line in out.splitlines():
            srcs = re.findall(r"\bsrc=(\S+)", line)
            ident = re.search(r"\bid=(\d+)", line)
            if len(srcs) == 2 and ident:
                entries.append({"id": int(ident.group(1)), "reply_src": srcs[1]})
        self.assertEqual(len(entries), 1, f"conntrack entries of the flow from port {sport}: {out}")
        return entries[0]

    def start_flow(self, sport: int) -> sb.Background:
        stream = self.box.start_stream(self.box.ext, "udp", UDP_IP, 53, sport=sport, interval=0.01)
        self.addCleanup(stream.stop)
        return stream

    def replies_after(self, stream: sb.Background, t: float, count: int) -> list[str]:
        """The ids of the first `count` replies received after time t."""
        def reply_after(line: str) -> bool:
            try:
                r = json.loads(line)
            except ValueError:
                return False
            return "id" in r and r["t"] > t
        stream.lines.wait_count(reply_after, count, timeout=10, what=f"{count} UDP replies")
        return [r["id"] for r in stream.json_lines() if "id" in r and r["t"] > t][:count]

    def pinned(self, stream: sb.Background, sport: int) -> tuple[str, dict]:
        """The endpoint every reply came from, and the flow's entry."""
        ids = set(self.replies_after(stream, 0, 30))
        self.assertEqual(len(ids), 1, f"one UDP flow from a fixed port must stick to one endpoint: {ids}")
        pinned = ids.pop()
        entry = self.entry(sport)
        self.assertEqual(entry["reply_src"], self.pods[pinned.partition(":")[0]].ip(4), entry)
        return pinned, entry

    def restart(self, sig: int, edit=None) -> tuple[sb.SyncLine, int, int]:
        """Stops the daemon with sig, applies edit (if any) while it is down,
        starts a new one and waits for its start sync. Returns that sync and
        the listener's line counts before the stop and after the sync."""
        before = self.marker()
        rc, _ = self.daemon.stop(sig, timeout=10)
        self.assertEqual(rc, 0 if sig == signal.SIGTERM else -sig, f"exit status after {sig!r}")
        if edit:
            edit()
        start = self.start_daemon()
        return start, before, len(self.events.lines)

    def assert_restart_keeps_the_flow(self, sig: int, stream: sb.Background, sport: int, pinned: str,
                                      entry: dict) -> None:
        start, before, _ = self.restart(sig)
        self.assertEqual(start.conntrack_deleted, 0, f"the start sync deleted conntrack entries: {start.text}")
        after_ids = set(self.replies_after(stream, start.time, 30))
        self.assertEqual(after_ids, {pinned}, f"the flow moved across {sig!r} + restart ({start.text})")
        self.assertEqual(self.entry(sport), entry, f"the flow's conntrack entry was replaced across {sig!r}")
        end = self.marker()
        self.assertEqual(self.flow_events(sport, before, end), [],
                         f"conntrack events of the flow across {sig!r} + restart")

    def test_restarts_keep_the_flow_entry_and_endpoint(self):
        sport = 40201
        stream = self.start_flow(sport)
        pinned, entry = self.pinned(stream, sport)
        self.assert_restart_keeps_the_flow(signal.SIGKILL, stream, sport, pinned, entry)
        self.assert_restart_keeps_the_flow(signal.SIGTERM, stream, sport, pinned, entry)
        self.assertEqual([r for r in stream.json_lines() if "error" in r], [])

    def test_endpoint_removed_while_down_is_cleaned_by_the_start_sync(self):
        sport = 40202
        stream = self.start_flow(sport)
        pinned, entry = self.pinned(stream, sport)
        other = "p2" if pinned.startswith("p1:") else "p1"
        start, before, _ = self.restart(signal.SIGTERM, lambda: self.put("dns.yaml", udp_service([self.pods[other]])))
        self.assertGreaterEqual(start.conntrack_deleted, 1, f"the removed endpoint's entry was kept: {start.text}")
        self.assertEqual(set(self.replies_after(stream, start.time, 30)), {f"{other}:8080"},
                         "the flow is not answered by the remaining endpoint after the start sync")
        end = self.marker()
        destroyed = [e for e in self.flow_events(sport, before, end) if e[0] == "DESTROY"]
        self.assertEqual([e[2] for e in destroyed], [entry["id"]], "DESTROY events of the flow")
        self.assertEqual(self.entry(sport)["reply_src"], self.pods[other].ip(4))


if __name__ == "__main__":
    unittest.main()
