"""End-to-end against a real control plane: `svcproxy loadtest NS/SVC
--kubeconfig --watch`, the load test following the API informer while a pod
turns unready under load.

The lab is test_cluster_readiness.py's: the control plane of
tests/cluster/cluster.py (the real EndpointSlice controller), a node
namespace where the pod agent (tests/cluster/podagent.py) registers three
Deployment-shaped pods behind a selector Service and probes their readiness
servers for real, and `svcproxy run --kubeconfig` programming the node.

  - Drain under --watch: the load test runs on the node (connect mode, so
    conntrack attributes every connection) and resolves the Service through
    the API. One pod's readiness server is stopped mid-run; the probe fails,
    the controller marks the endpoint not ready, and both the daemon and the
    load test's informer see it. The report's `changes[]` holds that removal
    with a drain time (change -> the pod's last answer) that is small, the
    pod answered before it and the others after it, and nothing failed. The
    only answers from outside the expected set are the pod's own within that
    drain (the load test's informer may see the change before the daemon's
    sync lands).

Needs root (network namespaces), openssl and the cluster binaries
(tests/cluster/build.sh; `./dev test` builds them first).
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_loadtest (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402
import labnode  # noqa: E402

NAMESPACE = f"ltw-{os.getpid()}"
NODE = f"ltw-{os.getpid()}-node"
PODS = [sb.Pod(f"web-7c9d2-{s}", i, node=NODE) for i, s in ((1, "k1l2m"), (2, "n3o4p"), (3, "q5r6s"))]
PROBE = {"port": 8081, "path": "/ready", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1,
         "successThreshold": 1}
ECHO_PORT = 8080
# Long enough that the removal (one probe period, the controller, both
# informers) lands well inside the run on two busy cores.
DURATION_S = 8
# A removed pod's last answer may follow the load test's view of the change
# only by the daemon's sync lagging its own informer, plus the load tester's
# thread being scheduled late on a loaded machine: a second is generous, and
# rules that kept sending would show the pod answering to the end of the run.
DRAIN_MARGIN_S = 1.0

CLUSTER = lab.ForTests()


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    CLUSTER.set_up_module()


def tearDownModule():
    CLUSTER.release()


def ep(pod: sb.Pod) -> str:
    return f"{pod.v4}:{ECHO_PORT}"


class TestLoadtestWatch(unittest.TestCase):

    def setUp(self):
        self.cluster = CLUSTER.cluster
        self.box = sb.Sandbox(SVCPROXY)
        self.addCleanup(self.box.close)
        self.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-cluster-loadtest-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        # No namespace controller runs: the namespace's objects go first, or a reused cluster keeps them.
        self.addCleanup(self.cluster.kubectl, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false",
                        check=False)
        self.addCleanup(self.cluster.kubectl, "delete", "services,endpointslices,pods", "--all", "-n", NAMESPACE,
                        "--ignore-not-found", "--wait=false", check=False)
        self.box.build()
        self.box.add_pods(PODS)
        self.cluster.attach(self.box.node)
        servers = []
        self.ready_servers = {}
        for pod in PODS:
            servers.append(self.box.start_echo(pod.ns, f"[::]:{ECHO_PORT}", id=ep(pod), wait=False))
            self.ready_servers[pod.name] = self.box.start_echo(pod.ns, f"[::]:{PROBE['port']}",
                                                               id=f"ready-{pod.name}", wait=False)
        self.box.wait_ready([*servers, *self.ready_servers.values()])
        self.agent = labnode.start_agent(self.box, self.cluster, NODE, sb.NODE_V4, [
            labnode.pod_config(p.name, NAMESPACE, [p.v4], labels={"app": "web", "pod-template-hash": "7c9d2"},
                               ports=[{"name": "http", "containerPort": ECHO_PORT}], probe=PROBE) for p in PODS])
        labnode.wait_registered(self.agent, [p.name for p in PODS])
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NAMESPACE},
                   "spec": {"selector": {"app": "web"},
                            "ports": [{"name": "http", "port": 80, "targetPort": ECHO_PORT}]}}
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(service))
        labnode.wait_slices(self.cluster, NAMESPACE, {"web": {p.name: True for p in PODS}}, 30)
        self.daemon = sb.Daemon(labnode.start_svcproxy(self.box, SVCPROXY, self.cluster, NODE, sb.NODE_V4,
                                                       sb.CLUSTER_CIDRS[0]))
        self.daemon.wait_sync(reason="start", timeout=60)

    def test_watch_reports_the_drain_of_a_pod_turned_unready(self):
        box, victim = self.box, PODS[1]
        report_path = self.tmp / "report.json"
        run = box.spawn(box.node, [SVCPROXY, "loadtest", f"{NAMESPACE}/web:http",
                                   "--kubeconfig", str(self.cluster.kubeconfig), "--hostname-override", NODE,
                                   "--node-ip", sb.NODE_V4, "--cluster-cidr", sb.CLUSTER_CIDRS[0],
                                   "--watch", "--mode", "connect", "--duration", f"{DURATION_S}s",
                                   "--concurrency", "4", "--json", str(report_path)],
                        name="loadtest-watch", lines_from="stderr")
        self.addCleanup(run.stop)
        resolved = run.lines.wait_for(rf"^svcproxy: loadtest: {NAMESPACE}/web", timeout=30,
                                      what="the resolved target")
        self.assertIn("left out: -", run.lines.snapshot(resolved)[0], "every pod starts in the expected set")
        # Traffic is flowing once a progress line is out (~1 s in).
        run.lines.wait_for(r"req/s", start=resolved, timeout=15, what="a progress line")

        daemon_mark = self.daemon.mark()
        stopped_at = time.time()
        server = self.ready_servers[victim.name]
        server.proc.terminate()
        server.proc.wait(timeout=5)
        sync = self.daemon.wait_sync(after=daemon_mark, reason="api-changed", timeout=15)
        seen = run.lines.wait_for(r"watch: endpoints changed at", start=resolved, timeout=15,
                                  what="the load test's watch line")
        self.assertEqual(run.proc.wait(timeout=DURATION_S + 30), 0, "\n".join(run.lines.snapshot()))

        line = run.lines.snapshot(seen)[0]
        self.assertIn(f"removed {ep(victim)}; added -", line)
        changed_at = datetime.strptime(re.search(r"changed at (\S+):", line).group(1),
                                       "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
        report = json.loads(report_path.read_text())
        log = "\n".join(run.lines.snapshot())
        self.assertEqual(report["errors"], {"refused": 0, "timeout": 0, "reset": 0, "other": 0, "udp_lost": 0},
                         report["error_samples"])
        # The load test and the daemon follow the API each with its own
        # informer; when the load test's sees the change first, the pod's
        # answers until the daemon's sync count as violations (the race
        # test_loadtest_service.py avoids by both reading one manifests
        # directory). So: none from any other pod, and the pod's own all come
        # within the drain, which is bounded below.
        self.assertLessEqual({v["endpoint"] for v in report["violations"]}, {ep(victim)}, log)
        self.assertEqual({v["reason"] for v in report["violations"]} - {"unready"}, set(), report["violations"])
        self.assertEqual(len(report["changes"]), 1, report["changes"])
        change = report["changes"][0]
        self.assertEqual(change["removed"], [ep(victim)])
        self.assertEqual(change["added"], [])
        # Every pod answered before the change, conntrack attributing every connection.
        endpoints = report["endpoints"]
        self.assertEqual(set(endpoints), {ep(p) for p in PODS}, endpoints)
        self.assertEqual(sum(e["count"] for e in endpoints.values()), report["answers"], report["warnings"])
        for pod in PODS:
            self.assertLess(endpoints[ep(pod)]["first_at_us"], change["at_us"], pod.name)
        # The others kept serving after it.
        for pod in (PODS[0], PODS[2]):
            self.assertGreater(endpoints[ep(pod)]["last_at_us"], change["at_us"], pod.name)
        # The drain is measured and small; the run went on well past it.
        self.assertIsNotNone(change["drain_us"], change)
        self.assertAlmostEqual(endpoints[ep(victim)]["last_at_us"] - change["at_us"], change["drain_us"], delta=2)
        self.assertLess(change["drain_us"], DRAIN_MARGIN_S * 1e6, change)
        if report["violations"]:
            self.assertGreater(change["drain_us"], 0, "violating answers came after the change")
        self.assertGreater(report["duration_s"] * 1e6 - change["at_us"], 2 * DRAIN_MARGIN_S * 1e6,
                           "the change came too late in the run to tell a drain from the end")
        last_answer = changed_at + change["drain_us"] / 1e6
        self.assertLessEqual(last_answer, sync.time + DRAIN_MARGIN_S,
                             f"{victim.name}'s last answer {last_answer:.6f}, daemon sync done {sync.time:.6f}")
        print(f"\nloadtest --watch (API): readiness server of {victim.name} stopped at {stopped_at:.3f}; "
              f"svcproxy sync +{sync.time - stopped_at:.3f} s, load test saw the change "
              f"+{changed_at - stopped_at:.3f} s, drain {change['drain_us'] / 1000:+.2f} ms; "
              f"{report['answers']} answers in {report['duration_s']:.1f} s, 0 errors, "
              f"{sum(v['count'] for v in report['violations'])} violating answers (from it, within the drain)",
              file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
