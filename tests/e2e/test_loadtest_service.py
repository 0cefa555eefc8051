"""End-to-end: `svcproxy loadtest NAMESPACE/SERVICE`, resolved through
--manifests, against a node running `svcproxy run --manifests DIR`.

  - Violations: the node's rules come from manifests where p3 is ready; a
    load test given manifests where p3 is unready (the source's view) finds
    answers from p3 and names it; given the node's own manifests, none. The
    expected set is the one `trace` gives for the same packet.
  - --watch: p3 turns unready mid-run (the manifests the daemon and the load
    test both read): the change is reported with p3's drain time, and p3's
    last answer came before the daemon's sync finished.
  - Conntrack attribution: servers that never say who they are (a plain TCP
    sink), loaded in connect mode from the node namespace (where the DNAT
    happens): all three endpoints are attributed.
  - --via cluster and nodeport load the right address; targets that name
    nothing usable exit 2 with one line naming the target.

The pods' echo servers name themselves IP:PORT (`svcproxy echo --id`), the
form the expected set is written in, so answers can be judged from any
client. Needs root (network namespaces); skipped otherwise.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_loadtest_service (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import unittest
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SVCPROXY, Pod, endpoint_slice, service  # noqa: E402

NS = "lts"
PODS = [Pod("p1", 1), Pod("p2", 2), Pod("p3", 3)]
WEB_IP, SINK_IP, ROLL_IP = "10.96.6.10", "10.96.6.20", "10.96.6.30"
NODE_PORT = 30080
ECHO_PORT, SINK_PORT = 8080, 9000

# Accepts and closes: a server that never names itself.
TCP_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4096)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None
    daemon: sb.Daemon | None = None


def ep(pod: Pod, port: int = ECHO_PORT) -> str:
    return f"{pod.v4}:{port}"


def slice_of(name: str, port: dict, unready: tuple[str, ...] = ()) -> dict:
    endpoints = [{"pod": p} if p.name not in unready else {"pod": p, "ready": False, "serving": False,
                                                           "terminating": False} for p in PODS]
    return endpoint_slice(name, "aaaaa", 4, endpoints, [port], namespace=NS)


def web(unready: tuple[str, ...] = ()) -> list[dict]:
    return [service("web", [WEB_IP], [{"name": "http", "port": 80, "targetPort": ECHO_PORT, "nodePort": NODE_PORT}],
                    namespace=NS, type="NodePort"),
            slice_of("web", {"name": "http", "port": ECHO_PORT, "protocol": "TCP"}, unready)]


def roll(unready: tuple[str, ...] = ()) -> list[dict]:
    return [service("roll", [ROLL_IP], [{"name": "http", "port": 80, "targetPort": ECHO_PORT}], namespace=NS),
            slice_of("roll", {"name": "http", "port": ECHO_PORT, "protocol": "TCP"}, unready)]


def sink() -> list[dict]:
    return [service("sink", [SINK_IP], [{"name": "tcp", "port": 80, "targetPort": SINK_PORT}], namespace=NS),
            slice_of("sink", {"name": "tcp", "port": SINK_PORT, "protocol": "TCP"})]


def put(directory: Path, name: str, objects: list[dict]) -> None:
    """Written beside the directory and renamed in: one inotify event, never
    a half-written file."""
    staging = directory.with_name(directory.name + ".staging")
    staging.mkdir(exist_ok=True)
    tmp = staging / name
    tmp.write_text(sb.to_yaml(objects))
    os.rename(tmp, directory / name)


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-loadtest-service-"))
    try:
        box = Env.box = sb.Sandbox(SVCPROXY)
        box.build()
        box.add_pods(PODS)
        echoes = [box.start_echo(p.ns, f"0.0.0.0:{ECHO_PORT}", id=ep(p), wait=False) for p in PODS]
        sinks = [box.spawn(p.ns, [sys.executable, "-c", TCP_SINK, str(SINK_PORT)], name=f"sink-{p.name}")
                 for p in PODS]
        box.wait_ready(echoes)
        for s in sinks:
            s.lines.wait_for("listening", timeout=15, what="the TCP sink")
        live, stale = Env.tmp / "live", Env.tmp / "stale"
        live.mkdir()
        stale.mkdir()
        for directory in (live, stale):
            put(directory, "roll.yaml", roll())
            put(directory, "sink.yaml", sink())
        put(live, "web.yaml", web())
        put(stale, "web.yaml", web(unready=("p3",)))
        Env.daemon = box.start_daemon(live, [*sb.NODE_FLAGS, "--healthz-bind-address", "",
                                             "--metrics-bind-address", ""])
        Env.daemon.wait_sync(reason="start", timeout=30)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    if Env.daemon:
        Env.daemon.stop()
    sb.close_env(Env)


def loadtest(ns: str, *args: str, check_rc: int | None = 0, timeout: float = 120):
    """`svcproxy loadtest ARGS --quiet --json F` in namespace ns; returns
    (CompletedProcess, the report or None)."""
    json_path = Env.tmp / f"report-{len(list(Env.tmp.glob('report-*')))}.json"
    r = Env.box.exec(ns, [SVCPROXY, "loadtest", *args, "--quiet", "--json", str(json_path)],
                     check=False, timeout=timeout)
    if check_rc is not None and r.returncode != check_rc:
        raise AssertionError(f"loadtest {' '.join(args)} exited {r.returncode} (want {check_rc}):\n"
                             f"{r.stdout}\n{r.stderr}")
    report = json.loads(json_path.read_text()) if json_path.exists() and json_path.stat().st_size else None
    return r, report


def source_flags(directory: str) -> list[str]:
    return ["--manifests", str(Env.tmp / directory), *sb.NODE_FLAGS]


class Violations(unittest.TestCase):
    def test_an_endpoint_the_source_marks_unready_is_caught(self):
        r, report = loadtest(Env.box.ext, f"{NS}/web:http", *source_flags("stale"), "--requests", "600",
                             "--concurrency", "8")
        p3 = ep(Env.box.pods["p3"])
        self.assertEqual(report["address"], f"{WEB_IP}:80", r.stderr)
        # The rules (p3 ready) still send to p3; the source says it is unready.
        self.assertEqual(set(report["endpoints"]), {ep(p) for p in PODS}, r.stdout)
        self.assertEqual([v["endpoint"] for v in report["violations"]], [p3], r.stdout)
        self.assertGreater(report["violations"][0]["count"], 0)
        self.assertEqual(report["violations"][0]["reason"], "unready")
        self.assertFalse(report["endpoints"][p3]["expected"])
        self.assertIn(p3, r.stdout)
        self.assertEqual(report["fairness"]["basis"], "expected")
        # The expected set is the one trace gives for the same packet.
        traced = json.loads(Env.box.svcproxy_run(
            ["trace", *source_flags("stale"), "--json", "--src", sb.EXT_V4, "--dst", WEB_IP, "--dport", "80"]).stdout)
        self.assertEqual(sorted(traced["endpoints"]), sorted(ep(p) for p in PODS[:2]))
        self.assertIn(f"expected: {', '.join(sorted(traced['endpoints']))}; left out: {p3} (unready)", r.stderr)

    def test_the_current_rules_report_none(self):
        r, report = loadtest(Env.box.ext, f"{NS}/web:http", *source_flags("live"), "--requests", "600",
                             "--concurrency", "8", "--fail-if", "violations>0")
        self.assertEqual(report["violations"], [], r.stdout)
        self.assertEqual(set(report["endpoints"]), {ep(p) for p in PODS}, r.stdout)
        self.assertGreater(report["fairness"]["chi2_p"], 0.001, r.stdout)


class Watch(unittest.TestCase):
    def test_drain_of_an_endpoint_turned_unready_mid_run(self):
        box, live = Env.box, Env.tmp / "live"
        p3 = ep(box.pods["p3"])
        json_path = Env.tmp / "watch.json"
        run = box.spawn(box.node, [SVCPROXY, "loadtest", f"{NS}/roll:http", *source_flags("live"), "--watch",
                                   "--mode", "connect", "--duration", "5s", "--concurrency", "4",
                                   "--json", str(json_path)],
                        name="loadtest-watch", lines_from="stderr")
        try:
            start = run.lines.wait_for(r"^svcproxy: loadtest: lts/roll", timeout=30, what="the resolved target")
            # Traffic is flowing once a progress line is out (~1 s in).
            run.lines.wait_for(r"req/s", start=start, timeout=15, what="a progress line")
            mark = Env.daemon.mark()
            put(live, "roll.yaml", roll(unready=("p3",)))
            sync = Env.daemon.wait_sync(after=mark, reason="manifests-changed", timeout=15)
            seen = run.lines.wait_for(r"watch: endpoints changed at", timeout=15, what="the watch line")
            self.assertEqual(run.proc.wait(timeout=30), 0, "\n".join(run.lines.snapshot()))
        finally:
            run.stop()
            put(live, "roll.yaml", roll())
        line = run.lines.snapshot(seen)[0]
        self.assertIn(f"removed {p3}; added -", line)
        changed_at = datetime.strptime(re.search(r"changed at (\S+):", line).group(1),
                                       "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
        report = json.loads(json_path.read_text())
        self.assertEqual(len(report["changes"]), 1, report["changes"])
        change = report["changes"][0]
        self.assertEqual(change["removed"], [p3])
        self.assertIsNotNone(change["drain_us"], change)
        # p3 served before the change; its last answer came before the
        # daemon's sync finished. In connect mode an answer is the
        # handshake, which the pod's kernel completes within microseconds of
        # the SYN (a request mode answer waits for the echo process to be
        # scheduled). The answer is stamped when the load tester's thread
        # runs, which on this shared 2-core machine (load average ~30) can
        # be a few hundred ms late: 0.5 s of slack. Rules that kept sending
        # to p3 would show it answering until the end of the run, 3+ s on.
        self.assertGreater(report["endpoints"][p3]["count"], 0)
        last_answer = changed_at + change["drain_us"] / 1e6
        self.assertLessEqual(last_answer, sync.time + 0.5,
                             f"p3's last answer {last_answer:.6f}, sync done {sync.time:.6f}")
        # The others kept serving after it.
        for pod in PODS[:2]:
            self.assertGreater(report["endpoints"][ep(pod)]["last_at_us"], change["at_us"])
        # Attributed by conntrack (the client is the node itself), every one.
        self.assertEqual(set(report["endpoints"]), {ep(p) for p in PODS}, report["endpoints"])
        self.assertEqual(sum(e["count"] for e in report["endpoints"].values()), report["answers"],
                         report["warnings"])


class Conntrack(unittest.TestCase):
    def test_servers_that_do_not_name_themselves(self):
        r, report = loadtest(Env.box.node, f"{NS}/sink", *source_flags("live"), "--mode", "connect",
                             "--requests", "600", "--concurrency", "8")
        self.assertEqual(report["answers"], 600, r.stdout)
        self.assertEqual(set(report["endpoints"]), {ep(p, SINK_PORT) for p in PODS}, r.stdout)
        for name, e in report["endpoints"].items():
            self.assertGreater(e["count"], 0, name)
        # Every connection attributed, none left as "?".
        self.assertEqual(sum(e["count"] for e in report["endpoints"].values()), 600, report["warnings"])
        self.assertEqual(report["violations"], [])

    def test_address_target_in_connect_mode(self):
        r, report = loadtest(Env.box.node, f"{SINK_IP}:80", "--mode", "connect", "--requests", "300",
                             "--concurrency", "4", "--attribute", "conntrack")
        self.assertEqual(set(report["endpoints"]), {ep(p, SINK_PORT) for p in PODS}, r.stdout)
        self.assertEqual(sum(e["count"] for e in report["endpoints"].values()), 300, report["warnings"])


class Via(unittest.TestCase):
    def test_cluster_and_nodeport(self):
        for via, address in (("cluster", f"{WEB_IP}:80"), ("nodeport", f"{sb.NODE_V4}:{NODE_PORT}")):
            with self.subTest(via=via):
                r, report = loadtest(Env.box.ext, f"{NS}/web:80", *source_flags("live"), "--via", via,
                                     "--requests", "300", "--concurrency", "4")
                self.assertEqual(report["address"], address, r.stderr)
                self.assertEqual(report["answers"], 300, r.stdout)
                self.assertEqual(set(report["endpoints"]), {ep(p) for p in PODS}, r.stdout)
                self.assertEqual(report["violations"], [])

    def test_each_source_is_traced(self):
        r, report = loadtest(Env.box.ext, f"{NS}/web:http", *source_flags("live"), "--sources",
                             f"{sb.EXT_V4},{sb.EXT_V4_ALT}", "--requests", "300", "--concurrency", "4")
        self.assertIn(f"from {sb.EXT_V4},{sb.EXT_V4_ALT} expected: {', '.join(sorted(ep(p) for p in PODS))}",
                      r.stderr)
        self.assertEqual(set(report["endpoints"]), {ep(p) for p in PODS}, r.stdout)
        self.assertEqual(report["violations"], [])

    def test_targets_naming_nothing_exit_2(self):
        cases = {
            f"{NS}/nope": "no such service",
            f"{NS}/web:https": "service has no port https",
            f"{NS}/web:http --via lb": "no address for --via lb",
            f"{NS}/web:http --via external": "no address for --via external",
            f"{NS}/web:http --via sideways": "--via",
        }
        for args, message in cases.items():
            with self.subTest(args=args):
                target, *extra = args.split()
                r = Env.box.exec(Env.box.ext, [SVCPROXY, "loadtest", target, *extra, *source_flags("live"),
                                               "--requests", "1"], check=False)
                self.assertEqual(r.returncode, 2, r.stderr)
                lines = r.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn(message, lines[0])
                if "--via sideways" not in args:
                    self.assertIn(target, lines[0])


if __name__ == "__main__":
    unittest.main()
