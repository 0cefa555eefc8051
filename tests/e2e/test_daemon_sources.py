"""End-to-end: the daemon's sources, config file and log format.

  - API server: `svcproxy run --kubeconfig` in a network namespace against the
    fixture API server (tests/fixtures/apiserver.py, TLS + bearer token,
    started inside the namespace). Its first sync waits until every resource
    is listed, even when LISTs fail at first (503s), and programs the whole
    cluster; a new service, an endpoint change and a deletion each become an
    "api-changed" partial sync after which the kernel holds exactly what
    `svcproxy rules --kubeconfig` compiles; after the fixture compacts its
    history and closes every watch (410 Gone on resume), the daemon relists,
    counts it in svcproxy_watch_relists_total and converges again.
  - --config: a KubeProxyConfiguration sets the bind addresses, sync periods
    and verbosity; a flag given on the command line wins over the file; a
    field that does not apply is warned about once; a bad value exits 2
    naming the file and field.
  - --log-format json: every line is one JSON object; sync lines carry
    msg "sync done" and their fields typed.

Needs root (network namespaces) and openssl; skipped otherwise. Every wait is
on a log line or an answer, with a deadline.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_daemon_sources (from tests/e2e).
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
SOURCE_DIR = Path(os.environ.get("SVCPROXY_SOURCE_DIR", Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(SOURCE_DIR / "tests" / "fixtures"))
import apiserver  # noqa: E402
import sandbox as sb  # noqa: E402

SVCPROXY = os.environ.get("SVCPROXY_BIN", str(SOURCE_DIR / "build" / "svcproxy"))
NODE_IP = "192.168.77.2"
NODE = ["--hostname-override", "node-a", "--node-ip", NODE_IP]
HEALTHZ = f"{NODE_IP}:10256"
METRICS = f"{NODE_IP}:10249"


def service(name, ip, port, node_port=None):
    p = {"name": "http", "protocol": "TCP", "port": port, "targetPort": 8080}
    if node_port:
        p["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"type": "NodePort" if node_port else "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [p]}}


def endpoint_slice(name, svc, ips, trigger=None):
    meta = {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": svc}}
    if trigger:
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": trigger}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": "node-a"} for ip in ips],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}


NODE_OBJECT = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
               "spec": {"podCIDRs": ["10.244.0.0/24"]},
               "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}


class Netns:
    """A throwaway namespace with lo and one veth pair (NODE_IP on one end);
    deleted on close, whatever happened."""

    def __init__(self, name: str):
        self.name = name
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            self.run("ip", "link", "set", "lo", "up", check=True)
            self.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", check=True)
            self.run("ip", "addr", "add", f"{NODE_IP}/24", "dev", "eth0", check=True)
            self.run("ip", "link", "set", "eth0", "up", check=True)
            self.run("ip", "link", "set", "eth0p", "up", check=True)
        except BaseException:
            self.close()
            raise

    def run(self, *argv, check=False, timeout=120):
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def http_get(self, hostport: str, path: str) -> tuple[int, str]:
        """(status, body) of GET http://hostport/path from inside the namespace; (0, error) if refused."""
        code = ("import sys,urllib.request,urllib.error\n"
                "try:\n"
                f"  r=urllib.request.urlopen('http://{hostport}{path}',timeout=5); "
                "print(r.status); print(r.read().decode())\n"
                "except urllib.error.HTTPError as e:\n"
                "  print(e.code); print(e.read().decode())\n"
                "except OSError as e:\n"
                "  print(0); print(e)\n")
        out = self.run(sys.executable, "-c", code).stdout
        status, _, body = out.partition("\n")
        return int(status or 0), body

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class FixtureProcess:
    """The fixture API server inside a namespace, driven over its stdin."""

    def __init__(self, ns: Netns, pki_dir: str):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, apiserver.__file__,
                                      "--pki", pki_dir, "--bookmark-interval", "0.5"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = json.loads(self.proc.stdout.readline())["url"]

    def call(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if not reply.get("ok"):
            raise AssertionError(f"fixture {op}: {reply}")
        return reply

    def apply(self, resource: str, obj: dict) -> None:
        self.call("apply", resource=resource, object=obj)

    def delete(self, resource: str, name: str, namespace: str = "shop") -> None:
        self.call("delete", resource=resource, namespace=namespace, name=name)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class DaemonProcess:
    """`svcproxy run` in a namespace, its stderr read line by line."""

    def __init__(self, ns: Netns, args: list[str], log: Path):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns.name, SVCPROXY, "run", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines = sb.LineLog(self.proc.stderr, log)

    def wait_sync(self, *, after: int = 0, reason: str | None = None, timeout: float = 20) -> sb.SyncLine:
        def wanted(line):
            s = sb.parse_sync_line(line)
            return s is not None and (reason is None or s.reason == reason)
        i = self.lines.wait_for(wanted, start=after, timeout=timeout, what=f"sync reason={reason}")
        sync = sb.parse_sync_line(self.lines.lines[i], i)
        if not sync.ok:
            raise AssertionError(f"sync failed: {sync.text}")
        return sync

    def mark(self) -> int:
        return len(self.lines)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("nft") and shutil.which("openssl"),
                     "needs root, nft and openssl")
