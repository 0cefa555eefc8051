"""End-to-end: watch bookmarks from a real kube-apiserver move svcproxy's
resourceVersion on, and a broken watch resumes from the bookmark's.

This module runs its own control plane (tests/cluster/cluster.py) with the
watch cache on (kube-apiserver's default; only the cache sends bookmarks)
and an audit log of every Service request, which shows the
resourceVersion of each watch and every LIST the daemon makes, as the
server saw them.

The apiserver sends a bookmark to each watch that asked for them
(svcproxy asks with allowWatchBookmarks=true, as client-go does) about once
a minute (cacher.go: defaultBookmarkFrequency) and 2 s before the watch's
timeoutSeconds; svcproxy asks for 300..600 s, so the test waits for the
periodic one, about a minute after the watch starts. There is no way to
have it sooner without changing the client's requests.

  - Services that svcproxy's selector filters out
    (service.kubernetes.io/service-proxy-name) are created while it
    watches: they move the Service cache's resourceVersion, but reach the
    watch only as the bookmark's resourceVersion. Once a bookmark arrived
    (svcproxy_watch_bookmarks_total{resource="services"}), the daemon's
    connections are killed (`ss -K`); its Service watch resumes from a
    resourceVersion at least that of the last filtered write (so taken
    from the bookmark: no event carried it), without a LIST (audit log
    and svcproxy_watch_relists_total), and a Service created afterwards is
    programmed through the resumed watch. The kernel ends equal to the
    rules of `kubectl get services,endpointslices,nodes,servicecidrs -A -o
    yaml`.

Needs root, openssl, ss and the cluster binaries (tests/cluster/build.sh).
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_bookmarks (from tests/e2e).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import time
import unittest
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402

NODE = f"bookmarks-{os.getpid()}-node"
NODE_FLAGS = ["--hostname-override", NODE, "--node-ip", sb.NODE_V4, "--cluster-cidr", sb.CLUSTER_CIDRS[0]]
NAMESPACE = f"bookmarks-{os.getpid()}"
CONVERGE = 60.0  # seconds for the daemon to program what the API server has, on two busy cores
BOOKMARK_WAIT = 120.0  # the periodic bookmark comes about 60 s after a watch starts
USER_AGENT = "svcproxy/"
FILTERED = {"service.kubernetes.io/service-proxy-name": "someone-else"}

STATE = SOURCE_DIR / "build" / f"cluster-bookmarks-{os.getpid()}"
AUDIT_POLICY = STATE.parent / f"{STATE.name}.audit-policy.yaml"
AUDIT_LOG = STATE / "logs" / "audit.log"
CLUSTER = lab.Cluster(STATE, netns=f"svp-bm-{os.getpid()}", apiserver_flags=(
    f"--audit-policy-file={AUDIT_POLICY}", f"--audit-log-path={AUDIT_LOG}", "--audit-log-format=json",
    "--audit-log-mode=blocking"))


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    if not shutil.which("openssl") or not shutil.which("ss"):
        raise unittest.SkipTest("needs openssl (cluster certificates) and ss (killing connections)")
    try:
        lab.build_binaries()
    except lab.ClusterError as e:
        raise unittest.SkipTest(f"the cluster binaries cannot be built here: {e}") from e
    atexit.register(tearDownModule)  # also when the run is interrupted
    AUDIT_POLICY.parent.mkdir(parents=True, exist_ok=True)
    # Services only, at Metadata level (verb, requestURI, userAgent), once a response starts.
    AUDIT_POLICY.write_text("""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  resources:
  - group: ""
    resources: ["services"]
