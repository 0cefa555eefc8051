"""End-to-end: a --manifests source that cannot be read is never taken for
an empty cluster (issue 11, item 1).

  - A path that does not exist (a typo, an unmounted volume): `rules`,
    `trace`, `run --once` and `run` exit 1 with one line naming the path, and
    a table programmed before (by `run --once`) is still in the kernel.
  - A readable directory without objects is an empty cluster: `rules` prints
    the empty ruleset with one warning, the daemon warns once.
  - A running daemon whose directory is renamed away, or one of whose files
    is replaced by a half-written one (cut in the middle of its JSON), keeps
    the last state it read in the kernel: real packets still reach the pods.
    The problem is logged, counted in svcproxy_manifest_read_errors_total and
    /healthz answers 503 with a "reason" naming it; other files' edits still
    apply; once the path or file is whole again, /healthz is 200 again.

Needs root (network namespaces); skipped otherwise. Every wait is on a log
line, a reply or an HTTP answer, with a deadline.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_manifests_unreadable (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import NODE_V4, NODE_V6, SVCPROXY, Pod, endpoint_slice, service  # noqa: E402

NS = "src"
PODS = [Pod("p1", 1), Pod("p2", 2)]
POD_IDS = {"p1:8080", "p2:8080"}
WEB_IP = "10.96.7.10"  # TCP 80 -> p1, p2
API_IP = "10.96.7.20"  # TCP 80 -> p2, added while web.json is broken
HTTP_PORT = [{"name": "http", "port": 8080, "protocol": "TCP"}]
HEALTHZ = "127.0.0.1:10256"
METRICS = "127.0.0.1:10249"
HTTP_FLAGS = ["--healthz-bind-address", HEALTHZ, "--metrics-bind-address", METRICS]


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-unreadable-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(8080, "tcp")])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


def node_object() -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": sb.NODE_NAME},
            "spec": {"podCIDRs": ["10.244.0.0/17", "fd00:10:244::/57"]},
            "status": {"addresses": [{"address": NODE_V4, "type": "InternalIP"},
                                     {"address": NODE_V6, "type": "InternalIP"}]}}


def tcp_service(name: str, ip: str, pods: list[Pod]) -> list[dict]:
    svc = service(name, [ip], [{"name": "http", "port": 80, "targetPort": 8080}], namespace=NS)
    return [svc, endpoint_slice(name, "abcde", 4, [{"pod": p} for p in pods], HTTP_PORT, namespace=NS)]


def json_list(objects: list[dict]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=1)


class SourceTestCase(unittest.TestCase):
    def setUp(self):
        self.box = Env.box
        self.dir = Env.tmp / self.id().rpartition(".")[2]
        self.staging = self.dir.with_name(self.dir.name + ".staging")
        self.m = self.dir / "manifests"
        self.m.mkdir(parents=True)
        self.staging.mkdir()

    def put(self, name: str, text: str) -> None:
        """Written beside the directory, renamed into it: the daemon sees
        exactly `text`, never a file being written."""
        tmp = self.staging / name
        tmp.write_text(text)
        os.rename(tmp, self.m / name)

    def in_node(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return self.box.exec(self.box.node, [SVCPROXY, *args], check=False, timeout=timeout)

    def live(self) -> str:
        r = self.in_node("rules", "--live")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def assert_serves(self, ip: str, ids: set[str], what: str) -> None:
        r = self.box.request(self.box.ext, ip, 80, count=12)
        self.assertEqual(r.outcomes.get("reply", 0), 12, f"{what}: {r.outcomes} {r.errors[:3]}")
        self.assertEqual(set(r.ids), ids, what)


class TestOneShotsAndStart(SourceTestCase):
    def test_missing_path_exits_1_naming_it_and_leaves_the_kernel_alone(self):
        self.put("nodes.yaml", sb.to_yaml([node_object()]))
        self.put("web.yaml", sb.to_yaml(tcp_service("web", WEB_IP, PODS)))
        r = self.in_node("run", "--once", "--manifests", str(self.m), *sb.NODE_FLAGS)
        self.assertEqual(r.returncode, 0, r.stderr)
        before = self.live()
        self.assertIn(WEB_IP, before)

        typo = str(self.dir / "manfests")
        trace = ["--src", sb.EXT_V4, "--dst", WEB_IP, "--dport", "80"]
        for args in (["rules", "--manifests", typo, *sb.NODE_FLAGS],
                     ["rules", "--manifests", typo + "/", "--format", "json", *sb.NODE_FLAGS],
                     ["trace", "--manifests", typo, *sb.NODE_FLAGS, *trace],
                     ["trace", "--manifests", typo, *sb.NODE_FLAGS, *trace, "--json"],
                     ["run", "--once", "--manifests", typo, *sb.NODE_FLAGS]):
            with self.subTest(args=args[:2]):
                r = self.in_node(*args)
                self.assertEqual(r.returncode, 1, f"{args}: stdout {r.stdout[:300]!r} stderr {r.stderr!r}")
                self.assertEqual(r.stdout, "", f"{args}: printed a ruleset or a trace of an empty cluster")
                naming = [line for line in r.stderr.splitlines() if typo in line]
                self.assertEqual(len(naming), 1, r.stderr)
                self.assertIn("No such file or directory", naming[0])
                if args[0] != "run":  # run also logs the proxy mode it chose
                    self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
                self.assertEqual(self.live(), before, f"{args} changed the kernel")

        # The daemon: the same, before any sync (it used to program an empty
        # cluster and keep running).
        try:
            r = self.in_node("run", "--manifests", typo, *sb.NODE_FLAGS, *HTTP_FLAGS, "--sync-period", "1h",
                             timeout=20)
        except subprocess.TimeoutExpired:
            self.fail(f"`svcproxy run --manifests {typo}` kept running")
        self.assertEqual(r.returncode, 1, r.stderr)
        naming = [line for line in r.stderr.splitlines() if typo in line]
        self.assertEqual(len(naming), 1, r.stderr)
        self.assertTrue(naming[0].startswith("svcproxy: "), r.stderr)
        self.assertFalse(any("sync done" in line for line in r.stderr.splitlines()), r.stderr)
        self.assertEqual(self.live(), before, "the daemon changed the kernel")

    def test_empty_directory_is_an_empty_cluster_said_once(self):
        r = self.in_node("rules", "--manifests", str(self.m), *sb.NODE_FLAGS)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("table ip svcproxy", r.stdout)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("the cluster is empty", lines[0])

        daemon = self.box.start_daemon(self.m, [*sb.NODE_FLAGS, "--sync-period", "1h"])
        self.addCleanup(daemon.stop)
        daemon.wait_sync(reason="start", timeout=30)
        mark = daemon.mark()
        os.kill(daemon.pid, signal.SIGHUP)  # read again: still empty, not said again
        daemon.wait_sync(after=mark, reason="sighup")
        warned = [line for line in daemon.lines.snapshot() if "the cluster is empty" in line]
        self.assertEqual(len(warned), 1, "\n".join(daemon.lines.snapshot()))
        self.assertEqual(daemon.stop()[0], 0)


class TestRunningDaemon(SourceTestCase):
    def setUp(self):
        super().setUp()
        self.put("nodes.yaml", sb.to_yaml([node_object()]))
        self.put("web.json", json_list(tcp_service("web", WEB_IP, PODS)))
        self.put("other.yaml", "# no objects yet\n")
        self.daemon = self.box.start_daemon(self.m, [*sb.NODE_FLAGS, *HTTP_FLAGS, "--sync-period", "1h"])
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_sync(reason="start", timeout=30)
        self.assert_serves(WEB_IP, POD_IDS, "after the start sync")
        self.assertEqual(self.healthz()[0], 200)
        self.assertEqual(self.metric("svcproxy_manifest_read_errors_total"), 0)

    def http(self, hostport: str, path: str) -> tuple[int, str]:
        code = ("import sys,urllib.request,urllib.error\n"
                "try:\n"
                f"  r=urllib.request.urlopen('http://{hostport}{path}',timeout=5); "
                "print(r.status); print(r.read().decode())\n"
                "except urllib.error.HTTPError as e:\n"
                "  print(e.code); print(e.read().decode())\n")
        out = self.box.exec(self.box.node, [sys.executable, "-c", code]).stdout
        status, _, body = out.partition("\n")
        return int(status), body

    def healthz(self) -> tuple[int, dict]:
        status, body = self.http(HEALTHZ, "/healthz")
        return status, json.loads(body)

    def metric(self, name: str) -> float:
        status, body = self.http(METRICS, "/metrics")
        self.assertEqual(status, 200, body)
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail(f"{name} not in /metrics")

    def wait_healthz(self, status: int, what: str, timeout: float = 10) -> dict:
        """Polls /healthz (every 50 ms, with a deadline) until it answers `status`."""
        deadline = time.monotonic() + timeout
        while True:
            got, body = self.healthz()
            if got == status:
                return body
            if time.monotonic() > deadline:
                self.fail(f"{what}: /healthz answered {got} {body}, not {status}; log:\n    "
                          + "\n    ".join(self.daemon.lines.snapshot()[-15:]))
            time.sleep(0.05)  # the interval of a poll with a deadline

    def test_directory_renamed_away_keeps_serving_and_recovers(self):
        mark = self.daemon.mark()
        os.rename(self.m, self.dir / "moved")
        i = self.daemon.lines.wait_for(lambda line: str(self.m) in line and "cannot read" in line, start=mark,
                                       what="the unreadable path logged")
        body = self.wait_healthz(503, "directory renamed away")
        self.assertFalse(body["healthy"], body)
        self.assertIn(str(self.m), body.get("reason", ""), body)
        self.assertEqual(self.metric("svcproxy_manifest_read_errors_total"), 1)
        self.assertIn(WEB_IP, self.live())
        self.assert_serves(WEB_IP, POD_IDS, "with the directory renamed away")
        logged = [line for line in self.daemon.lines.snapshot(mark) if str(self.m) + ":" in line]
        self.assertEqual(len(logged), 1, "\n".join(self.daemon.lines.snapshot(mark)))
        self.assertTrue(self.daemon.lines.snapshot(i)[0].startswith("W"), self.daemon.lines.snapshot(i)[0])

        mark = self.daemon.mark()
        os.rename(self.dir / "moved", self.m)
        self.daemon.lines.wait_for("read completely again", start=mark, what="the path read again")
        body = self.wait_healthz(200, "directory back")
        self.assertNotIn("reason", body)
        self.assertEqual(self.metric("svcproxy_manifest_read_errors_total"), 1)
        self.assert_serves(WEB_IP, POD_IDS, "with the directory back")

        # Gone again (moved and removed): counted again.
        mark = self.daemon.mark()
        os.rename(self.m, self.dir / "trash")
        shutil.rmtree(self.dir / "trash")
        self.daemon.lines.wait_for(lambda line: "cannot read" in line, start=mark, what="the removed path logged")
        self.wait_healthz(503, "directory removed")
        self.assertEqual(self.metric("svcproxy_manifest_read_errors_total"), 2)
        self.assert_serves(WEB_IP, POD_IDS, "with the directory removed")

    def test_half_written_file_keeps_its_services_while_other_files_apply(self):
        whole = json_list(tcp_service("web", WEB_IP, [PODS[0]]))
        mark = self.daemon.mark()
        self.put("web.json", whole[:len(whole) * 2 // 3])  # cut in the middle of the endpoint slice
        self.daemon.lines.wait_for(lambda line: "web.json" in line, start=mark, what="the half-written file logged")
        body = self.wait_healthz(503, "web.json half written")
        self.assertIn("web.json", body.get("reason", ""), body)
        self.assertEqual(self.metric("svcproxy_manifest_read_errors_total"), 1)
        self.assertIn(WEB_IP, self.live())
        self.assert_serves(WEB_IP, POD_IDS, "with web.json half written")

        # Another file's edit is applied meanwhile; web keeps both pods.
        mark = self.daemon.mark()
        self.put("other.yaml", sb.to_yaml(tcp_service("api", API_IP, [PODS[1]])))
        self.daemon.wait_sync(after=mark, reason="manifests-changed")
        self.assert_serves(API_IP, {"p2:8080"}, "a service added while web.json is half written")
        self.assert_serves(WEB_IP, POD_IDS, "web after another file's edit")
        self.assertEqual(self.metric("svcproxy_manifest_read_errors_total"), 1, "counted again")
        self.assertEqual(self.healthz()[0], 503)

        # Written whole: its new content (p1 only) and healthy again.
        mark = self.daemon.mark()
        self.put("web.json", whole)
        self.daemon.wait_sync(after=mark, reason="manifests-changed")
        self.wait_healthz(200, "web.json whole again")
        self.assert_serves(WEB_IP, {"p1:8080"}, "after web.json was written whole")


if __name__ == "__main__":
    unittest.main()
