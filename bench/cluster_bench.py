#!/usr/bin/env python3
"""svcproxy beside the real kube-proxy (nftables mode), one run, one API
server, one client: cold start, event to dataplane, RSS, CPU, first packet.

Issue 15's benchmark. Starts its own control plane (tests/cluster/cluster.py:
etcd, kube-apiserver, kube-controller-manager; namespace svp-bench-cp, state
in --out; stopped and removed at the end) and two identical
lab topologies (tests/e2e/sandbox.py), "twins", one per proxy: a node
namespace linked to the control plane, a client pod, and pods whose
`svcproxy echo` servers answer with their name. Both proxies run as the same
Node (created through the API with the node's address) and watch the same
apiserver; everything the bench measures goes through both at once or one
right after the other.

Objects: selector-less Services (one TCP port 80 -> 8080, ClusterIP from the
apiserver) and one hand-made EndpointSlice each (label
kubernetes.io/service-name) with --endpoints ready endpoints. The endpoints
are distinct addresses, but only a few pods: pods ep1 and ep2 each carry
half the addresses (10.244.1.2-6, 10.244.2.2-6 for 10 endpoints), so every
rule kube-proxy and svcproxy write is real and every VIP answers. They are
created in parallel over the API (POST, client certificate, --api-threads
keep-alive connections) from this process; the creation rate is printed.

For each size in --sizes (ascending; the objects are added to, never
recreated), with both proxies stopped and their node's ruleset flushed:
  cold start   each proxy in turn (svcproxy first, kube-proxy second, the
               other one idle): from just before the process is started to
               (a) every one of --sample VIPs answering a real connection
               from the client pod with a pod's name (before the rules are
               in, the connection leaves the node and the lab's sink answers
               "sink"), and (b) the first successful sync in the proxy's
               own metrics (kubeproxy_sync_proxy_rules_last_timestamp_seconds,
               which both export, IPv4) minus the start time.
  RSS          VmRSS of each proxy (its own PID) --settle seconds after both
               synced.
  events       --updates EndpointSlice updates (merge patch of the endpoint
               list) of one Service through the apiserver, each swapping its
               single endpoint between pods new-a and new-b; in each twin's
               client pod 8 pollers, started a millisecond apart, open fresh
               connections to the VIP from just before the request until the
               new pod answers. Event to dataplane = start of the first
               connection that reached the new pod - request sent (the rule
               was in the kernel by then); event to first answer = its
               answer - request sent (adds one connection's time, tens of ms
               on a loaded machine). p50, p99, max. A random 50-150 ms gap
               between updates.
  CPU          utime+stime of each proxy, children included (kube-proxy runs
               `nft` for each transaction; svcproxy speaks netlink itself),
               across the update series, per 1,000 endpoint changes (one
               update = one endpoint change).
  first packet connect + answer time of the first connection to each of
               --fresh VIPs never connected to before (median, max), and the
               median of --warm new connections to one VIP, alternating
               between the twins; the same to a pod's address directly as
               the baseline.
  profile      --perf more updates with `perf record -g` attached to
               svcproxy (after the measured series, so it does not slow
               them); the top of `perf report` is printed and kept in --out.

Ratios: kube-proxy / svcproxy for times (> 1: svcproxy faster), svcproxy /
kube-proxy for RSS. Goals (issue 15, at 10k services): cold start and event
p99 >= 10x; RSS <= 0.5x; first packet no worse.

Run as root, inside a private mount namespace when other checkouts run
cluster tests (see tests/cluster/README.md):
  python3 bench/cluster_bench.py [--sizes 100,1000,10000] [--updates 100] [--out DIR]
Needs the cluster binaries (tests/cluster/build.sh builds them once per
machine) and build/svcproxy. Python 3 stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
import cluster as lab  # noqa: E402
import netns  # noqa: E402
import podagent  # noqa: E402
import proxies  # noqa: E402
import sandbox as sb  # noqa: E402

NAMESPACE = "bench"
NODE = "bench-node"
import echo_probe  # noqa: E402  (bench/, the script's own folder)

PORT, TARGET_PORT = 80, 8080
BULK_PODS = (sb.Pod("ep1", 1), sb.Pod("ep2", 2))
EVENT_PODS = (sb.Pod("new-a", 3), sb.Pod("new-b", 4))
CLIENT_POD = sb.Pod("client", 9)
EVENT_SERVICE = "event"
CLUSTER_CIDRS = ",".join(sb.CLUSTER_CIDRS)
PROXIES = ("svcproxy", "kube-proxy")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Clients polling the event VIP at once per twin, a millisecond apart: a connection takes tens of ms
# on the loaded machine, so one poller alone would see a change only that late.
POLLERS = 8


def log(*args) -> None:
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the API side

class Api:
    """Parallel requests to the apiserver from threads inside the control-plane namespace."""

    def __init__(self, cluster: lab.Cluster, threads: int):
        info = cluster.info()
        self.kube = podagent.Kube(info["server"], info["ca"], info["cert"], info["key"])
        self.pool = ThreadPoolExecutor(max_workers=threads, initializer=netns.enter, initargs=(cluster.netns,))

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def call(self, method: str, path: str, body: dict | None = None, content_type: str = "application/json"):
        return self.pool.submit(self.kube.request, method, path, body, content_type).result()

    def timed_patch(self, path: str, body: dict) -> tuple[float, float]:
        """(monotonic time the request was sent, time the answer came) of a merge patch."""
        def patch():
            sent = time.monotonic()
            self.kube.request("PATCH", path, body, "application/merge-patch+json")
            return sent, time.monotonic()
        return self.pool.submit(patch).result()

    def create_services(self, names: list[str], endpoints: list[str]) -> dict[str, str]:
        """Creates a selector-less Service and its EndpointSlice per name, in parallel; name -> ClusterIP."""
        def one(name: str) -> tuple[str, str]:
            svc = self.kube.request("POST", f"/api/v1/namespaces/{NAMESPACE}/services", service(name))
            self.kube.request("POST", f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
                              endpoint_slice(name, endpoints))
            return name, svc["spec"]["clusterIP"]
        return dict(self.pool.map(one, names))


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "p", "port": PORT, "targetPort": TARGET_PORT, "protocol": "TCP"}]}}


def slice_endpoints(addresses: list[str]) -> list[dict]:
    return [{"addresses": [a], "conditions": {"ready": True, "serving": True, "terminating": False},
             "nodeName": NODE} for a in addresses]


def endpoint_slice(name: str, addresses: list[str]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-0", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "cluster-bench.svcproxy.lab"}},
            "addressType": "IPv4", "endpoints": slice_endpoints(addresses),
            "ports": [{"name": "p", "port": TARGET_PORT, "protocol": "TCP"}]}


def bulk_addresses(count: int) -> list[str]:
    """count distinct endpoint addresses over the bulk pods (the pods carry them all)."""
    per_pod = -(-count // len(BULK_PODS))
    return [f"10.244.{pod.index}.{2 + i}" for pod in BULK_PODS for i in range(per_pod)][:count]


# ---------------------------------------------------------------- the node side

def ask(vip: str, timeout: float = 1.0) -> str | None:
    """The echo pod answering one fresh connection to vip:PORT (bench/echo_probe.py)."""
    return echo_probe.ask(vip, PORT, timeout)


def timed_ask(vip: str, port: int = PORT) -> tuple[float, str | None]:
    """(seconds for connect + one answer, id) of one fresh connection."""
    start = time.perf_counter()
    try:
        with socket.create_connection((vip, port), timeout=2) as s:
            s.sendall(b"hello\n")
            data = s.recv(4096)
    except OSError:
        return time.perf_counter() - start, None
    elapsed = time.perf_counter() - start
    return elapsed, data.decode(errors="replace").strip().rpartition(" ")[0] or None


@dataclass
class Twin:
    """One lab topology and its proxy."""
    label: str
    box: sb.Sandbox
    proxy: sb.Background | None = None
    client: ThreadPoolExecutor | None = None  # threads inside the client pod's namespace

    @property
    def client_ns(self) -> str:
        return self.box.pods[CLIENT_POD.name].ns

    def pid(self) -> int:
        return self.proxy.proc.pid  # `ip netns exec` and `env` exec: the proxy's own PID

    def alive(self) -> bool:
        return self.proxy is not None and self.proxy.proc.poll() is None

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"{self.label}: no VmRSS")

    def cpu_seconds(self) -> float:
        """utime + stime + cutime + cstime (waited-for children: kube-proxy's nft runs)."""
        fields = Path(f"/proc/{self.pid()}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / CLK_TCK

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.proxy.lines.snapshot()[-n:]) if self.proxy else ""


def build_twin(label: str, cluster: lab.Cluster, endpoints: int) -> Twin:
    box = sb.Sandbox(sb.SVCPROXY)
    twin = Twin(label, box)
    box.build()
    box.add_pods([sb.Pod(p.name, p.index) for p in (*BULK_PODS, *EVENT_PODS, CLIENT_POD)])
    addresses = bulk_addresses(endpoints)
    for pod in BULK_PODS:
        extra = [a for a in addresses if a.startswith(f"10.244.{pod.index}.") and a != box.pods[pod.name].v4]
        if extra:
            box.ip_batch(box.pods[pod.name].ns, [f"addr add {a}/24 dev eth0" for a in extra])
    echoes = []
    for pod in (*BULK_PODS, *EVENT_PODS):
        echoes += box.start_pod_echoes(box.pods[pod.name], [(TARGET_PORT, "tcp")], id_format="{pod}", wait=False)
    box.wait_ready(echoes)
    cluster.attach(box.node)
    twin.client = in_netns(twin.client_ns, max(POLLERS, 1))
    return twin


def in_netns(ns: str, threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, initializer=netns.enter, initargs=(ns,))


def run_in(pool: ThreadPoolExecutor, fn, *args):
    return pool.submit(fn, *args).result()


def start_proxy(twin: Twin, cluster: lab.Cluster) -> None:
    if twin.label == "kube-proxy":
        argv = proxies.kube_proxy_argv(Path(cluster.info()["k8s_bin"]) / "kube-proxy", cluster.kubeconfig, NODE,
                                       CLUSTER_CIDRS)
    else:
        argv = proxies.svcproxy_argv(sb.SVCPROXY, cluster.kubeconfig, NODE, sb.NODE_V4, CLUSTER_CIDRS)
    twin.proxy = twin.box.spawn(twin.box.node, argv, name=twin.label, lines_from="stderr", stdin=False)


def stop_proxy(twin: Twin, keep_log: Path | None = None) -> None:
    if twin.proxy:
        twin.proxy.stop(timeout=15)
        if keep_log:
            shutil.copyfile(twin.proxy.log, keep_log)
        twin.proxy = None
    # A cold start starts from an empty kernel: kube-proxy's and svcproxy's tables (and the
    # iptables-nft tables kube-proxy's start-up cleanup may leave) go; the node has no others.
    twin.box.exec(twin.box.node, ["nft", "flush", "ruleset"])
    twin.box.flush_conntrack(twin.box.node)


# ---------------------------------------------------------------- measurements

def cold_start(twin: Twin, cluster: lab.Cluster, sample: list[str], pod_ids: set[str], budget: float) -> dict:
    """Starts twin's proxy; seconds from the start to every sampled VIP answering, and to the first
    successful sync in its metrics."""
    deadline = time.monotonic() + budget

    def probe_vips(t0: float) -> float | None:
        """All pending VIPs at once, round after round; when the last one first answered."""
        pending, last = list(sample), 0.0
        with in_netns(twin.client_ns, len(sample)) as pool:
            while pending and time.monotonic() < deadline and twin.alive():
                answers = list(pool.map(lambda vip: (ask(vip, timeout=0.5), time.monotonic()), pending))
                last = max([last] + [at for ident, at in answers if ident in pod_ids])
                pending = [vip for vip, (ident, _) in zip(pending, answers) if ident not in pod_ids]
                if pending:
                    time.sleep(0.02)  # paces the rounds so that the probes do not load the CPUs
        return None if pending else last - t0

    def first_sync(t0_wall: float) -> dict | None:
        while time.monotonic() < deadline and twin.alive():
            try:
                text = proxies.fetch_metrics()
            except OSError:
                text = ""
            ts = proxies.sync_timestamp(text)
            if ts > 0:
                return {"seconds": ts - t0_wall, "full_syncs": proxies.metric(text, proxies.FULL_SYNCS)}
            time.sleep(0.05)  # polling the metrics port with a deadline
        return None

    t0_wall, t0 = time.time(), time.monotonic()
    start_proxy(twin, cluster)
    _, vips = netns.start(twin.client_ns, probe_vips, t0)
    _, sync = netns.start(twin.box.node, first_sync, t0_wall)
    vips_s, sync_info = vips.result(), sync.result()
    if vips_s is None or sync_info is None:
        raise RuntimeError(f"{twin.label}: cold start not done within {budget:.0f} s (VIPs: {vips_s}, "
                           f"sync: {sync_info}, alive: {twin.alive()}):\n{twin.tail()}")
    return {"vips_s": vips_s, "first_sync_s": sync_info["seconds"], "full_syncs_seen": sync_info["full_syncs"]}


def poll_until(vip: str, wanted: str, deadline: float, stop: threading.Event | None = None,
               delay: float = 0) -> tuple[float, float] | None:
    """Fresh connections to vip until the echo `wanted` answers (or another poller saw it): the
    monotonic times that connection was started and answered."""
    time.sleep(delay)
    while not (stop and stop.is_set()) and time.monotonic() < deadline:
        started = time.monotonic()
        if ask(vip, timeout=0.5) == wanted:
            if stop:
                stop.set()
            return started, time.monotonic()
        time.sleep(0.001)
    return None


def events(twins: list[Twin], api: Api, vip: str, pod_ips: dict[str, str], current: str, updates: int,
           budget: float) -> tuple[dict, str]:
    """updates endpoint swaps of the event Service, whose endpoint is pod `current`; per twin the
    latencies and CPU seconds, and the pod the Service ends on."""
    path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{EVENT_SERVICE}-0"
    for twin in twins:  # each proxy already sends the event Service to its pod `current`
        if run_in(twin.client, poll_until, vip, current, time.monotonic() + 30) is None:
            raise RuntimeError(f"{twin.label}: {vip} does not reach {current}")
    cpu0 = {t.label: t.cpu_seconds() for t in twins}
    # Per twin and update: from the request to the start of the first connection that reached the
    # new pod (the dataplane had the change then), and to the first answer from it.
    programmed: dict[str, list[float]] = {t.label: [] for t in twins}
    answered_by: dict[str, list[float]] = {t.label: [] for t in twins}
    api_s: list[float] = []
    for _ in range(updates):
        new = EVENT_PODS[1].name if current == EVENT_PODS[0].name else EVENT_PODS[0].name
        deadline = time.monotonic() + budget
        stops = {t.label: threading.Event() for t in twins}
        polls = {t.label: [t.client.submit(poll_until, vip, new, deadline, stops[t.label], k * 0.001)
                           for k in range(POLLERS)] for t in twins}
        sent, answered = api.timed_patch(path, {"endpoints": slice_endpoints([pod_ips[new]])})
        api_s.append(answered - sent)
        for twin in twins:
            hits = [h for h in (f.result() for f in polls[twin.label]) if h]
            if hits:
                programmed[twin.label].append(min(h[0] for h in hits) - sent)
                answered_by[twin.label].append(min(h[1] for h in hits) - sent)
        current = new
        time.sleep(random.uniform(0.05, 0.15))  # not in lockstep with anything periodic
    result = {"api_request_s": summary(api_s)}
    for twin in twins:
        cpu = twin.cpu_seconds() - cpu0[twin.label]
        result[twin.label] = {**summary(programmed[twin.label]), "answered": summary(answered_by[twin.label]),
                              "missed": updates - len(programmed[twin.label]), "cpu_s": cpu,
                              "cpu_s_per_1000_changes": cpu * 1000 / updates}
    return result, current


def profile(twins: list[Twin], api: Api, vip: str, pod_ips: dict[str, str], current: str, updates: int,
            budget: float, out: Path) -> tuple[str, str]:
    """More updates with `perf record -g` attached to svcproxy (kept out of the measured series);
    returns perf's report (the top of it) and the pod the event Service ends on."""
    svcproxy = next(t for t in twins if t.label == "svcproxy")
    out.mkdir(parents=True, exist_ok=True)
    data = out / "svcproxy.perf.data"
    perf = subprocess.Popen(["perf", "record", "-q", "--call-graph", "dwarf,16384", "-F", "250", "-o", str(data),
                             "-p", str(svcproxy.pid())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)  # perf attaches
        _, current = events(twins, api, vip, pod_ips, current, updates, budget)
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=60)
    # Self time per symbol, and time including callees (which phase of a sync it is spent in).
    # --no-inline: resolving inlined frames runs addr2line per address, minutes on a loaded machine.
    reports = {mode: subprocess.run(["perf", "report", "-i", str(data), "--stdio", mode, "--percent-limit", "2",
                                     "--no-inline", "-g", "none", "--sort", "symbol"],
                                    capture_output=True, text=True).stdout
               for mode in ("--no-children", "--children")}
    (out / "svcproxy.perf.txt").write_text("\n".join(f"==== perf report {m}\n{r}" for m, r in reports.items()))
    lines = []
    for mode, report in reports.items():
        rows = [line.strip()[:160] for line in report.splitlines() if line.strip() and not line.startswith("#")]
        lines += [f"perf report {mode} (top)"] + rows[:20]
    return "\n".join(lines), current


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))]
    return {"n": len(ordered), "p50": pct(50), "p99": pct(99), "max": ordered[-1], "mean": statistics.fmean(ordered)}


