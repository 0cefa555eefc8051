"""End-to-end against a real control plane: pod readiness through the real
EndpointSlice controller to svcproxy's dataplane.

The control plane (tests/cluster/cluster.py: etcd, kube-apiserver,
kube-controller-manager with only the EndpointSlice controllers) runs in its
own network namespace; it is reused if `./dev cluster up` started it,
otherwise this module starts one and stops it at the end. The lab (node,
external client, three pods; sandbox.py) is linked to it by a veth. The
pod agent (tests/cluster/podagent.py) runs in the node namespace as the
kubelet would: it registers the Node and three Deployment-shaped pods
(app=web) with an httpGet readinessProbe on a second server in each pod
(port 8081, periodSeconds 1, failureThreshold 1) and probes them for real.
A selector Service is created with kubectl; the controller builds its
EndpointSlice; `svcproxy run --kubeconfig` in the node namespace programs it.

  - Readiness: with short TCP connections running from the external client
    to the ClusterIP the whole time, one pod's readiness server is stopped.
    The agent's next probe fails, the pod turns not Ready, the controller
    marks its endpoint not ready, svcproxy syncs, and no connection started
    after that sync reaches the pod; none fails, and the pod keeps serving
    connections it already had. The time from the readiness server stopping
    to the last connection that reached the pod is printed (bench/RESULTS.md
    has it). Restarting the readiness server brings the pod back.

Needs root (network namespaces), openssl and the cluster binaries
(tests/cluster/build.sh builds them: Go 1.26; `./dev test` builds them
first). Skipped with the reason when the binaries cannot be built.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_readiness (from tests/e2e).
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

NAMESPACE = f"lab-{os.getpid()}"
NODE = f"lab-{os.getpid()}-node"
PODS = [sb.Pod(f"web-5d4f8-{s}", i, node=NODE) for i, s in ((1, "a1b2c"), (2, "d3e4f"), (3, "g5h6i"))]
PROBE = {"port": 8081, "path": "/ready", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1,
         "successThreshold": 1}
SERVICE_PORT = 80
# The time allowed from the probe failing to the dataplane dropping the pod: one probe period,
# plus the controller and the daemon's sync. Generous for two busy cores; the measured figure is
# printed.
DROP_BUDGET = PROBE["periodSeconds"] + 5.0


CLUSTER = lab.ForTests()


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    CLUSTER.set_up_module()


def tearDownModule():
    CLUSTER.release()


def replies(stream: sb.Background) -> list[dict]:
    return [r for r in stream.json_lines() if "id" in r]


class TestReadiness(unittest.TestCase):

    def setUp(self):
        self.cluster = CLUSTER.cluster
        self.box = sb.Sandbox(SVCPROXY)
        self.addCleanup(self.box.close)
        # No namespace controller runs: the namespace's objects go first, or a reused cluster keeps them.
        self.addCleanup(self.cluster.kubectl, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false",
                        check=False)
        self.addCleanup(self.cluster.kubectl, "delete", "services,endpointslices,pods", "--all", "-n", NAMESPACE,
                        "--ignore-not-found", "--wait=false", check=False)
        self.box.build()
        self.box.add_pods(PODS)
        self.cluster.attach(self.box.node)
        echoes = {}
        self.ready_servers = {}
        for pod in PODS:
            echoes[pod.name] = self.box.start_echo(pod.ns, "[::]:8080", id=pod.name, wait=False)
            self.ready_servers[pod.name] = self.box.start_echo(pod.ns, f"[::]:{PROBE['port']}",
                                                               id=f"ready-{pod.name}", wait=False)
        self.box.wait_ready([*echoes.values(), *self.ready_servers.values()])
        self.agent = labnode.start_agent(self.box, self.cluster, NODE, sb.NODE_V4, [
            labnode.pod_config(p.name, NAMESPACE, [p.v4], labels={"app": "web", "pod-template-hash": "5d4f8"},
                               ports=[{"name": "http", "containerPort": 8080}], probe=PROBE) for p in PODS])
        labnode.wait_registered(self.agent, [p.name for p in PODS])
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(self.service()))
        self.cluster_ip = self.cluster.kubectl("get", "service", "-n", NAMESPACE, "web",
                                               "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
        self.wait_slice({p.name: True for p in PODS}, 30)
        self.daemon = sb.Daemon(labnode.start_svcproxy(self.box, SVCPROXY, self.cluster, NODE, sb.NODE_V4,
                                                       sb.CLUSTER_CIDRS[0]))
        self.daemon.wait_sync(reason="start", timeout=60)

    # ------------------------------------------------------------ helpers

    def wait_agent(self, predicate, what: str, timeout: float, start: int = 0) -> dict:
        return labnode.wait_agent(self.agent, predicate, what, timeout, start)

    def service(self) -> dict:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NAMESPACE},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": 8080}]}}

    def wait_slice(self, wanted: dict[str, bool], timeout: float) -> None:
        labnode.wait_slices(self.cluster, NAMESPACE, {"web": wanted}, timeout)

    # ------------------------------------------------------------ test

    def test_unready_pod_stops_getting_new_connections(self):
        box, victim = self.box, PODS[1].name
        others = {p.name for p in PODS} - {victim}
        first = box.request(box.ext, self.cluster_ip, SERVICE_PORT, count=30)
        self.assertEqual(first.outcomes, {"reply": 30}, first.errors)
        self.assertEqual(set(first.ids), {p.name for p in PODS}, "every ready pod answers through the ClusterIP")

        stream = box.start_stream(box.ext, "tcp-loop", self.cluster_ip, SERVICE_PORT, parallel=2, timeout=2)
        self.addCleanup(stream.stop)
        stream.lines.wait_for(lambda line: victim in line, timeout=10, what=f"a connection to {victim}")

        agent_mark, daemon_mark = len(self.agent.lines), self.daemon.mark()
        failed_at = time.time()
        server = self.ready_servers[victim]
        server.proc.terminate()
        server.proc.wait(timeout=5)

        probe = self.wait_agent(lambda e: e.get("event") == "probe" and e["pod"] == victim and not e["ok"],
                                "the failed probe", 10, agent_mark)
        unready = self.wait_agent(lambda e: e.get("event") == "ready" and e["pod"] == victim and not e["ready"],
                                  f"{victim} not Ready", 10, agent_mark)
        sync = self.daemon.wait_sync(after=daemon_mark, reason="api-changed", timeout=15)
        self.wait_slice({**{p: True for p in others}, victim: False}, 10)
        # Traffic keeps running well past the sync: 100 more answers after it.
        stream.lines.wait_count(lambda line: '"id"' in line and json.loads(line)["t0"] > sync.time, 100,
                                timeout=30, what="answers after the sync")
        stream.stop()

        lines = stream.json_lines()
        errors = [r for r in lines if "error" in r]
        self.assertEqual(errors, [], "no connection may fail while the pod is drained")
        to_victim = [r for r in replies(stream) if r["id"] == victim]
        last = max(r["t0"] for r in to_victim)
        after_sync = [r for r in replies(stream) if r["t0"] > sync.time]
        self.assertNotIn(victim, {r["id"] for r in after_sync},
                         f"a connection started after the sync ({sync.time:.3f}) reached {victim}")
        self.assertEqual({r["id"] for r in after_sync}, others)
        latency = last - failed_at
        print(f"\nreadiness: probe endpoint of {victim} stopped at {failed_at:.3f}; failed probe "
              f"+{probe['t'] - failed_at:.3f} s, Pod not Ready +{unready['t'] - failed_at:.3f} s, svcproxy sync "
              f"+{sync.time - failed_at:.3f} s, last connection that reached the pod +{latency:.3f} s "
              f"({last - probe['t']:+.3f} s from the failed probe; {len(replies(stream))} connections, 0 failed)",
              file=sys.stderr)
        self.assertLess(latency, DROP_BUDGET, "the pod kept getting new connections too long")

        # The pod comes back once its readiness server answers again.
        agent_mark = len(self.agent.lines)
        self.ready_servers[victim] = box.start_echo(PODS[1].ns, f"[::]:{PROBE['port']}", id=f"ready-{victim}")
        self.wait_agent(lambda e: e.get("event") == "ready" and e["pod"] == victim and e["ready"],
                        f"{victim} Ready again", 10, agent_mark)
        self.wait_slice({p.name: True for p in PODS}, 10)
        deadline = time.monotonic() + 10
        while victim not in box.request(box.ext, self.cluster_ip, SERVICE_PORT, count=30).ids:
            self.assertLess(time.monotonic(), deadline, f"{victim} never answered again after turning Ready")


if __name__ == "__main__":
    unittest.main()
