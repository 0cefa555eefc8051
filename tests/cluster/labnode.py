"""What runs on a lab node against the real control plane, shared by the
cluster e2e tests and `./dev demo cluster` (examples/demo_cluster.py): the
pod agent (podagent.py), kube-proxy and `svcproxy run --kubeconfig`, started
in a sandbox's node namespace (tests/e2e/sandbox.py) that Cluster.attach()
linked to the control plane; and the kubectl calls they all make: the
EndpointSlices as the API server has them, fixtures applied as objects,
a test namespace's objects deleted again.

`box` below is a tests/e2e/sandbox.py Sandbox; this module does not import
it (the callers already did, by path or by name). Python 3 stdlib only.
"""

from __future__ import annotations

import atexit
import copy
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cluster import Cluster

HERE = Path(__file__).resolve().parent
PODAGENT = HERE / "podagent.py"
SYNC_METRIC = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
METRICS_URL = "http://127.0.0.1:10249/metrics"  # both proxies' metrics address inside their node namespace


# ---------------------------------------------------------------------- the pod agent

def pod_config(name: str, namespace: str, ips: list[str], *, labels: dict, ports: list[dict],
               probe: dict) -> dict:
    """One pod of the agent's CONFIG.json (see podagent.py)."""
    return {"name": name, "namespace": namespace, "ips": ips, "labels": labels, "ports": ports, "probe": probe}


def start_agent(box, cluster: Cluster, node: str, node_ip: str, pods: list[dict], *, zone: str = "zone-a"):
    """podagent.py in box's node namespace for `node` (InternalIP node_ip) and
    its pods (pod_config dicts). Returns the sandbox Background; stopping it
    (closing its stdin) deletes the pods and the Node."""
    info = cluster.info()
    config = {key: info[key] for key in ("server", "ca", "cert", "key")}
    config["node"] = {"name": node, "ip": node_ip, "zone": zone}
    config["pods"] = pods
    path = box.workdir / f"podagent-{node}.json"
    path.write_text(json.dumps(config))
    return box.spawn(box.node, [sys.executable, str(PODAGENT), str(path)], name="podagent")


def wait_agent(agent, predicate, what: str, timeout: float, start: int = 0) -> dict:
    """The agent's first event (a JSON line) at or after line `start` that
    satisfies predicate; SandboxError after timeout."""
    def match(line: str) -> bool:
        try:
            return predicate(json.loads(line))
        except (ValueError, KeyError):
            return False
    index = agent.lines.wait_for(match, start=start, timeout=timeout, what=f"pod agent: {what}")
    return json.loads(agent.lines.snapshot(index)[0])


def wait_ready_event(agent, pod: str, ready: bool, timeout: float, start: int = 0) -> dict:
    """The agent's event that wrote `pod`'s readiness as `ready`."""
    return wait_agent(agent, lambda e: e.get("event") == "ready" and e["pod"] == pod and e["ready"] == ready,
                      f"{pod} {'Ready' if ready else 'not Ready'}", timeout, start)


def wait_registered(agent, pods: list[str], timeout: float = 30) -> None:
    """Until the agent registered everything and wrote every pod Ready."""
    wait_agent(agent, lambda e: e.get("event") == "registered", "registration", timeout)
    for pod in pods:
        wait_ready_event(agent, pod, True, timeout)


# ---------------------------------------------------------------------- the proxies

def start_svcproxy(box, svcproxy: str, cluster: Cluster, node: str, node_ip: str, cluster_cidrs: str,
                   extra: list[str] = ()):
    """`svcproxy run --kubeconfig` in box's node namespace, log lines collected
    (wrap it in sandbox.Daemon to wait for syncs)."""
    argv = [svcproxy, "run", "--kubeconfig", str(cluster.kubeconfig), "--hostname-override", node,
            "--node-ip", node_ip, "--cluster-cidr", cluster_cidrs,
            "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249", *extra]
    return box.spawn(box.node, argv, name="svcproxy", lines_from="stderr", stdin=False)


def start_kube_proxy(box, cluster: Cluster, node: str, cluster_cidrs: str):
    """kube-proxy v1.37 (nftables mode) in box's node namespace, as section 5
    of the reference notes says (tests/cluster/README.md)."""
    kube_proxy = Path(cluster.info()["k8s_bin"]) / "kube-proxy"
    argv = ["env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "KUBE_PROXY_NFTABLES_SKIP_KERNEL_VERSION_CHECK=1",
            str(kube_proxy), f"--kubeconfig={cluster.kubeconfig}", "--proxy-mode=nftables",
            f"--hostname-override={node}", f"--cluster-cidr={cluster_cidrs}", "--nodeport-addresses=primary",
            # Writing conntrack sysctls is not needed here, and nf_conntrack_max is global.
            "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
            "--iptables-min-sync-period=0s", "--v=2"]
    return box.spawn(box.node, argv, name="kube-proxy", lines_from="stderr", stdin=False)