def first_packet(twins: list[Twin], fresh: list[str], warm: str, warm_count: int, direct: str) -> dict:
    """First connection to never-used VIPs, then warm connections, alternating the twins' order."""
    out = {t.label: {"first": [], "warm": [], "direct": [], "wrong": 0} for t in twins}
    for i, vip in enumerate(fresh):
        for twin in twins if i % 2 == 0 else twins[::-1]:
            elapsed, ident = run_in(twin.client, timed_ask, vip)
            out[twin.label]["first"].append(elapsed)
            out[twin.label]["wrong"] += ident is None or ident == sb.SINK_ID
    for i in range(warm_count):
        for twin in twins if i % 2 == 0 else twins[::-1]:
            elapsed, ident = run_in(twin.client, timed_ask, warm)
            out[twin.label]["warm"].append(elapsed)
            out[twin.label]["wrong"] += ident is None or ident == sb.SINK_ID
            out[twin.label]["direct"].append(run_in(twin.client, timed_ask, direct, TARGET_PORT)[0])
    return {label: {"first_median_ms": statistics.median(v["first"]) * 1e3, "first_max_ms": max(v["first"]) * 1e3,
                    "warm_median_ms": statistics.median(v["warm"]) * 1e3,
                    "direct_median_ms": statistics.median(v["direct"]) * 1e3, "failed": v["wrong"]}
            for label, v in out.items()}


