"""End-to-end: svcproxy's list/watch against a real kube-apiserver.

This module starts its own control plane (tests/cluster/cluster.py) in its
own network namespace, beside any shared one, because it restarts the
apiserver and runs it with the watch cache off (`--watch-cache=false`) and
etcd compaction every few seconds (`--etcd-compaction-interval`): watches are
then served by etcd itself, and a resourceVersion falls out of history within
seconds, so a real 410 Gone is easy to provoke. Each test starts
`svcproxy run --kubeconfig` in a lab node namespace linked to the apiserver
and ends with the kernel (`svcproxy rules --live` in the node namespace)
equal to `svcproxy rules --manifests` of `kubectl get
services,endpointslices,nodes,servicecidrs -A -o yaml` with the same node
flags.

  - 410 after compaction: the daemon is frozen (SIGSTOP), Services change,
    compaction passes the daemon's resourceVersion, its connections are
    killed (`ss -K`) and it is resumed; its watches get 410 Gone, it relists
    (log line, svcproxy_watch_relists_total) and syncs only the difference
    (partial syncs with fewer operations than the full sync of the start).
  - apiserver restart mid-watch: the watches break and resume; changes made
    once it is back are programmed.
  - paged list: 1100 Services; the daemon's first LIST (limit 500) takes
    several pages (the server answers the same request with a `continue`
    token); all of them are programmed.
  - ServiceCIDR: a networking.k8s.io/v1 ServiceCIDR created while the daemon
    runs is added to the dropped service ranges.

Needs root, openssl and the cluster binaries (tests/cluster/build.sh).
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_watch (from tests/e2e).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402

NODE = f"watch-{os.getpid()}-node"
NODE_FLAGS = ["--hostname-override", NODE, "--node-ip", sb.NODE_V4, "--cluster-cidr", sb.CLUSTER_CIDRS[0]]
COMPACTION_INTERVAL = 3  # seconds
PAGE_SIZE = 500  # watch::ReflectorOptions::page_size
MANY = 1100  # Services for the paged list: three pages
CONVERGE = 60.0  # seconds for the daemon to program what the API server has, on two busy cores

CLUSTER = lab.Cluster(SOURCE_DIR / "build" / f"cluster-watch-{os.getpid()}", netns=f"svp-watch-{os.getpid()}",
                      apiserver_flags=("--watch-cache=false", f"--etcd-compaction-interval={COMPACTION_INTERVAL}s"))


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    if not shutil.which("openssl") or not shutil.which("ss"):
        raise unittest.SkipTest("needs openssl (cluster certificates) and ss (killing connections)")
    try:
        lab.build_binaries()
    except lab.ClusterError as e:
        raise unittest.SkipTest(f"the cluster binaries cannot be built here: {e}") from e
    atexit.register(tearDownModule)  # also when the run is interrupted
    CLUSTER.up(log=lambda *a: print(*a, file=sys.stderr))


def tearDownModule():
    CLUSTER.down(log=lambda *_: None)


def service(namespace: str, name: str, port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": port, "targetPort": 8080}]}}


def endpoint_slice(namespace: str, service_name: str, ip: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{service_name}-1", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": NODE}]}


def as_list(objects: list[dict]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


class TestClusterWatch(unittest.TestCase):
    tests_run = 0

    def setUp(self):
        self.leave_objects = False  # to the cluster's teardown
        # A namespace per test: without a namespace controller a deleted one stays Terminating.
        TestClusterWatch.tests_run += 1
        self.ns = f"watch-{os.getpid()}-{self.tests_run}"
        self.cluster = CLUSTER
        self.box = sb.Sandbox(SVCPROXY)
        self.addCleanup(self.box.close)
        # No namespace controller runs: the namespace's objects go first.
        self.addCleanup(self.cluster.kubectl, "delete", "namespace", self.ns, "--ignore-not-found",
                        "--wait=false", check=False)
        self.addCleanup(lambda: self.leave_objects or self.cluster.kubectl(
            "delete", "services,endpointslices", "--all", "-n", self.ns, "--ignore-not-found", check=False))
        self.box.build()
        self.cluster.attach(self.box.node)
        self.cluster.kubectl("create", "namespace", self.ns)

    # ------------------------------------------------------------ helpers

    def create(self, objects: list[dict], timeout: float = 60) -> None:
        self.cluster.kubectl("create", "-f", "-", input=as_list(objects), timeout=timeout)

    def start_daemon(self) -> sb.Daemon:
        argv = [SVCPROXY, "run", "--kubeconfig", str(self.cluster.kubeconfig), *NODE_FLAGS,
                "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249"]
        daemon = sb.Daemon(self.box.spawn(self.box.node, argv, name="daemon", lines_from="stderr", stdin=False))
        daemon.wait_sync(reason="start", timeout=CONVERGE)
        return daemon

    def metric(self, name: str) -> float:
        text = self.box.exec(self.box.node, ["curl", "-sf", "http://127.0.0.1:10249/metrics"]).stdout
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        self.assertIsNotNone(m, f"no {name} in the metrics")
        return float(m.group(1))

    def truth(self) -> str:
        """svcproxy's rules for what the API server has now."""
        objects = self.cluster.kubectl("get", "services,endpointslices,nodes,servicecidrs", "-A", "-o", "yaml",
                                       timeout=120).stdout
        path = self.box.workdir / "truth.yaml"
        path.write_text(objects)
        return self.box.svcproxy_run(["rules", "--manifests", str(path), *NODE_FLAGS]).stdout

    def live(self) -> str:
        return self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout

    def assert_kernel_is_truth(self, timeout: float = CONVERGE) -> str:
        """Waits until the kernel holds the rules of the API server's objects; returns them."""
        deadline = time.monotonic() + timeout
        while (live := self.live()) != (truth := self.truth()):
            if time.monotonic() > deadline:
                self.assertEqual(live, truth, f"the kernel is not the API server's state after {timeout:.0f} s")
            time.sleep(0.5)  # the daemon may still be syncing: polling with a deadline
        return live

    def list_resource_version(self) -> str:
        return json.loads(self.cluster.kubectl("get", "--raw", "/api/v1/services?limit=1").stdout)[
            "metadata"]["resourceVersion"]

    def compacted(self, resource_version: str) -> bool:
        """A watch from resource_version is answered 410 Gone (etcd compacted past it)."""
        result = self.cluster.kubectl(
            "get", "--raw", f"/api/v1/services?watch=1&resourceVersion={resource_version}&timeoutSeconds=1",
            check=False)
        return '"code":410' in result.stdout.replace(" ", "") or "410" in result.stderr or \
            "too old resource version" in result.stdout + result.stderr

    # ------------------------------------------------------------ tests

    def test_relist_after_compaction_410_syncs_only_the_difference(self):
        names = [f"svc-{i}" for i in range(20)]
        self.create([service(self.ns, n) for n in names] + [endpoint_slice(self.ns, n, f"10.244.0.{i + 10}")
                                                   for i, n in enumerate(names)])
        daemon = self.start_daemon()
        self.assert_kernel_is_truth()
        full = [s for s in daemon.syncs() if s.mode == "full"]
        self.assertTrue(full, "the daemon's first sync is full")
        relists_before = self.metric("svcproxy_watch_relists_total")

        # Frozen, and its watch connections killed (`ss -K`) so that nothing reaches it: the objects
        # change and etcd compacts past its resourceVersion before it can watch again.
        rv = self.list_resource_version()
        mark = daemon.mark()
        os.kill(daemon.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, daemon.pid, signal.SIGCONT)
        self.box.exec(self.box.node, ["ss", "-K", "dst", lab.APISERVER_IP])
        self.cluster.kubectl("delete", "-n", self.ns, "service/svc-0", "endpointslice/svc-0-1")
        self.create([service(self.ns, "added"), endpoint_slice(self.ns, "added", "10.244.0.99")])
        deadline = time.monotonic() + 10 * COMPACTION_INTERVAL + 30
        while not self.compacted(rv):
            self.assertLess(time.monotonic(), deadline, f"etcd never compacted past resourceVersion {rv}")
            time.sleep(0.5)  # compaction runs every COMPACTION_INTERVAL: polling with a deadline
        os.kill(daemon.pid, signal.SIGCONT)

        # The watch from its old resourceVersion: ERROR 410, reason Expired.
        daemon.lines.wait_for(lambda line: "Service watch: Expired" in line and "relisting" in line,
                              start=mark, timeout=CONVERGE, what="the Service watch's 410 and relist")
        live = self.assert_kernel_is_truth()
        self.assertIn("10.244.0.99", live)
        self.assertNotIn("10.244.0.10", live)
        self.assertGreater(self.metric("svcproxy_watch_relists_total"), relists_before)
        syncs = daemon.syncs(mark)
        self.assertTrue(syncs, "a sync after the relist")
        self.assertEqual([s.mode for s in syncs if s.mode != "partial"], [],
                         "a relist of a changed state syncs only the difference: " + "\n".join(s.text for s in syncs))
        self.assertGreater(sum(s.operations for s in syncs), 0, "the relist brought the changes")
        self.assertLess(sum(s.operations for s in syncs), full[0].operations / 2,
                        "the relist's syncs must carry only the difference:\n"
                        + "\n".join(s.text for s in [full[0], *syncs]))

    def test_apiserver_restart_mid_watch_loses_nothing(self):
        self.create([service(self.ns, "before"), endpoint_slice(self.ns, "before", "10.244.0.20")])
        daemon = self.start_daemon()
        self.assert_kernel_is_truth()
        mark = daemon.mark()
        self.cluster.stop_apiserver()
        try:
            daemon.lines.wait_for(lambda line: "watch" in line and "retrying" in line, start=mark,
                                  timeout=CONVERGE, what="a watch failing while the apiserver is down")
        finally:
            self.cluster.start_apiserver()
        self.cluster.kubectl("delete", "-n", self.ns, "service/before", "endpointslice/before-1")
        self.create([service(self.ns, "after"), endpoint_slice(self.ns, "after", "10.244.0.21")])
        live = self.assert_kernel_is_truth()
        self.assertIn("10.244.0.21", live)
        self.assertNotIn("10.244.0.20", live)

    def test_large_list_is_paged_and_complete(self):
        self.leave_objects = True  # deleting them one by one takes long; the cluster goes next
        self.create([service(self.ns, f"many-{i}") for i in range(MANY)], timeout=600)
        # The daemon's first request (its selectors, limit, resourceVersion=0) needs several pages.
        query = ("/api/v1/services?labelSelector=%21service.kubernetes.io%2Fservice-proxy-name"
                 f"&fieldSelector=spec.clusterIP%21%3DNone&limit={PAGE_SIZE}&resourceVersion=0")
        first = json.loads(self.cluster.kubectl("get", "--raw", query).stdout)
        self.assertEqual(len(first["items"]), PAGE_SIZE)
        self.assertTrue(first["metadata"].get("continue"), "the server pages the daemon's list")
        self.start_daemon()
        live = self.assert_kernel_is_truth(timeout=2 * CONVERGE)
        ips = self.cluster.kubectl("get", "services", "-n", self.ns, "-o",
                                   "jsonpath={.items[*].spec.clusterIP}").stdout.split()
        self.assertEqual(len(ips), MANY)
        missing = [ip for ip in ips if ip not in live]
        self.assertEqual(missing, [], "every Service of every page is programmed")

    def test_service_cidr_object_is_used(self):
        cidr = "10.97.0.0/24"
        name = f"watch-{os.getpid()}"
        self.create([service(self.ns, "one")])
        daemon = self.start_daemon()
        self.assertNotIn(cidr, self.assert_kernel_is_truth())
        mark = daemon.mark()
        self.cluster.kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR", "metadata": {"name": name},
            "spec": {"cidrs": [cidr]}}))
        # Its finalizer needs the ServiceCIDR controller, which does not run: the object stays until
        # the cluster goes, and the other tests' truth includes it.
        daemon.wait_sync(after=mark, timeout=CONVERGE)
        self.assertIn(cidr, self.assert_kernel_is_truth())


def load_tests(loader, standard_tests, pattern):
    # The paged list last: its Services stay (the cluster goes at the end) and would slow the others.
    names = sorted(loader.getTestCaseNames(TestClusterWatch),
                   key=lambda n: n == "test_large_list_is_paged_and_complete")
    return unittest.TestSuite(TestClusterWatch(n) for n in names)


if __name__ == "__main__":
    unittest.main()
