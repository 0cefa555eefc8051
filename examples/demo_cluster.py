#!/usr/bin/env python3
"""svcproxy demo with real Kubernetes components: the seed's story (a pod
fails its readiness probe while traffic flows; the proxy stops sending it
new connections) through a real kube-apiserver and the real EndpointSlice
controller, with the real kube-proxy beside svcproxy.

  python3 examples/demo_cluster.py --svcproxy build/svcproxy   (root; `./dev demo cluster`)

1. starts the control plane (tests/cluster/cluster.py: etcd, kube-apiserver,
   kube-controller-manager with only the EndpointSlice controllers, in their
   own network namespace), or reuses one `./dev cluster up` started;
2. builds two identical lab nodes (tests/e2e/sandbox.py), one per proxy,
   each with the same three pods running `svcproxy echo` on :8080 (the app)
   and :8081 (the readiness endpoint), both linked to the control plane;
3. the pod agent (tests/cluster/podagent.py, the kubelet's stand-in)
   registers the Node and three Deployment-shaped Pods (app=web) with an
   httpGet readinessProbe, and probes them for real;
4. creates the Service with kubectl; the controller builds its EndpointSlice;
5. starts kube-proxy (nftables mode) on one node and `svcproxy run
   --kubeconfig` on the other, and sends requests through each;
6. with connections flowing through both, stops one pod's readiness
   endpoint: the probe fails, the Pod turns not Ready, the controller marks
   the endpoint not ready (shown with kubectl), both proxies drop the pod;
7. prints side-by-side numbers: start to first sync, probe failure to the
   proxy's sync and to the last connection that reached the pod, the sync's
   duration, RSS;
8. removes everything it created, whatever happens (failure, Ctrl-C,
   SIGTERM): proxies, agent, API objects, namespaces, and the control plane
   if it started it.

Exits 1 if a check fails, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
import demo  # noqa: E402  (its sandbox import, output style and checks)
import cluster as lab  # noqa: E402
import labnode  # noqa: E402
from demo import BOLD, GREEN, RED, RESET, Checks, bar, heading, short, step  # noqa: E402

sb = demo.sb

NAMESPACE = f"demo-{os.getpid()}"
NODE = "node-a"
CLUSTER_CIDRS = ",".join(sb.CLUSTER_CIDRS)
TEMPLATE_HASH = "5d4f8b9c6"
PODS = [sb.Pod(f"web-{TEMPLATE_HASH}-{suffix}", i, node=NODE) for i, suffix in ((1, "2xk4q"), (2, "8mzt7"),
                                                                                (3, "qwv9n"))]
VICTIM = PODS[1].name
APP_PORT, READY_PORT, SERVICE_PORT = 8080, 8081, 80
PROBE = {"port": READY_PORT, "path": "/ready", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1,
         "successThreshold": 1}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NAMESPACE},
           "spec": {"selector": {"app": "web"},
                    "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": APP_PORT}]}}
SLICE_COLUMNS = ("custom-columns=NAME:.metadata.name,ADDRESSES:.endpoints[*].addresses[0],"
                 "PODS:.endpoints[*].targetRef.name,READY:.endpoints[*].conditions.ready")
DROP_BUDGET = PROBE["periodSeconds"] + 5.0  # seconds from the failed probe; as test_cluster_readiness


class Twin:
    """One lab node and what runs on it: its proxy, its traffic stream."""

    def __init__(self, label: str, box):
        self.label, self.box = label, box
        self.proxy = None  # sandbox Background
        self.started = 0.0  # wall clock when the proxy was spawned
        self.first_sync = 0.0
        self.stream = None


def main() -> int:
    parser = argparse.ArgumentParser(description="svcproxy beside kube-proxy against a real control plane")
    parser.add_argument("--svcproxy", default=str(ROOT / "build" / "svcproxy"), help="path to the svcproxy binary")
    parser.add_argument("--requests", type=int, default=300, help="requests per round and proxy (default 300)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces); try: sudo ./dev demo cluster", file=sys.stderr)
        return 1
    binary = str(Path(args.svcproxy).resolve())
    if not os.access(binary, os.X_OK):
        print(f"demo: no svcproxy binary at {binary} (run ./dev build)", file=sys.stderr)
        return 1
    if not shutil.which("openssl"):
        print("demo: needs openssl (the control plane's certificates)", file=sys.stderr)
        return 1

    started = time.monotonic()
    check = Checks()
    owner = lab.ForTests()
    run = Run()
    interrupted = False
    try:
        story(owner, binary, run, args.requests, check)
    except KeyboardInterrupt:
        print(f"\n{RED}demo: interrupted{RESET}")
        interrupted = True
    except (sb.SandboxError, lab.ClusterError, OSError, subprocess.TimeoutExpired, AssertionError) as exc:
        check(False, "the demo stopped early", str(exc))
    finally:
        teardown(owner, run)
    if interrupted:
        return 130
    took = time.monotonic() - started
    if check.failed:
        print(f"\n{RED}demo cluster: {len(check.failed)} check(s) failed: {'; '.join(check.failed)}{RESET} "
              f"({took:.1f} s)")
        return 1
    print(f"\n{GREEN}demo cluster: all checks passed{RESET} ({took:.1f} s)")
    return 0


class Run:
    """What the story started, for the teardown."""

    def __init__(self):
        self.twins: list[Twin] = []
        self.agent = None  # the pod agent's sandbox Background


def teardown(owner: lab.ForTests, run: Run) -> None:
    heading("Teardown")
    twins, agent = run.twins, run.agent
    for twin in twins:
        if twin.stream:
            twin.stream.stop()
        if twin.proxy:
            twin.proxy.stop()
    if agent:
        agent.stop(timeout=15)  # closing its stdin deletes its Pods and the Node
    cluster = owner.cluster
    if cluster and cluster.is_up():
        labnode.delete_objects(cluster, [NAMESPACE], [NODE])
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)
        step(f"deleted the demo's objects (namespace {NAMESPACE}, node {NODE})")
    created = sum(len(t.box.namespaces) for t in twins)
    for twin in twins:
        twin.box.close()
    step(f"removed {created} lab network namespaces and every process started in them")
    if owner.started:
        owner.release()
        step("stopped the control plane this demo started and removed its state")
    elif cluster:
        step("left the control plane running (`./dev cluster up` started it; `./dev cluster down` stops it)")


def kubectl_out(cluster: lab.Cluster, *args: str) -> None:
    """Runs kubectl and prints its command and output, indented."""
    step(f"{BOLD}$ kubectl {' '.join(args)}{RESET}")
    for line in cluster.kubectl(*args).stdout.rstrip().splitlines():
        step(f"  {line}")


def story(owner: lab.ForTests, binary: str, run: Run, requests: int, check: Checks) -> None:
    twins = run.twins
    heading("Control plane: etcd, kube-apiserver, kube-controller-manager (EndpointSlice controllers only)")
    t0 = time.monotonic()
    cluster = owner.acquire(log=step)
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    step(f"{'started' if owner.started else 'reused'} in {time.monotonic() - t0:.1f} s: kube-apiserver "
         f"{version['gitVersion']} at {lab.SERVER_URL}, in netns {cluster.netns} (linked only to the lab)")

    heading("Two identical lab nodes, one per proxy: node, external client, 3 pods each")
    for label in ("kube-proxy", "svcproxy"):
        box = sb.Sandbox(binary)
        twins.append(Twin(label, box))
        box.build()
        box.add_pods([sb.Pod(p.name, p.index, node=NODE) for p in PODS])
        link = cluster.attach(box.node)
        echoes = []
        for pod in PODS:
            echoes.append(box.start_echo(box.pods[pod.name].ns, f"[::]:{APP_PORT}", id=pod.name, wait=False))
            echoes.append(box.start_echo(box.pods[pod.name].ns, f"[::]:{READY_PORT}", id=f"ready-{pod.name}",
                                         wait=False))
        box.wait_ready(echoes)
        step(f"{label:<10} node netns {box.node} (node IP {sb.NODE_V4}, control-plane link {link})")
    kp, svp = twins
    step(f"pods (same addresses on both nodes), each `svcproxy echo` on :{APP_PORT} and a readiness server "
         f"on :{READY_PORT}:")
    for pod in PODS:
        step(f"  {pod.name:<20} {kp.box.pods[pod.name].v4}")

    heading(f"Pod agent (the kubelet's stand-in) in {kp.label}'s node: Node {NODE}, 3 Pods with a readinessProbe")
    agent = run.agent = labnode.start_agent(kp.box, cluster, NODE, sb.NODE_V4, [
        labnode.pod_config(p.name, NAMESPACE, [kp.box.pods[p.name].v4],
                           labels={"app": "web", "pod-template-hash": TEMPLATE_HASH},
                           ports=[{"name": "http", "containerPort": APP_PORT}], probe=PROBE) for p in PODS])
    labnode.wait_registered(agent, [p.name for p in PODS])
    step(f"readinessProbe: httpGet :{READY_PORT}{PROBE['path']} every {PROBE['periodSeconds']} s, "
         f"failureThreshold {PROBE['failureThreshold']}; probed for real against {kp.label}'s pods "
         f"({svp.label}'s copies serve the same ids)")
    kubectl_out(cluster, "get", "pods", "-n", NAMESPACE, "-o", "wide")

    heading("kubectl apply: Service web (selector app=web, port 80 -> 8080)")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(SERVICE))
    labnode.wait_slices(cluster, NAMESPACE, {"web": {p.name: True for p in PODS}}, 30)
    kubectl_out(cluster, "get", "service", "-n", NAMESPACE, "web")
    kubectl_out(cluster, "get", "endpointslice", "-n", NAMESPACE, "-o", SLICE_COLUMNS)
    vip = cluster.kubectl("get", "service", "-n", NAMESPACE, "web", "-o", "jsonpath={.spec.clusterIP}").stdout

    heading("Both proxies start against the same API server, under the same node name")
    kp.started = time.time()
    kp.proxy = labnode.start_kube_proxy(kp.box, cluster, NODE, CLUSTER_CIDRS)
    svp.started = time.time()
    svp.proxy = labnode.start_svcproxy(svp.box, binary, cluster, NODE, sb.NODE_V4, CLUSTER_CIDRS)
    svp_daemon = sb.Daemon(svp.proxy)
    start = svp_daemon.wait_sync(reason="start", timeout=60)
    svp.first_sync = start.time
    labnode.wait_kube_proxy_synced(kp.box, kp.proxy, [vip], 90)
    kp.first_sync = labnode.kube_proxy_last_sync(kp.box)
    step(f"kube-proxy: {kp.proxy.argv[3].rsplit('/', 1)[-1]} --proxy-mode=nftables --hostname-override={NODE} "
         f"... (first sync per its metrics +{kp.first_sync - kp.started:.2f} s)")
    step(f"svcproxy:   svcproxy run --kubeconfig ... --hostname-override {NODE} (log: {short(start.text)})")

    heading(f"{requests} requests from the external client to web's ClusterIP {vip}:{SERVICE_PORT}, per proxy")
    before = {t.label: send(t, vip, requests) for t in twins}
    counts_table(before, {p.name: True for p in PODS}, requests)
    check(all(set(c) == {p.name for p in PODS} and sum(c.values()) == requests for c, _ in before.values())
          and not any(f for _, f in before.values()),
          f"both proxies: all {requests} answered, by every ready pod",
          f"{ {k: (dict(c), f) for k, (c, f) in before.items()} }")

    heading(f"{VICTIM} fails its readiness probe, with connections flowing through both proxies")
    for twin in twins:
        twin.stream = twin.box.start_stream(twin.box.ext, "tcp-loop", vip, SERVICE_PORT, parallel=2, timeout=2)
        twin.stream.lines.wait_for(lambda line: VICTIM in line, timeout=10, what=f"a connection to {VICTIM}")
    refs_before = {t.label: references(t, kp.box.pods[VICTIM].v4) for t in twins}
    agent_mark, svp_mark = len(agent.lines), svp_daemon.mark()
    kp_metrics_before = labnode.metrics(kp.box)
    svp_metrics_before = labnode.metrics(svp.box)
    failed_at = time.time()
    for twin in twins:  # the agent probes kube-proxy's copy; svcproxy's copy goes down alike
        server = next(e for e in twin.box.echoes if e.id == f"ready-{VICTIM}")
        server.proc.terminate()
        server.proc.wait(timeout=5)
    step(f"stopped {VICTIM}'s readiness server (:{READY_PORT}) at {clock(failed_at)}")
    probe = labnode.wait_agent(agent, lambda e: e.get("event") == "probe" and e["pod"] == VICTIM and not e["ok"],
                               "the failed probe", 10, agent_mark)
    unready = labnode.wait_ready_event(agent, VICTIM, False, 10, agent_mark)
    step(f"pod agent: probe failed ({probe['detail']}) {rel(probe['t'], failed_at)}; Pod status Ready=False "
         f"written {rel(unready['t'], failed_at)}")
    sync = svp_daemon.wait_sync(after=svp_mark, reason="api-changed", timeout=15)
    kp_sync = wait_kube_proxy_sync_after(kp, unready["t"], 15)
    labnode.wait_slices(cluster, NAMESPACE, {"web": {p.name: p.name != VICTIM for p in PODS}}, 10)
    kubectl_out(cluster, "get", "endpointslice", "-n", NAMESPACE, "-o", SLICE_COLUMNS)
    step(f"svcproxy log: {short(sync.text)}")
    step(f"kube-proxy:   sync {rel(kp_sync, failed_at)} (kubeproxy_sync_proxy_rules_last_timestamp_seconds)")
    for twin in twins:  # 100 answers after the later of the two syncs
        twin.stream.lines.wait_count(lambda line: '"id"' in line and json.loads(line)["t0"] > max(sync.time, kp_sync),
                                     100, timeout=30, what=f"{twin.label}: answers after the sync")
        twin.stream.stop()

    drops = {}
    for twin, synced in ((kp, kp_sync), (svp, sync.time)):
        results = [r for r in twin.stream.json_lines() if "t0" in r]
        errors = Counter(r["error"] for r in results if "error" in r)
        last = max(r["t0"] for r in results if r.get("id") == VICTIM)
        late = [r for r in results if r["t0"] > synced and r.get("id") == VICTIM]
        drops[twin.label] = (synced, last, len(results), errors)
        check(not late and not errors and last - probe["t"] < DROP_BUDGET,
              f"{twin.label}: no connection begun after its sync reached {VICTIM}; none of {len(results)} failed",
              f"{len(late)} reached it, errors {dict(errors)}, last {last - probe['t']:+.3f} s from the probe")
    for twin in twins:
        refs = references(twin, kp.box.pods[VICTIM].v4)
        step(f"{twin.label:<10} ruleset lines naming {kp.box.pods[VICTIM].v4}: {refs_before[twin.label]} before, "
             f"{refs} now ({'nft list table ip kube-proxy' if twin is kp else 'svcproxy rules --live'})")

    heading("Side by side")
    kp_metrics_after, svp_metrics_after = labnode.metrics(kp.box), labnode.metrics(svp.box)
    rows = [
        ("process start -> first full sync", f"{kp.first_sync - kp.started:.2f} s",
         f"{svp.first_sync - svp.started:.2f} s"),
        ("probe failed -> proxy synced", ms(drops["kube-proxy"][0] - probe["t"]), ms(sync.time - probe["t"])),
        ("probe failed -> last connection to reach the pod", ms(drops["kube-proxy"][1] - probe["t"]),
         ms(drops["svcproxy"][1] - probe["t"])),
        ("connections during the drain (failed)", f"{drops['kube-proxy'][2]} ({sum(drops['kube-proxy'][3].values())})",
         f"{drops['svcproxy'][2]} ({sum(drops['svcproxy'][3].values())})"),
        ("that sync's duration (own metric)", sync_duration(kp_metrics_before, kp_metrics_after),
         sync_duration(svp_metrics_before, svp_metrics_after)),
        ("RSS now", mib(labnode.rss_kib(kp.proxy.proc.pid)), mib(labnode.rss_kib(svp.proxy.proc.pid))),
    ]
    width = max(len(r[0]) for r in rows)
    step(f"{'':<{width}}  {'kube-proxy':>12}  {'svcproxy':>12}")
    for name, a, b in rows:
        step(f"{name:<{width}}  {a:>12}  {b:>12}")
    step(f"(times from the failed probe as the pod agent saw it; the Pod turned not Ready "
         f"{ms(unready['t'] - probe['t'])} after it. A last connection before it (negative) began while the pod "
         f"was still Ready: each proxy's round robin just did not pick it again)")

    heading(f"The same {requests} requests again")
    after = {t.label: send(t, vip, requests) for t in twins}
    counts_table(after, {p.name: p.name != VICTIM for p in PODS}, requests)
    check(all(VICTIM not in c and sum(c.values()) == requests and not f for c, f in after.values()),
          f"both proxies: {VICTIM} got nothing, the other two answered all",
          f"{ {k: (dict(c), f) for k, (c, f) in after.items()} }")


def send(twin: Twin, vip: str, count: int) -> tuple[Counter, dict]:
    result = twin.box.request(twin.box.ext, vip, SERVICE_PORT, count=count, http=True, parallel=16, timeout=2.0)
    return Counter(result.ids), {k: v for k, v in result.outcomes.items() if k != "reply"}


def counts_table(rounds: dict[str, tuple[Counter, dict]], ready: dict[str, bool], total: int) -> None:
    names = list(rounds)
    step(f"{'pod':<20}  {'state':<7}" + "".join(f"  {name:<25}" for name in names).rstrip())
    for pod in PODS:
        state = f"{GREEN}ready  {RESET}" if ready[pod.name] else f"{RED}UNREADY{RESET}"
        cells = "".join(f"  {rounds[n][0].get(pod.name, 0):>4} {bar(rounds[n][0].get(pod.name, 0), total)}"
                        for n in names)
        step(f"{pod.name:<20}  {state}{cells}")


def references(twin: Twin, ip: str) -> int:
    """How many lines of the proxy's IPv4 ruleset name ip."""
    if twin.label == "kube-proxy":
        text = twin.box.nft_list(twin.box.node, ["table", "ip", "kube-proxy"])
    else:
        text = twin.box.svcproxy_in(twin.box.node, ["rules", "--live"]).stdout
    return sum(1 for line in text.splitlines() if ip in line)


