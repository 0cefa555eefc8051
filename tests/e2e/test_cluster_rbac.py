"""End-to-end against a real control plane: deploy/daemonset.yaml's RBAC is
enough for svcproxy and nothing more.

The ServiceAccount, ClusterRole and ClusterRoleBinding from
deploy/daemonset.yaml are applied to the real kube-apiserver
(tests/cluster/cluster.py; reused if `./dev cluster up` started it, else
started and stopped here), and the account is issued a token through the
TokenRequest API (`kubectl create token`). Then:

  - svcproxy runs as the node daemon with only that token (kubeconfig with
    the lab CA and the token): it lists and watches everything it needs,
    programs a Service created through the apiserver, and traffic through
    the ClusterIP reaches the pod; a Service added later is programmed too
    (the watch works). Its log holds no 403.
  - Requests outside the role, with the same token, get 403 Forbidden:
    reading pods or secrets, writing a Service or an EndpointSlice.

Needs root (network namespaces), openssl and the cluster binaries (see
test_cluster_readiness.py). Run: SVCPROXY_BIN=build/svcproxy python3 -m
unittest -v test_cluster_rbac (from tests/e2e).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from sandbox import SOURCE_DIR, SVCPROXY  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import cluster as lab  # noqa: E402

DAEMONSET = SOURCE_DIR / "deploy" / "daemonset.yaml"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
NAMESPACE = f"rbac-{os.getpid()}"
NODE = f"rbac-{os.getpid()}-node"
POD = sb.Pod("backend", 1, node=NODE)
CLUSTER = lab.ForTests()


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    CLUSTER.set_up_module()


def tearDownModule():
    CLUSTER.release()


def rbac_documents() -> str:
    """The RBAC objects of deploy/daemonset.yaml, as written there."""
    docs = re.split(r"^---\s*$", DAEMONSET.read_text(), flags=re.MULTILINE)
    chosen = [d for d in docs if re.search(r"^kind: (\w+)$", d, re.MULTILINE)
              and re.search(r"^kind: (\w+)$", d, re.MULTILINE).group(1) in RBAC_KINDS]
    return "\n---\n".join(chosen)


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def endpoint_slice(name: str) -> dict:
    """Hand-written (the Service has no selector), as a controller would write it."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "lab.svcproxy.invalid"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [POD.v4], "nodeName": NODE,
                           "conditions": {"ready": True, "serving": True, "terminating": False}}],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}


class TestServiceAccountRole(unittest.TestCase):

    def setUp(self):
        self.cluster = CLUSTER.cluster
        self.box = sb.Sandbox(SVCPROXY)
        self.addCleanup(self.box.close)
        # No namespace controller runs: the namespace's objects go first, or a reused cluster keeps them.
        self.addCleanup(self.cluster.kubectl, "delete", "namespace", NAMESPACE, "--ignore-not-found",
                        "--wait=false", check=False)
        self.addCleanup(self.cluster.kubectl, "delete", "services,endpointslices,pods", "--all", "-n", NAMESPACE,
                        "--ignore-not-found", "--wait=false", check=False)
        self.box.build()
        self.box.add_pods([POD])
        self.cluster.attach(self.box.node)
        self.box.start_echo(POD.ns, "[::]:8080", id=POD.name)
        self.cluster.kubectl("apply", "-f", "-", input=rbac_documents())
        self.cluster.kubectl("create", "namespace", NAMESPACE)
        token = self.cluster.kubectl("create", "token", "svcproxy", "-n", "kube-system",
                                     "--duration=1h").stdout.strip()
        self.assertRegex(token, r"^[\w-]+\.[\w-]+\.[\w-]+$", "TokenRequest returns a JWT")
        info = self.cluster.info()
        self.kubeconfig = self.box.workdir / "svcproxy.kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "lab", "cluster": {"server": info["server"], "certificate-authority": info["ca"]}}],
            "users": [{"name": "svcproxy", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "lab", "user": "svcproxy"}}]}))

    def as_svcproxy(self, *args: str, input: str | None = None):
        """kubectl with the service account's token only (the admin credentials are not used)."""
        kubectl = Path(self.cluster.info()["k8s_bin"]) / "kubectl"
        return lab.run(["ip", "netns", "exec", lab.NETNS, str(kubectl), f"--kubeconfig={self.kubeconfig}", *args],
                       input=input, check=False)

    def cluster_ip(self, name: str) -> str:
        return self.cluster.kubectl("get", "service", "-n", NAMESPACE, name,
                                    "-o", "jsonpath={.spec.clusterIP}").stdout.strip()

    def test_daemon_works_with_the_role_and_nothing_more(self):
        box = self.box
        objects = {"apiVersion": "v1", "kind": "List", "items": [service("first"), endpoint_slice("first")]}
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(objects))
        argv = [SVCPROXY, "run", "--kubeconfig", str(self.kubeconfig), "--hostname-override", NODE,
                "--node-ip", sb.NODE_V4, "--cluster-cidr", sb.CLUSTER_CIDRS[0],
                "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249"]
        daemon = sb.Daemon(box.spawn(box.node, argv, name="daemon", lines_from="stderr", stdin=False))
        daemon.wait_sync(reason="start", timeout=60)
        first = box.request(box.ext, self.cluster_ip("first"), 80, count=5)
        self.assertEqual(first.outcomes, {"reply": 5}, first.errors)
        self.assertEqual(set(first.ids), {POD.name})

        objects["items"] = [service("second"), endpoint_slice("second")]
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(objects))
        second_ip = self.cluster_ip("second")
        # Until the watch delivers it, the ClusterIP leaves by the default route (the sink answers).
        deadline = time.monotonic() + 20
        while box.request(box.ext, second_ip, 80, count=1, timeout=0.5).ids != [POD.name]:
            self.assertLess(time.monotonic(), deadline, "the second Service was never programmed")
        second = box.request(box.ext, second_ip, 80, count=5)
        self.assertEqual(second.outcomes, {"reply": 5}, second.errors)
        forbidden = [line for line in daemon.lines.snapshot() if "403" in line or "orbidden" in line]
        self.assertEqual(forbidden, [], "the role must cover every request svcproxy makes")

        allowed = self.as_svcproxy("get", "services,endpointslices", "-n", NAMESPACE, "-o", "name")
        self.assertEqual(allowed.returncode, 0, allowed.stderr)
        outside = {
            "list pods": ("get", "pods", "-A"),
            "read secrets": ("get", "secrets", "-n", "kube-system"),
            "create a Service": ("create", "service", "clusterip", "intruder", "--tcp=80:80", "-n", NAMESPACE),
            "delete an EndpointSlice": ("delete", "endpointslice", "first-1", "-n", NAMESPACE),
            "create a Namespace": ("create", "namespace", f"{NAMESPACE}-intruder"),
        }
        for what, args in outside.items():
            with self.subTest(what):
                result = self.as_svcproxy(*args)
                self.assertNotEqual(result.returncode, 0, f"{what} was allowed: {result.stdout}")
                # The apiserver's 403 Status message (kubectl prints it with or without "(Forbidden)").
                self.assertIn('forbidden: User "system:serviceaccount:kube-system:svcproxy" cannot', result.stderr,
                              f"{what}: not a 403: {result.stderr}")


if __name__ == "__main__":
    unittest.main()