_GET = ("import sys, urllib.request\n"
        "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
        "print(opener.open(sys.argv[1], timeout=2).read().decode())\n")


def metrics(box) -> str:
    """The /metrics text of the proxy in box's node namespace ('' if it does
    not answer). Python's urllib inside the namespace, no proxies."""
    return box.exec(box.node, [sys.executable, "-c", _GET, METRICS_URL], check=False, timeout=30).stdout


def metric(text: str, name: str, label: str = "") -> float | None:
    """The value of the first sample of `name` (whose labels contain `label`)."""
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " ") and label in line:
            return float(line.split()[-1])
    return None


def kube_proxy_last_sync(box) -> float:
    """kube-proxy's last IPv4 sync (wall clock, seconds), 0 before the first."""
    return metric(metrics(box), SYNC_METRIC, "IPv4") or 0.0


def wait_kube_proxy_synced(box, proxy, cluster_ips: list[str], timeout: float) -> None:
    """Until kube-proxy's metrics say it finished a sync and its table holds
    every one of cluster_ips (it syncs once its informers have synced)."""
    deadline = time.monotonic() + timeout
    while True:
        if proxy.proc.poll() is not None:
            raise AssertionError(f"kube-proxy exited {proxy.proc.returncode}:\n"
                                 + "\n".join(proxy.lines.snapshot()[-30:]))
        synced = kube_proxy_last_sync(box) > 0
        table = box.exec(box.node, ["nft", "list", "table", "ip", "kube-proxy"], check=False).stdout
        if synced and all(ip in table for ip in cluster_ips):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"kube-proxy not synced within {timeout} s (metrics synced: {synced}; "
                                 f"table:\n{table}\nlog:\n" + "\n".join(proxy.lines.snapshot()[-30:]))
        time.sleep(0.2)  # polling kube-proxy's metrics with a deadline


def rss_kib(pid: int) -> int:
    """A process's resident set (VmRSS, KiB); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------- objects through kubectl

def slice_readiness(cluster: Cluster, namespace: str, service: str | None = None) -> dict[str, dict[str, bool]]:
    """Service -> {pod name: ready}, from the EndpointSlices as the API server has them."""
    args = ["get", "endpointslices", "-n", namespace, "-o", "json"]
    if service:
        args += ["-l", f"kubernetes.io/service-name={service}"]
    result: dict[str, dict[str, bool]] = {}
    for item in json.loads(cluster.kubectl(*args).stdout)["items"]:
        pods = result.setdefault(item["metadata"]["labels"]["kubernetes.io/service-name"], {})
        for e in item.get("endpoints") or []:
            pods[e["targetRef"]["name"]] = bool(e["conditions"].get("ready"))
    return result


def wait_slices(cluster: Cluster, namespace: str, wanted: dict[str, dict[str, bool]], timeout: float) -> None:
    """Until slice_readiness() equals wanted (for wanted's Services)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = slice_readiness(cluster, namespace)
        seen = {name: seen.get(name, {}) for name in wanted}
        if seen == wanted:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"EndpointSlices {seen}, wanted {wanted} within {timeout} s")
        time.sleep(0.2)  # polling the API server with a deadline


def as_created(obj: dict, *, drop_selector: bool = False) -> tuple[dict, dict | None]:
    """A fixture object (kubectl get's shape) as a client would create it: no
    resourceVersion, uid or status (the API sets them); with drop_selector a
    Service loses its selector (its EndpointSlices are then the fixture's own,
    never rewritten by the EndpointSlice controller). Returns the object and
    the status to write through the status subresource afterwards (or None)."""
    obj = copy.deepcopy(obj)
    obj.setdefault("metadata", {})
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        obj["metadata"].pop(key, None)
    status = obj.pop("status", None)
    if drop_selector and obj.get("kind") == "Service":
        obj["spec"].pop("selector", None)
    wanted = None
    if obj.get("kind") == "Service" and (status or {}).get("loadBalancer", {}).get("ingress"):
        wanted = {"loadBalancer": status["loadBalancer"]}
    elif obj.get("kind") == "Node" and (status or {}).get("addresses"):
        wanted = {"addresses": status["addresses"]}
    return obj, wanted