class DaemonOnTheApiServer(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="svcproxy-daemon-api-")
        self.ns = Netns(f"svcproxy-dapi-{os.getpid()}")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.addCleanup(self.ns.close)
        pki = os.path.join(self.tmp, "pki")  # the fixture generates it
        self.fixture = FixtureProcess(self.ns, pki)
        self.addCleanup(self.fixture.close)
        self.fixture.apply("nodes", NODE_OBJECT)
        self.fixture.apply("services", service("web", "10.96.0.10", 80, node_port=30080))
        self.fixture.apply("endpointslices", endpoint_slice("web-1", "web", ["10.244.0.5", "10.244.0.6"]))
        self.kubeconfig = apiserver.write_kubeconfig(os.path.join(self.tmp, "kubeconfig"), self.fixture.url,
                                                     ca=os.path.join(pki, "ca.crt"), token="test-token")

    def start_daemon(self, *flags) -> DaemonProcess:
        d = DaemonProcess(self.ns, ["--kubeconfig", self.kubeconfig, *NODE, "--healthz-bind-address", HEALTHZ,
                                    "--metrics-bind-address", METRICS, *flags],
                          Path(self.tmp) / "daemon.log")
        self.addCleanup(d.stop)
        return d

    def assert_kernel_matches_the_api(self, context: str):
        live = self.ns.run(SVCPROXY, "rules", "--live")
        want = self.ns.run(SVCPROXY, "rules", "--kubeconfig", self.kubeconfig, *NODE)
        self.assertEqual(want.returncode, 0, want.stderr)
        self.assertEqual(live.stdout, want.stdout, f"{context}: the kernel differs from a compile of the API's cluster")

    def metric(self, name: str) -> float:
        status, body = self.ns.http_get(METRICS, "/metrics")
        self.assertEqual(status, 200, body)
        for line in body.splitlines():
            series = line.rsplit(" ", 1)[0]
            # An exact series, or the first series of a name given without labels.
            if series == name or ("{" not in name and series.startswith(name + "{")):
                return float(line.rsplit(" ", 1)[1])
        self.fail(f"{name} not in /metrics")

    def test_first_sync_waits_for_every_list_then_changes_are_partial_syncs(self):
        # The first LISTs fail: a daemon that synced before every resource
        # was listed would program a half cluster.
        self.fixture.call("fault", status={"code": 503, "count": 3, "on": "list"})
        d = self.start_daemon()
        start = d.wait_sync(reason="start")
        self.assertEqual(start.mode, "full", start.text)
        before = d.lines.snapshot(0)[:start.index]
        self.assertTrue(any("503" in line or "retrying" in line for line in before),
                        "the injected LIST failures were not seen before the first sync:\n" + "\n".join(before))
        self.assertEqual([s for s in d.lines.snapshot(0)[:start.index] if sb.parse_sync_line(s)], [],
                         "a sync ran before the first complete list")
        self.assert_kernel_matches_the_api("after the first sync")

        mark = d.mark()
        self.fixture.apply("services", service("api", "10.96.0.11", 9090))
        self.fixture.apply("endpointslices", endpoint_slice("api-1", "api", ["10.244.0.7"]))
        sync = d.wait_sync(after=mark, reason="api-changed")
        self.assertEqual(sync.mode, "partial", sync.text)
        # Both objects may land in one sync or two: wait until the kernel
        # holds the endpoint.
        deadline = time.monotonic() + 10
        while True:
            mark = d.mark()  # before the read, as in test_relist_after_410_converges
            if "10.244.0.7" in self.ns.run(SVCPROXY, "rules", "--live").stdout:
                break
            self.assertLess(time.monotonic(), deadline, "the new endpoint never reached the kernel")
            d.wait_sync(after=mark, reason="api-changed")
        self.assert_kernel_matches_the_api("after adding a service")

        mark = d.mark()
        trigger = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.fixture.apply("endpointslices", endpoint_slice("web-1", "web", ["10.244.0.5"], trigger=trigger))
        sync = d.wait_sync(after=mark, reason="api-changed")
        self.assertEqual(sync.mode, "partial", sync.text)
        self.assert_kernel_matches_the_api("after removing an endpoint")
        self.assertGreaterEqual(self.metric("kubeproxy_network_programming_duration_seconds_count"), 1)
        self.assertGreaterEqual(self.metric("kubeproxy_sync_proxy_rules_endpoint_changes_total"), 1)

        mark = d.mark()
        self.fixture.delete("services", "api")
        d.wait_sync(after=mark, reason="api-changed")
        self.assertNotIn("10.96.0.11", self.ns.run(SVCPROXY, "rules", "--live").stdout)
        self.assert_kernel_matches_the_api("after deleting a service")
        self.assertEqual(self.metric("svcproxy_proxy_mode"), 1)
        # The kernel object gauges, kept from partial diffs, equal a count of
        # what the kernel holds.
        live = json.loads(self.ns.run(SVCPROXY, "rules", "--live", "--format", "json").stdout)
        want = {"chains": sum(len(t["chains"]) for t in live["tables"]),
                "sets": sum(len(t["sets"]) for t in live["tables"]),
                "elements": sum(len(s["elements"]) for t in live["tables"] for s in t["sets"])}
        for kind, n in want.items():
            self.assertEqual(self.metric(f'svcproxy_kernel_objects{{kind="{kind}"}}'), n, kind)

    def test_relist_after_410_converges(self):
        d = self.start_daemon()
        d.wait_sync(reason="start")
        self.assertEqual(self.metric("svcproxy_watch_relists_total"), 0)
        # History before now is gone; every watch ends; changes made
        # meanwhile are only seen by a relist.
        self.fixture.call("compact")
        self.fixture.call("fault", error410=4, close_watches=True)
        mark = d.mark()
        self.fixture.apply("endpointslices", endpoint_slice("web-1", "web", ["10.244.0.9"]))
        d.lines.wait_for("relisting|410", start=mark, timeout=20, what="a relist after 410 Gone")
        deadline = time.monotonic() + 20
        while True:
            # The mark comes before the kernel is read: a sync that lands
            # after the read is then at or after it, whatever else the
            # daemon logs meanwhile (a mark taken after the read could
            # fall past that sync's line and wait for one that never comes).
            mark = d.mark()
            if "10.244.0.9" in self.ns.run(SVCPROXY, "rules", "--live").stdout:
                break
            self.assertLess(time.monotonic(), deadline, "the change made during the relist never reached the kernel")
            d.wait_sync(after=mark)
        self.assert_kernel_matches_the_api("after the relist")
        self.assertGreaterEqual(self.metric("svcproxy_watch_relists_total"), 1)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("nft"), "needs root and nft")