- level: None
""")
    CLUSTER.up(log=lambda *a: print(*a, file=sys.stderr))


def tearDownModule():
    CLUSTER.down(log=lambda *_: None)
    AUDIT_POLICY.unlink(missing_ok=True)


def service(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def endpoint_slice(service_name: str, ip: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service_name}-1", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": NODE}]}


def audit_requests(verb: str) -> list[dict]:
    """svcproxy's Service requests with `verb` (list, watch) as the audit log has them, in order:
    {"rv": the resourceVersion parameter, "uri", "time"}."""
    out = []
    for line in AUDIT_LOG.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written
        if event.get("verb") != verb or not event.get("userAgent", "").startswith(USER_AGENT) or \
                event.get("stage") not in ("ResponseStarted", "ResponseComplete"):
            continue
        if verb == "watch" and event["stage"] != "ResponseStarted":
            continue  # a watch's start; its end is logged again
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(event["requestURI"]).query)
        out.append({"rv": query.get("resourceVersion", [""])[0], "uri": event["requestURI"],
                    "time": event.get("stageTimestamp", "")})
    return out


class TestBookmarks(unittest.TestCase):

    def setUp(self):
        self.cluster = CLUSTER
        self.box = sb.Sandbox(SVCPROXY)
        self.addCleanup(self.box.close)
        self.addCleanup(self.cluster.kubectl, "delete", "services,endpointslices", "--all", "-n", NAMESPACE,
                        "--ignore-not-found", "--wait=false", check=False)
        self.box.build()
        self.cluster.attach(self.box.node)
        self.cluster.kubectl("create", "namespace", NAMESPACE)

    def create(self, objects: list[dict]) -> list[dict]:
        out = self.cluster.kubectl("create", "-f", "-", "-o", "json",
                                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})).stdout
        # One JSON document per created object, one after the other.
        objects, decoder, at = [], json.JSONDecoder(), 0
        out = out.strip()
        while at < len(out):
            obj, at = decoder.raw_decode(out, at)
            objects += obj["items"] if obj.get("kind") == "List" else [obj]
            at = len(out) - len(out[at:].lstrip())
        return objects

    def metrics(self) -> str:
        return self.box.exec(self.box.node, ["curl", "-sf", "http://127.0.0.1:10249/metrics"]).stdout

    def metric(self, name: str, labels: str = "") -> float:
        m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", self.metrics(), re.M)
        self.assertIsNotNone(m, f"no {name}{labels} in the metrics")
        return float(m.group(1))

    def assert_kernel_is_truth(self, timeout: float = CONVERGE) -> str:
        deadline = time.monotonic() + timeout
        path = self.box.workdir / "truth.yaml"
        while True:
            path.write_text(self.cluster.kubectl("get", "services,endpointslices,nodes,servicecidrs", "-A",
                                                 "-o", "yaml").stdout)
            truth = self.box.svcproxy_run(["rules", "--manifests", str(path), *NODE_FLAGS]).stdout
            live = self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout
            if live == truth:
                return live
            if time.monotonic() > deadline:
                self.assertEqual(live, truth, f"the kernel is not the API server's state after {timeout:.0f} s")
            time.sleep(0.5)  # the daemon may still be syncing: polling with a deadline

    def test_watch_resumes_from_the_bookmarks_resource_version(self):
        self.create([service("seen"), endpoint_slice("seen", "10.244.0.10")])
        argv = [SVCPROXY, "run", "--kubeconfig", str(self.cluster.kubeconfig), *NODE_FLAGS,
                "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249"]
        daemon = sb.Daemon(self.box.spawn(self.box.node, argv, name="daemon", lines_from="stderr", stdin=False))
        started = daemon.wait_sync(reason="start", timeout=CONVERGE).index + 1
        watch_started = time.monotonic()
        self.assert_kernel_is_truth()
        bookmarks = self.metric("svcproxy_watch_bookmarks_total", '{resource="services"}')
        relists = self.metric("svcproxy_watch_relists_total")
        self.assertEqual(len(audit_requests("list")), 1, "one Service LIST at the start")
        seen_watches = len(audit_requests("watch"))

        # Filtered out by the daemon's selector: the server's Service resourceVersion moves, the watch gets
        # no event for them.
        hidden = self.create([service(f"hidden-{i}", FILTERED) for i in range(3)])
        hidden_rv = max(int(s["metadata"]["resourceVersion"]) for s in hidden)

        deadline = time.monotonic() + BOOKMARK_WAIT
        while self.metric("svcproxy_watch_bookmarks_total", '{resource="services"}') <= bookmarks:
            self.assertLess(time.monotonic(), deadline, f"no Service bookmark within {BOOKMARK_WAIT:.0f} s")
            time.sleep(1)  # the apiserver's bookmark timer: polling the daemon's metrics with a deadline
        # A bookmark refreshes the counters (it wakes the loop) but is no change to sync.
        self.assertEqual([s.text for s in daemon.syncs(started) if s.reason != "sync-period"], [])
        retries = [line for line in daemon.lines.snapshot() if "retrying" in line]
        print(f"\nbookmarks: the first Service bookmark {time.monotonic() - watch_started:.1f} s after the "
              f"daemon's first sync ({len(audit_requests('watch'))} Service watches so far; daemon retries: "
              f"{retries})", file=sys.stderr)

        mark = daemon.mark()
        self.box.exec(self.box.node, ["ss", "-K", "dst", lab.APISERVER_IP])
        daemon.lines.wait_for(lambda line: "Service watch" in line and "retrying" in line, start=mark,
                              timeout=CONVERGE, what="the Service watch breaking")
        deadline = time.monotonic() + CONVERGE
        while len(resumed := audit_requests("watch")[seen_watches:]) < 1:
            self.assertLess(time.monotonic(), deadline, "the Service watch did not resume")
            time.sleep(0.2)  # the daemon backs off before it watches again: polling with a deadline
        rv = int(resumed[-1]["rv"])
        self.assertGreaterEqual(rv, hidden_rv, "the resumed watch starts from the bookmark's resourceVersion, past "
                                               f"the filtered writes: {resumed[-1]['uri']}")
        print(f"bookmarks: resumed the Service watch from resourceVersion {rv} (last filtered write {hidden_rv})",
              file=sys.stderr)

        # The resumed watch carries changes: a Service created now is programmed, with no LIST.
        mark = daemon.mark()
        self.create([service("after"), endpoint_slice("after", "10.244.0.11")])
        daemon.wait_sync(after=mark, timeout=CONVERGE)
        self.assertIn("10.244.0.11", self.assert_kernel_is_truth())
        self.assertEqual(len(audit_requests("list")), 1, "no Service LIST after the resume")
        self.assertEqual(self.metric("svcproxy_watch_relists_total"), relists)


if __name__ == "__main__":
    unittest.main()