def object_key(obj: dict) -> str:
    """"Kind ns/name" (or "Kind name" for a cluster-scoped object)."""
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")


def apply_objects(cluster: Cluster, objects: list[dict], *, drop_selector: bool = False,
                  namespaces: bool = True) -> dict[str, str]:
    """Creates fixture objects through the API server: namespaces first
    (unless namespaces=False), then one `kubectl apply` per object (so that
    one the API rejects is named), then their status through the status
    subresource (LB ingress IPs, node addresses). Returns {object_key: the
    API's error} for each rejected one."""
    rejected = {}
    for ns in sorted({o["metadata"].get("namespace") for o in objects} - {None}) if namespaces else ():
        cluster.kubectl("create", "namespace", ns, check=False)  # AlreadyExists on a reused cluster is fine
    for fixture in objects:
        obj, status = as_created(fixture, drop_selector=drop_selector)
        meta, key = obj["metadata"], object_key(obj)
        result = cluster.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
        if result.returncode != 0:
            rejected[key] = result.stderr.strip()
            continue
        if status:
            resource = {"Service": "service", "Node": "node"}[obj["kind"]]
            ns = ["-n", meta["namespace"]] if meta.get("namespace") else []
            result = cluster.kubectl("patch", resource, *ns, meta["name"], "--subresource=status", "--type=merge",
                                     "-p", json.dumps({"status": status}), check=False)
            if result.returncode != 0:
                rejected[key + " status"] = result.stderr.strip()
    return rejected


def rejected_by_dry_run(cluster: Cluster, objects: list[dict]) -> dict[str, str]:
    """Which fixture objects the API server would refuse to create, checked
    with a server-side dry run (validation, admission and address
    allocation; nothing is stored): {"Kind ns/name": the API's error}. Their
    namespaces are created for real (a dry run needs them)."""
    for ns in sorted({o["metadata"].get("namespace") for o in objects} - {None}):
        cluster.kubectl("create", "namespace", ns, check=False)
    rejected = {}
    for fixture in objects:
        obj, _ = as_created(fixture)
        meta = obj["metadata"]
        result = cluster.kubectl("create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(obj),
                                 check=False)
        if result.returncode != 0:
            rejected[f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")] = \
                result.stderr.strip()
    return rejected


def read_manifests(cluster: Cluster, path: Path) -> list[dict]:
    """The objects of a YAML manifest file (List wrappers unpacked), read by
    kubectl (no YAML parser in the stdlib)."""
    out = cluster.kubectl("create", "--dry-run=client", "-o", "json", "-f", str(path)).stdout
    docs, decoder, at = [], json.JSONDecoder(), 0
    while out[at:].strip():  # one JSON document per object, one after the other
        doc, end = decoder.raw_decode(out[at:].lstrip())
        at = len(out) - len(out[at:].lstrip()) + end
        docs.append(doc)
    return [i for doc in docs for i in (doc["items"] if doc.get("kind", "").endswith("List") else [doc])]


def delete_objects(cluster: Cluster, namespaces: list[str], nodes: list[str] = ()) -> None:
    """Deletes the Services, EndpointSlices and Pods of test namespaces, and
    nodes, never failing. The namespaces themselves stay when they are shared
    fixtures' (no namespace controller runs: a deleted namespace would stay
    Terminating and refuse new objects); callers delete per-run namespaces."""
    ApiObjects._applied.pop(ApiObjects.cache_key(cluster), None)
    for ns in namespaces:
        cluster.kubectl("delete", "services,endpointslices,pods", "--all", "-n", ns, "--ignore-not-found",
                        "--wait=false", check=False)
    if nodes:
        cluster.kubectl("delete", "nodes", *nodes, "--ignore-not-found", "--wait=false", check=False)


class ApiObjects:
    """The API server's twin of the e2e tests' manifests directories (a
    `Manifests` there): put(name, objects) applies the objects as a client
    creates them (Services without their selector, see as_created) and
    deletes what an earlier put of the same name had and this one lacks;
    remove(name) deletes them. flags() and reason are what `svcproxy run`
    is given and logs. One put is a few API writes: the daemon may see them
    in more than one sync."""
    reason = "api-changed"
    # What every ApiObjects put into a control plane (state dir -> {object_key: JSON}): a test's
    # set-up puts the same objects as the previous test's, and only what differs is written again.
    _applied: dict[str, dict[str, str]] = {}

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.files: dict[str, dict[str, dict]] = {}  # name -> {object_key: object}
        self.namespaces: set[str] = set()
        self.snapshots: Path | None = None  # snapshot()'s directories, removed at exit
        self.applied = ApiObjects._applied.setdefault(ApiObjects.cache_key(cluster), {})

    @staticmethod
    def cache_key(cluster: Cluster) -> str:
        """One control plane's run (a restarted one starts empty)."""
        return f"{cluster.state}:{cluster.pid_of('etcd')}"

    def flags(self) -> list[str]:
        return ["--kubeconfig", str(self.cluster.kubeconfig)]

    def put(self, name: str, objects: list[dict]) -> None:
        new_namespaces = {o["metadata"].get("namespace") for o in objects} - {None} - self.namespaces
        for ns in sorted(new_namespaces):
            self.cluster.kubectl("create", "namespace", ns, check=False)
        self.namespaces |= new_namespaces
        wanted = {object_key(o): o for o in objects}
        self._delete([o for key, o in self.files.get(name, {}).items() if key not in wanted])
        self.files[name] = wanted
        changed = [o for key, o in wanted.items() if self.applied.get(key) != json.dumps(o, sort_keys=True)]
        if not changed:
            return
        # One kubectl for all of them (each kubectl is a process start: seconds on a loaded
        # machine); only when that fails, one per object to name the rejected one.
        created = [as_created(o, drop_selector=True) for o in changed]
        batch = self.cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [obj for obj, _ in created]}))
        if batch.returncode != 0:
            rejected = apply_objects(self.cluster, changed, drop_selector=True, namespaces=False)
            raise AssertionError(f"the API server rejected objects of {name}: {rejected or batch.stderr}")
        for obj, status in created:
            if status:
                meta = obj["metadata"]
                ns = ["-n", meta["namespace"]] if meta.get("namespace") else []
                self.cluster.kubectl("patch", obj["kind"].lower(), *ns, meta["name"], "--subresource=status",
                                     "--type=merge", "-p", json.dumps({"status": status}))
        self.applied.update({object_key(o): json.dumps(o, sort_keys=True) for o in changed})

    def remove(self, name: str) -> None:
        self._delete(list(self.files.pop(name).values()))

    def snapshot(self) -> Path:
        """What the API server holds now, as `kubectl get -o yaml` prints it,
        in a fresh directory (the manifests `svcproxy rules` compiles)."""
        if self.snapshots is None:
            self.snapshots = Path(tempfile.mkdtemp(prefix="svp-api-objects-"))
            atexit.register(shutil.rmtree, self.snapshots, True)
        directory = Path(tempfile.mkdtemp(dir=self.snapshots))
        (directory / "services.yaml").write_text(
            self.cluster.kubectl("get", "services,endpointslices", "-A", "-o", "yaml").stdout)
        (directory / "nodes.yaml").write_text(self.cluster.kubectl("get", "nodes", "-o", "yaml").stdout)
        return directory

    def _delete(self, objects: list[dict]) -> None:
        for obj in objects:
            self.applied.pop(object_key(obj), None)
        if objects:
            self.cluster.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=json.dumps(
                {"apiVersion": "v1", "kind": "List", "items": [as_created(o)[0] for o in objects]}))