# ---------------------------------------------------------------- the run

@dataclass
class Bench:
    args: argparse.Namespace
    cluster: lab.Cluster
    api: Api | None = None
    twins: list[Twin] = field(default_factory=list)
    vips: dict[str, str] = field(default_factory=dict)  # bulk Service -> ClusterIP
    event_vip: str = ""  # the ClusterIP of the Service the updates change
    event_pod: str = ""  # the pod it sends to now
    done_size: int | None = None  # the size the proxies last ran at
    results: dict = field(default_factory=dict)

    def set_up(self) -> None:
        a = self.args
        log(f"control plane (namespace {self.cluster.netns}, state {self.cluster.state})")
        self.cluster.down(log=lambda *_: None)  # a fresh, empty etcd every run
        self.cluster.up(log=lambda *m: log(*m))
        self.api = Api(self.cluster, a.api_threads)
        node, status = podagent.node_objects({"name": NODE, "ips": [sb.NODE_V4], "zone": "zone-a"})
        self.api.call("POST", "/api/v1/nodes", node)
        self.api.call("PATCH", f"/api/v1/nodes/{NODE}/status", {"status": status}, "application/merge-patch+json")
        self.api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": NAMESPACE}})
        for label in PROXIES:
            log(f"topology for {label}")
            self.twins.append(build_twin(label, self.cluster, a.endpoints))
        first = self.twins[0].box.pods[EVENT_PODS[0].name].v4
        self.event_vip = self.api.create_services([EVENT_SERVICE], [first])[EVENT_SERVICE]
        self.event_pod = EVENT_PODS[0].name  # the pod the event Service sends to

    def grow(self, size: int) -> None:
        """Adds bulk Services until there are size Services in all (the event Service counts)."""
        names = [f"svc-{i:05d}" for i in range(len(self.vips) + 1, size)]
        if not names:
            return
        started = time.monotonic()
        self.vips.update(self.api.create_services(names, bulk_addresses(self.args.endpoints)))
        took = time.monotonic() - started
        log(f"created {len(names)} Services + {len(names)} EndpointSlices in {took:.1f} s "
            f"({2 * len(names) / took:.0f} objects/s, {self.args.api_threads} connections)")
        self.results.setdefault("create", []).append({"services": len(names), "seconds": took})

    def stop_proxies(self, size: int | None) -> None:
        for twin in self.twins:
            stop_proxy(twin, self.args.out / f"{twin.label}-{size}.log" if size else None)

    def run_size(self, size: int) -> dict:
        a = self.args
        self.stop_proxies(self.done_size)
        self.grow(size)
        rng = random.Random(size)
        names = sorted(self.vips)
        picked = rng.sample(names, min(len(names), a.sample + a.fresh))
        sample = [self.vips[n] for n in picked[:a.sample]]
        fresh = [self.vips[n] for n in picked[a.sample:]]
        pod_ids = {p.name for p in BULK_PODS}
        out: dict = {"services": size, "endpoints_per_service": a.endpoints, "load_before": os.getloadavg()[0]}
        for twin in self.twins:
            log(f"{size} services: cold start of {twin.label}")
            out.setdefault("cold_start", {})[twin.label] = cold_start(twin, self.cluster, sample, pod_ids,
                                                                      a.cold_budget)
            log(f"  {out['cold_start'][twin.label]}")
        time.sleep(a.settle)  # both synced; let start-up garbage and caches settle before RSS
        out["rss_mib"] = {t.label: t.rss_mib() for t in self.twins}
        log(f"  RSS {out['rss_mib']}")
        if a.updates:
            log(f"{size} services: {a.updates} EndpointSlice updates")
            pod_ips = {p.name: self.twins[0].box.pods[p.name].v4 for p in EVENT_PODS}
            out["events"], self.event_pod = events(self.twins, self.api, self.event_vip, pod_ips, self.event_pod,
                                                   a.updates, a.event_budget)
            log(f"  {out['events']}")
            out["rss_mib_after_events"] = {t.label: t.rss_mib() for t in self.twins}
            if a.perf and shutil.which("perf"):
                log(f"{size} services: {a.perf} more updates with perf attached to svcproxy")
                out["svcproxy_profile"], self.event_pod = profile(self.twins, self.api, self.event_vip, pod_ips,
                                                                  self.event_pod, a.perf, a.event_budget,
                                                                  a.out / f"perf-{size}")
                log("  " + out["svcproxy_profile"].replace("\n", "\n  "))
        if fresh:
            log(f"{size} services: first packet")
            direct = self.twins[0].box.pods[BULK_PODS[0].name].v4
            out["first_packet"] = first_packet(self.twins, fresh, sample[0], a.warm, direct)
            log(f"  {out['first_packet']}")
        out["load_after"] = os.getloadavg()[0]
        for twin in self.twins:
            if not twin.alive():
                raise RuntimeError(f"{twin.label} exited:\n{twin.tail()}")
            out.setdefault("log_tail", {})[twin.label] = twin.tail(8)
        self.done_size = size
        return out

    def tear_down(self) -> None:
        self.stop_proxies(self.done_size)
        for twin in self.twins:
            if twin.client:
                twin.client.shutdown(wait=True, cancel_futures=True)
            twin.box.close()
        if self.api:
            self.api.close()
        if not self.args.keep_cluster:
            self.cluster.down(log=lambda *_: None)