class DaemonConfigAndLogFormat(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-daemon-config-"))
        self.ns = Netns(f"svcproxy-dcfg-{os.getpid()}")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.addCleanup(self.ns.close)
        self.manifests = self.tmp / "manifests"
        self.manifests.mkdir()
        docs = [NODE_OBJECT, service("web", "10.96.0.10", 80), endpoint_slice("web-1", "web", ["10.244.0.5"])]
        (self.manifests / "cluster.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))

    def start(self, *args) -> DaemonProcess:
        d = DaemonProcess(self.ns, ["--manifests", str(self.manifests), *NODE, *args], self.tmp / "daemon.log")
        self.addCleanup(d.stop)
        return d

    def test_config_file_sets_what_flags_do_not_and_flags_win(self):
        config = self.tmp / "config.yaml"
        config.write_text(f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
healthzBindAddress: {NODE_IP}:10266
metricsBindAddress: {NODE_IP}:10259
nftables:
  syncPeriod: 1s
  minSyncPeriod: 0s
iptables:
  syncPeriod: 10s
logging:
  verbosity: 2
""")
        # The command line moves metrics elsewhere: the file's address stays closed.
        d = self.start("--config", str(config), "--metrics-bind-address", METRICS)
        start = d.wait_sync(reason="start")
        # nftables.syncPeriod: 1s from the file: a periodic sync follows (a
        # drift check: partial, nothing drifted).
        periodic = d.wait_sync(after=start.index + 1, reason="sync-period", timeout=10)
        self.assertEqual((periodic.mode, periodic.operations), ("partial", 0), periodic.text)
        self.assertLess(periodic.time - start.time, 3.0, f"{start.text}\n{periodic.text}")
        status, body = self.ns.http_get(f"{NODE_IP}:10266", "/healthz")
        self.assertEqual(status, 200, body)
        self.assertTrue(json.loads(body)["healthy"], body)
        self.assertEqual(self.ns.http_get(METRICS, "/metrics")[0], 200)
        self.assertEqual(self.ns.http_get(f"{NODE_IP}:10259", "/metrics")[0], 0,
                         "the file's metricsBindAddress was used although --metrics-bind-address was given")
        warnings = [line for line in d.lines.snapshot(0) if "iptables.syncPeriod" in line]
        self.assertEqual(len(warnings), 1, "\n".join(d.lines.snapshot(0)))
        self.assertTrue(warnings[0].startswith("W"), warnings[0])
        # logging.verbosity: 2 from the file: changes are logged as they queue.
        mark = d.mark()
        (self.manifests / "more.json").write_text(json.dumps(service("api", "10.96.0.11", 9090)))
        d.wait_sync(after=mark, reason="manifests-changed")
        self.assertTrue(any("changes queued" in line for line in d.lines.snapshot(mark)),
                        "\n".join(d.lines.snapshot(mark)))

    def test_bad_config_value_exits_2_naming_file_and_field(self):
        config = self.tmp / "bad.yaml"
        config.write_text("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                          "nftables:\n  masqueradeBit: 40\n")
        r = self.ns.run(SVCPROXY, "run", "--manifests", str(self.manifests), *NODE, "--config", str(config))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("bad.yaml", r.stderr)
        self.assertIn("nftables.masqueradeBit", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_json_log_lines_are_json_objects(self):
        d = self.start("--log-format", "json", "--healthz-bind-address", HEALTHZ, "--metrics-bind-address", METRICS)
        i = d.lines.wait_for(lambda line: '"sync done"' in line, timeout=20, what="a JSON sync line")
        for line in d.lines.snapshot(0)[:i + 1]:
            json.loads(line)  # every line, not only the sync line
        sync = json.loads(d.lines.lines[i])
        self.assertEqual(sync["msg"], "sync done")
        self.assertEqual(sync["reason"], "start")
        self.assertEqual(sync["mode"], "full")
        self.assertIsInstance(sync["operations"], int)
        self.assertIsInstance(sync["ts"], float)
        self.assertRegex(sync["caller"], r"^daemon\.cc:\d+$")
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