class ApiServerVariant:
    """Runs a manifests e2e module's test classes with their objects put
    through the real API server: the module's own sandbox comes up, its node
    is attached to one control plane shared by the test run (ForTests), and
    `mixin` (listed first among a class's bases) hands each test an
    ApiObjects instead of a manifests directory. Used by
    test_cluster_userspace and test_cluster_daemon_sync:

        VARIANT = labnode.ApiServerVariant(base, [base.NS], [sb.NODE_NAME])
        setUpModule, tearDownModule = VARIANT.set_up_module, VARIANT.tear_down_module
        class TestXFromApiServer(VARIANT.mixin, base.TestX): pass
    """

    def __init__(self, base, namespaces: list[str], nodes: list[str]):
        from cluster import ForTests
        self.base = base
        self.namespaces = namespaces
        self.nodes = nodes
        self.lab = ForTests()
        lab = self.lab

        class FromApiServer:
            """The objects go to the API server."""

            def new_source(self, name: str) -> ApiObjects:
                return ApiObjects(lab.cluster)

        self.mixin = FromApiServer

    @property
    def cluster(self) -> Cluster:
        return self.lab.cluster

    def set_up_module(self) -> None:
        self.base.setUpModule()
        try:
            self.lab.set_up_module().attach(self.base.Env.box.node)
        except BaseException:
            self.tear_down_module()
            raise

    def tear_down_module(self) -> None:
        if self.lab.cluster:
            delete_objects(self.lab.cluster, self.namespaces, self.nodes)
        self.lab.release()
        self.base.tearDownModule()