def wait_kube_proxy_sync_after(twin: Twin, after: float, timeout: float) -> float:
    """The time of kube-proxy's first sync that ended after `after` (its own metric)."""
    deadline = time.monotonic() + timeout
    while (last := labnode.kube_proxy_last_sync(twin.box)) <= after:
        if time.monotonic() > deadline:
            raise AssertionError(f"kube-proxy did not sync within {timeout} s of {after:.3f}")
        time.sleep(0.05)  # polling kube-proxy's metrics with a deadline (its timestamp is the sync's own)
    return last


def sync_duration(before: str, after: str) -> str:
    """The mean of the syncs between two /metrics readings, from the
    kubeproxy_sync_proxy_rules_duration_seconds histogram both proxies export."""
    name = "kubeproxy_sync_proxy_rules_duration_seconds"
    n = (labnode.metric(after, name + "_count") or 0) - (labnode.metric(before, name + "_count") or 0)
    total = (labnode.metric(after, name + "_sum") or 0) - (labnode.metric(before, name + "_sum") or 0)
    return f"{1000 * total / n:.1f} ms" + (f" ({n:.0f} syncs)" if n > 1 else "") if n > 0 else "-"


def ms(seconds: float) -> str:
    return f"{1000 * seconds:+.0f} ms"


def rel(t: float, since: float) -> str:
    return f"+{1000 * (t - since):.0f} ms"


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


if __name__ == "__main__":
    sys.exit(main())
