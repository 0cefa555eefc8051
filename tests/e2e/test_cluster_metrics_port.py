"""End-to-end against a real control plane: svcproxy's metrics port next to
the real kube-proxy v1.37.2's (nftables mode), both scraped and compared.

Two lab topologies (sandbox.py) under one node name, as in
test_cluster_differential.py: kube-proxy runs in one node namespace,
`svcproxy run --kubeconfig` in the other, both linked to the control plane
(tests/cluster/cluster.py). The pod agent registers the node and one pod
with a real readiness probe; a TCP NodePort Service and a UDP Service select
it. Once both proxies synced, the pod's readiness server is stopped: the
pod turns not Ready, the EndpointSlice changes, and both proxies run a
partial sync, observe the network programming latency and reconcile UDP
conntrack. Then both metrics ports are scraped:

  - /metrics: every kubeproxy_ family kube-proxy exports is in
    KUBE_PROXY_NFTABLES (its nftables-mode registrations at v1.37.2,
    pkg/proxy/metrics/metrics.go), with that type and those labels; svcproxy
    exports every family of that list with the same type, label names, help
    text and histogram buckets, and no kubeproxy_ family kube-proxy lacks;
    the process_* families likewise; every other family of kube-proxy's
    matches a prefix of NOT_EXPORTED, whose reasons README's compatibility
    table repeats.
  - /metrics/slis, /proxyMode, /healthz: same families, bodies and types.
  - /statusz and /flagz: for a set of Accept headers, the same status and
    content type (text, JSON, YAML, 406), the same text layout and the same
    JSON keys.
  - /configz: the same JSON shape (every key path of kube-proxy's, and no
    other).

Needs root, openssl and the cluster binaries (tests/cluster/build.sh);
skipped with the reason otherwise.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_metrics_port (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402
import labnode  # noqa: E402

NAMESPACE = f"mport-{os.getpid()}"
NODE = f"mport-{os.getpid()}-node"
POD = sb.Pod("web-1", 1, node=NODE)
PROBE = {"port": 8081, "path": "/ready", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1,
         "successThreshold": 1}
CLUSTER_CIDRS = ",".join(sb.CLUSTER_CIDRS)
BASE = "http://127.0.0.1:10249"

# kube-proxy v1.37.2's metrics in nftables mode (RegisterMetrics(nftables), feature gates at their
# defaults): name -> (type, label names). The localhost NodePort metrics are registered only with
# the alpha gate KubeProxyNFTablesLocalhostNodePorts on (off by default).
KUBE_PROXY_NFTABLES = {
    "kubeproxy_sync_proxy_rules_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_sync_full_proxy_rules_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_sync_partial_proxy_rules_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds": ("gauge", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": ("gauge", {"ip_family"}),
    "kubeproxy_network_programming_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_endpoint_changes_pending": ("gauge", set()),
    "kubeproxy_sync_proxy_rules_endpoint_changes_total": ("counter", set()),
    "kubeproxy_sync_proxy_rules_service_changes_pending": ("gauge", set()),
    "kubeproxy_sync_proxy_rules_service_changes_total": ("counter", set()),
    "kubeproxy_sync_proxy_rules_nftables_sync_failures_total": ("counter", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total": ("counter", {"ip_family"}),
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total": ("gauge", {"ip_family", "traffic_policy"}),
    "kubeproxy_proxy_healthz_total": ("counter", {"code"}),
    "kubeproxy_proxy_livez_total": ("counter", {"code"}),
    "kubeproxy_conntrack_reconciler_sync_duration_seconds": ("histogram", {"ip_family"}),
    "kubeproxy_conntrack_reconciler_deleted_entries_total": ("counter", {"ip_family"}),
}

# Families of kube-proxy's /metrics that svcproxy does not export, by prefix, and why (README,
# "kube-proxy compatibility"). Every family kube-proxy exports must be exported by svcproxy too or
# match one of these.
NOT_EXPORTED = {
    "go_": "the Go runtime's (svcproxy is C++)",
    "rest_client_": "client-go's HTTP client (svcproxy's watch client has svcproxy_watch_*)",
    "workqueue_": "client-go's work queues (svcproxy has none)",
    "apiserver_": "kube-apiserver libraries linked into kube-proxy, always 0 there",
    "aggregator_": "kube-apiserver libraries linked into kube-proxy, always 0 there",
    "cardinality_enforcement_": "component-base's metrics registry itself",
    "registered_metrics_total": "component-base's metrics registry itself",
    "disabled_metrics_total": "component-base's metrics registry itself",
    "hidden_metrics_total": "component-base's metrics registry itself",
    "kubernetes_build_info": "describes a Kubernetes build (Go version, git commit)",
    "kubernetes_feature_enabled": "Kubernetes feature gates (svcproxy has none)",
}

# Pages of svcproxy's metrics port that kube-proxy does not have.
SVCPROXY_ONLY_PATHS = {"/debug"}

# Accept headers whose answers (status, content type) must be kube-proxy's.
ACCEPTS = ["", "*/*", "text/plain", "text/html, */*;q=0.1", "application/json", "text/html",
           "application/json;as={kind};v=v1beta1;g=config.k8s.io",
           "application/json;as={kind};v=v1alpha1;g=config.k8s.io",
           "application/yaml;as={kind};v=v1beta1;g=config.k8s.io",
           "application/json;as={kind};v=v9;g=config.k8s.io"]

_GET = ("import json, sys, urllib.error, urllib.request\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "req = urllib.request.Request(sys.argv[1], headers={'Accept': sys.argv[2]} if sys.argv[2] else {})\n"
        "try:\n    r = opener.open(req, timeout=5)\nexcept urllib.error.HTTPError as e:\n    r = e\n"
        "print(json.dumps({'status': r.status, 'headers': dict(r.headers), 'body': r.read().decode()}))\n")

CLUSTER = lab.ForTests()


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    CLUSTER.set_up_module()


def tearDownModule():
    CLUSTER.release()


def parse_families(text: str) -> dict[str, dict]:
    """name -> {type, help, labels (names, without le), les (a histogram's bounds)}."""
    families: dict[str, dict] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            families.setdefault(name, {"labels": set(), "les": set()})["help"] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            families.setdefault(name, {"labels": set(), "les": set()})["type"] = kind
        elif line and not line.startswith("#"):
            sample = line.split("{")[0].split(" ")[0]
            labels = line[line.index("{") + 1:line.rindex("}")] if "{" in line else ""
            name = next((f for f in (sample, sample.rsplit("_", 1)[0]) if f in families), sample)
            for pair in filter(None, labels.split('",')):
                key, _, value = pair.partition("=")
                if key == "le":
                    families[name]["les"].add(float(value.strip('"')))
                else:
                    families[name]["labels"].add(key)
    return families


def key_paths(value, prefix: str = "") -> set[str]:
    """Every key path of a JSON document ("a.b.c"), lists not entered."""
    if not isinstance(value, dict):
        return set()
    out = set()
    for key, child in value.items():
        out.add(prefix + key)
        out |= key_paths(child, prefix + key + ".")
    return out


class Proxy:
    """One twin: its lab topology and the proxy in its node namespace."""

    def __init__(self, label: str, box: sb.Sandbox):
        self.label, self.box, self.proc = label, box, None

    def get(self, path: str, accept: str = "", port: int = 10249) -> dict:
        result = self.box.exec(self.box.node, [sys.executable, "-c", _GET, f"http://127.0.0.1:{port}{path}", accept],
                               timeout=30)
        answer = json.loads(result.stdout)
        answer["content_type"] = answer["headers"].get("Content-Type", "")
        return answer

    def families(self) -> dict[str, dict]:
        return parse_families(self.get("/metrics")["body"])


class TestMetricsPort(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = CLUSTER.cluster
        cls.twins: list[Proxy] = []
        try:
            cls._set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _set_up(cls):
        for label in ("kube-proxy", "svcproxy"):
            box = sb.Sandbox(SVCPROXY)
            cls.twins.append(Proxy(label, box))
            box.build()
            box.add_pods([sb.Pod(POD.name, POD.index, node=NODE)])
            cls.cluster.attach(box.node)
        cls.kp, cls.svp = cls.twins
        pod = cls.kp.box.pods[POD.name]
        echo = cls.kp.box.start_echo(pod.ns, "[::]:8080", id=POD.name, wait=False)
        cls.ready_server = cls.kp.box.start_echo(pod.ns, f"[::]:{PROBE['port']}", id="ready", wait=False)
        cls.kp.box.wait_ready([echo, cls.ready_server])
        cls.agent = labnode.start_agent(cls.kp.box, cls.cluster, NODE, sb.NODE_V4, [
            labnode.pod_config(POD.name, NAMESPACE, [pod.v4], labels={"app": "web"},
                               ports=[{"name": "http", "containerPort": 8080}], probe=PROBE)])
        labnode.wait_registered(cls.agent, [POD.name])
        services = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "tcp", "namespace": NAMESPACE},
             "spec": {"selector": {"app": "web"}, "type": "NodePort",
                      "ports": [{"name": "p", "port": 80, "targetPort": 8080}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "udp", "namespace": NAMESPACE},
             "spec": {"selector": {"app": "web"},
                      "ports": [{"name": "p", "port": 53, "targetPort": 5353, "protocol": "UDP"}]}},
        ]
        cls.cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "items": services}))
        labnode.wait_slices(cls.cluster, NAMESPACE, {"tcp": {POD.name: True}, "udp": {POD.name: True}}, 60)
        cluster_ip = cls.cluster.kubectl("get", "service", "-n", NAMESPACE, "tcp",
                                         "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
        cls.kp.proc = labnode.start_kube_proxy(cls.kp.box, cls.cluster, NODE, CLUSTER_CIDRS)
        cls.svp.proc = labnode.start_svcproxy(cls.svp.box, SVCPROXY, cls.cluster, NODE, sb.NODE_V4, CLUSTER_CIDRS)
        daemon = sb.Daemon(cls.svp.proc)
        daemon.wait_sync(reason="start", timeout=60)
        labnode.wait_kube_proxy_synced(cls.kp.box, cls.kp.proc, [cluster_ip], 90)

        # The pod turns not Ready: a partial sync with a network programming latency and a UDP
        # conntrack reconcile, in both proxies.
        mark = daemon.mark()
        cls.ready_server.proc.terminate()
        cls.ready_server.proc.wait(timeout=5)
        labnode.wait_slices(cls.cluster, NAMESPACE, {"tcp": {POD.name: False}, "udp": {POD.name: False}}, 30)
        daemon.wait_sync(after=mark, reason="api-changed", timeout=30)
        cls._wait_kube_proxy_families(["kubeproxy_sync_partial_proxy_rules_duration_seconds",
                                       "kubeproxy_network_programming_duration_seconds"], 30)
        for twin in cls.twins:
            for path in ("/healthz", "/livez"):
                twin.get(path, port=10256)

    @classmethod
    def _wait_kube_proxy_families(cls, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(n in cls.kp.families() for n in names):
            if time.monotonic() > deadline:
                raise AssertionError(f"kube-proxy never exported {names}")
            time.sleep(0.5)  # polling kube-proxy's metrics with a deadline

    @classmethod
    def tearDownClass(cls):
        for twin in cls.twins:
            if twin.proc:
                twin.proc.stop()
        if getattr(cls, "agent", None):
            cls.agent.stop(timeout=15)
        cls.cluster.kubectl("delete", "services,endpointslices,pods", "--all", "-n", NAMESPACE,
                            "--ignore-not-found", "--wait=false", check=False)
        cls.cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
        cls.cluster.kubectl("delete", "nodes", NODE, "--ignore-not-found", "--wait=false", check=False)
        for twin in cls.twins:
            twin.box.close()

    # ------------------------------------------------------------ /metrics

    def test_kube_proxys_nftables_metrics_are_all_there(self):
        real, ours = self.kp.families(), self.svp.families()
        real_kp = {n: f for n, f in real.items() if n.startswith("kubeproxy_")}
        # The list is what the real kube-proxy exports (those it observed by now, at least).
        self.assertGreaterEqual(len(real_kp), 12, sorted(real_kp))
        for name, family in real_kp.items():
            self.assertIn(name, KUBE_PROXY_NFTABLES, f"kube-proxy exports {name}: add it to the list")
            self.assertEqual((family["type"], family["labels"]), KUBE_PROXY_NFTABLES[name], name)
        for name, (kind, labels) in KUBE_PROXY_NFTABLES.items():
            self.assertIn(name, ours, f"svcproxy lacks kube-proxy's {name}")
            self.assertEqual(ours[name]["type"], kind, name)
            self.assertEqual(ours[name]["labels"], labels, name)
            if name in real_kp:
                self.assertEqual(ours[name]["help"], real_kp[name]["help"], name)
                self.assertEqual(ours[name]["les"], real_kp[name]["les"], f"{name}: buckets")
        invented = {n for n in ours if n.startswith("kubeproxy_")} - set(KUBE_PROXY_NFTABLES)
        self.assertEqual(invented, set(), "kubeproxy_ families kube-proxy does not have")

    def test_sync_metrics_carry_ip_family_as_kube_proxy(self):
        text = self.svp.get("/metrics")["body"]
        real = self.kp.get("/metrics")["body"]
        # kube-proxy (dual-stack node: one proxier per family) has synced both families; the change
        # was an IPv4 slice, so its partial sync and programming latency are IPv4's.
        for sample in ('kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}',
                       'kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv6"}',
                       'kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"}',
                       'kubeproxy_network_programming_duration_seconds_count{ip_family="IPv4"}'):
            self.assertIn(sample, real, f"kube-proxy: {sample}")
            self.assertIn(sample, text, f"svcproxy: {sample}")
        # svcproxy programs both families' tables in one transaction: every sync is both families'.
        for family in ("IPv4", "IPv6"):
            self.assertGreater(labnode.metric(text, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", family), 0)
            self.assertGreaterEqual(
                labnode.metric(text, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count", family), 1)
        self.assertGreaterEqual(labnode.metric(text, "kubeproxy_network_programming_duration_seconds_count", "IPv4"), 1)
        self.assertEqual(labnode.metric(text, "kubeproxy_network_programming_duration_seconds_count", "IPv6"), 0)
        # The UDP endpoint's change ran a timed IPv4 conntrack reconcile (and the start, one more).
        self.assertGreaterEqual(
            labnode.metric(text, "kubeproxy_conntrack_reconciler_sync_duration_seconds_count", "IPv4"), 2)

    def test_process_metrics_as_kube_proxy(self):
        real, ours = self.kp.families(), self.svp.families()
        process = {n: f for n, f in real.items() if n.startswith("process_")}
        self.assertGreaterEqual(len(process), 8, sorted(process))
        for name, family in process.items():
            self.assertIn(name, ours, f"svcproxy lacks {name}")
            self.assertEqual((ours[name]["type"], ours[name]["help"], ours[name]["labels"]),
                             (family["type"], family["help"], family["labels"]), name)
        text = self.svp.get("/metrics")["body"]
        self.assertGreater(labnode.metric(text, "process_resident_memory_bytes"), 1e6)
        self.assertGreater(labnode.metric(text, "process_open_fds"), 3)
        start = labnode.metric(text, "process_start_time_seconds")
        self.assertLess(abs(start - time.time()), 600, "started in this test")

    def test_every_other_kube_proxy_family_is_accounted_for(self):
        ours = self.svp.families()
        unaccounted = sorted(n for n in self.kp.families()
                             if n not in ours and not any(n.startswith(p) for p in NOT_EXPORTED))
        self.assertEqual(unaccounted, [], "kube-proxy families svcproxy neither exports nor lists in README")

    # ------------------------------------------------------------ the other pages

    def test_slis_proxy_mode_and_healthz(self):
        for path in ("/metrics/slis", "/proxyMode", "/healthz", "/nope", "/statusz/"):
            real, ours = self.kp.get(path), self.svp.get(path)
            self.assertEqual(ours["status"], real["status"], path)
            self.assertEqual(ours["content_type"].split("; escaping")[0],
                             real["content_type"].split("; escaping")[0], path)
            if path == "/metrics/slis":
                a, b = parse_families(real["body"]), parse_families(ours["body"])
                self.assertEqual({n: (f["type"], f["help"]) for n, f in b.items()},
                                 {n: (f["type"], f["help"]) for n, f in a.items()})
            elif path != "/nope" and path != "/statusz/":
                self.assertEqual(ours["body"], real["body"], path)

    def test_zpages_negotiate_as_kube_proxy(self):
        for path, kind in (("/statusz", "Statusz"), ("/flagz", "Flagz")):
            for accept in ACCEPTS:
                accept = accept.format(kind=kind)
                real, ours = self.kp.get(path, accept), self.svp.get(path, accept)
                what = f"{path} Accept: {accept!r}"
                self.assertEqual(ours["status"], real["status"], what)
                self.assertEqual(ours["content_type"], real["content_type"], what)
                self.assertEqual(ours["headers"].get("Warning"), real["headers"].get("Warning"), what)
                if real["status"] != 200:
                    continue
                if real["content_type"].startswith("application/json"):
                    a, b = json.loads(real["body"]), json.loads(ours["body"])
                    self.assertEqual(set(b), set(a), what)
                    self.assertEqual((b["kind"], b["apiVersion"]), (a["kind"], a["apiVersion"]), what)
                elif real["content_type"].startswith("text/plain"):
                    # Header, disclaimer, then the same shape of lines.
                    a, b = real["body"].split("\n"), ours["body"].split("\n")
                    self.assertEqual(b[1], a[1].replace("kube-proxy", "svcproxy"), what)
                    self.assertEqual(b[2], a[2], what)

    def test_statusz_tells_paths_and_uptime(self):
        real = json.loads(self.kp.get("/statusz", ACCEPTS[6].format(kind="Statusz"))["body"])
        ours = json.loads(self.svp.get("/statusz", ACCEPTS[6].format(kind="Statusz"))["body"])
        # kube-proxy's pages, and svcproxy's own.
        self.assertTrue(set(real["paths"]) <= set(ours["paths"]), ours["paths"])
        self.assertTrue(set(ours["paths"]) - set(real["paths"]) <= SVCPROXY_ONLY_PATHS, ours["paths"])
        self.assertEqual(ours["emulationVersion"], real["emulationVersion"])
        self.assertLess(ours["uptimeSeconds"], 600)

    def test_flagz_lists_the_effective_flags(self):
        flags = json.loads(self.svp.get("/flagz", ACCEPTS[6].format(kind="Flagz"))["body"])["flags"]
        real = json.loads(self.kp.get("/flagz", ACCEPTS[6].format(kind="Flagz"))["body"])["flags"]
        for name in ("hostname-override", "cluster-cidr", "healthz-bind-address", "metrics-bind-address"):
            self.assertEqual(flags[name], real[name], name)
        self.assertEqual(flags["proxy-mode"], "nftables")

    def test_configz_is_kube_proxys_shape(self):
        real, ours = self.kp.get("/configz"), self.svp.get("/configz")
        self.assertEqual(ours["content_type"], real["content_type"])
        a, b = json.loads(real["body"]), json.loads(ours["body"])
        self.assertEqual(key_paths(b), key_paths(a))
        ca, cb = a["kubeproxy.config.k8s.io"], b["kubeproxy.config.k8s.io"]
        for key in ("kind", "apiVersion", "hostnameOverride", "healthzBindAddress", "metricsBindAddress", "mode",
                    "clusterCIDR", "detectLocalMode", "nodePortAddresses"):
            self.assertEqual(cb[key], ca[key], key)
        self.assertEqual(cb["nftables"]["masqueradeBit"], ca["nftables"]["masqueradeBit"])


if __name__ == "__main__":
    unittest.main()