def ratio(kp: float | None, svp: float | None) -> str:
    return f"{kp / svp:.1f}x" if kp and svp else "-"


def report(results: dict) -> str:
    """A Markdown table per size: kube-proxy, svcproxy, ratio."""
    lines = []
    for size in results["sizes"]:
        kp, svp = "kube-proxy", "svcproxy"
        rows = []
        cs = size["cold_start"]
        rows.append(("cold start: all sampled VIPs answer (s)", cs[kp]["vips_s"], cs[svp]["vips_s"], "kp/svp"))
        rows.append(("cold start: first sync in metrics (s)", cs[kp]["first_sync_s"], cs[svp]["first_sync_s"],
                     "kp/svp"))
        rows.append(("steady RSS (MiB)", size["rss_mib"][kp], size["rss_mib"][svp], "svp/kp"))
        if "events" in size:
            ev = size["events"]
            for key in ("p50", "p99", "max"):
                rows.append((f"event to dataplane {key} (ms)", ev[kp].get(key, 0) * 1e3, ev[svp].get(key, 0) * 1e3,
                             "kp/svp"))
            for key in ("p50", "p99"):
                rows.append((f"event to first answer {key} (ms)", ev[kp]["answered"].get(key, 0) * 1e3,
                             ev[svp]["answered"].get(key, 0) * 1e3, "kp/svp"))
            rows.append(("events missed", ev[kp]["missed"], ev[svp]["missed"], ""))
            rows.append(("CPU s per 1,000 endpoint changes", ev[kp]["cpu_s_per_1000_changes"],
                         ev[svp]["cpu_s_per_1000_changes"], "kp/svp"))
        if "first_packet" in size:
            fp = size["first_packet"]
            for key, name in (("first_median_ms", "first packet, fresh VIP, median (ms)"),
                              ("first_max_ms", "first packet, fresh VIP, max (ms)"),
                              ("warm_median_ms", "new connection, same VIP, median (ms)"),
                              ("direct_median_ms", "new connection to the pod directly, median (ms)")):
                rows.append((name, fp[kp][key], fp[svp][key], "kp/svp"))
        lines.append(f"\n{size['services']} services x {size['endpoints_per_service']} endpoints "
                     f"(load average {size['load_before']:.1f} -> {size['load_after']:.1f})\n")
        lines.append("| measure | kube-proxy | svcproxy | ratio |")
        lines.append("|---|---:|---:|---:|")
        for name, a, b, how in rows:
            r = ratio(a, b) if how == "kp/svp" else f"{b / a:.2f}x" if how == "svp/kp" and a else ""
            lines.append(f"| {name} | {a:.3f} | {b:.3f} | {r} |" if isinstance(a, float) else
                         f"| {name} | {a} | {b} | {r} |")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000,10000", help="Service counts, ascending (default 100,1000,10000)")
    p.add_argument("--endpoints", type=int, default=10, help="endpoints per Service (default 10)")
    p.add_argument("--updates", type=int, default=100, help="EndpointSlice updates per size (default 100)")
    p.add_argument("--sample", type=int, default=50, help="VIPs probed for the cold start (default 50)")
    p.add_argument("--fresh", type=int, default=20, help="never-used VIPs for the first packet (default 20)")
    p.add_argument("--warm", type=int, default=200, help="new connections to one VIP (default 200)")
    p.add_argument("--settle", type=float, default=5, help="seconds after the syncs before RSS (default 5)")
    p.add_argument("--api-threads", type=int, default=16, help="parallel API connections (default 16)")
    p.add_argument("--cold-budget", type=float, default=900, help="seconds a cold start may take (default 900)")
    p.add_argument("--event-budget", type=float, default=60, help="seconds an update may take (default 60)")
    p.add_argument("--perf", type=int, default=30, metavar="N",
                   help="after each measured series, N more updates with perf recording svcproxy (0: none; "
                        "default 30)")
    p.add_argument("--out", type=Path, default=Path(time.strftime("/tmp/svcproxy-cluster-bench-%Y%m%d-%H%M%S")),
                   help="results.json, the proxies' logs, perf data (default /tmp/svcproxy-cluster-bench-DATE)")
    p.add_argument("--keep-cluster", action="store_true", help="leave the bench's control plane up")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness for the bench and all it starts (control plane, both proxies, pods, clients); "
                        "e.g. -10 on a machine shared with builds at 0 (default 0: unchanged)")
    args = p.parse_args(argv)
    try:
        args.size_list = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        p.error(f"--sizes: not a list of numbers: {args.sizes}")
    if not args.size_list or args.size_list[0] < 1 or not 1 <= args.endpoints <= 250:
        p.error("--sizes must be positive; --endpoints 1..250")
    if not -20 <= args.nice <= 19:
        p.error("--nice must be in -20..19")
    if args.sample < 1 or args.updates < 0 or args.api_threads < 1 or args.perf < 0:
        p.error("--sample and --api-threads must be >= 1, --updates and --perf >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("cluster_bench: needs root (network namespaces, nftables)", file=sys.stderr)
        return 1
    sb.require_root_and_tools(sb.SVCPROXY)
    if args.nice:
        os.nice(args.nice)  # inherited by every process the bench starts: both proxies alike
    # Its own state directory: two runs never share (or tear down) each other's control plane.
    cluster = lab.Cluster(args.out / "cluster", netns="svp-bench-cp")
    bench = Bench(args, cluster)
    args.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    bench.results.update({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
                          "command": "bench/cluster_bench.py " + " ".join(argv), "nproc": os.cpu_count(),
                          "nice": os.nice(0),
                          "sizes": []})
    started = time.monotonic()
    try:
        bench.set_up()
        for size in args.size_list:
            bench.results["sizes"].append(bench.run_size(size))
            (args.out / "results.json").write_text(json.dumps(bench.results, indent=1) + "\n")
    finally:
        bench.tear_down()
    bench.results["wall_s"] = time.monotonic() - started
    (args.out / "results.json").write_text(json.dumps(bench.results, indent=1) + "\n")
    print(f"cluster bench, {bench.results['date']}, commit {commit}, {os.cpu_count()} CPUs, "
          f"{bench.results['wall_s']:.0f} s; command: {bench.results['command']}")
    print(report(bench.results))
    print(f"\nresults, logs and profiles: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
