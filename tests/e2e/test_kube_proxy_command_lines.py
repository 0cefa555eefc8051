"""End-to-end: real-world kube-proxy command lines and configuration files
(tests/fixtures/kube-proxy/: kubeadm's default KubeProxyConfiguration, a
kops-style flag set, the EKS add-on's ConfigMap) start `svcproxy run`
unchanged, and the daemon serves a Service with only the expected warnings.

The lab node's namespace runs the fixture API server (tests/fixtures/
apiserver.py, TLS, on port 443) holding the lab's Node, one Service and its
EndpointSlice (two pods). Each case's command is run as written, with
`kube-proxy` replaced by `svcproxy run` and `$(NODE_NAME)` by the node's name
(as the kubelet substitutes it), in a private mount namespace where
/var/lib is a fresh tmpfs holding the case's files at their real paths (its
config file, and the kubeconfig a cluster would hand it, written here: it
points at the fixture) and, for kops, /etc/hosts names the API server's
internal host. Then:

  - the first sync is done and TCP connections to the ClusterIP from the
    node reach both pods;
  - the W lines are exactly the case's expected-warnings, apart from the
    conntrack limit, which is global and so left as it is in a test
    namespace (test_conntrack_sysctls covers that line);
  - --oom-score-adj / oomScoreAdj, where given, is the daemon's OOM score
    (where this machine lets root lower it: CAP_SYS_RESOURCE; else the
    daemon's info line says it was left as it is).

Needs root (network namespaces) and openssl; skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_kube_proxy_command_lines (from tests/e2e).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import apiserver  # noqa: E402
import sandbox as sb  # noqa: E402
from sandbox import SVCPROXY, Pod  # noqa: E402

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "kube-proxy"
PODS = [Pod("p1", 1), Pod("p2", 2)]
CLUSTER_IP = "10.96.0.10"
TOKEN = "test-token"
_KLOG_MESSAGE = re.compile(r"^W\S+ \S+\s+\d+ \S+\] (.*)$")
# Environment, not configuration: a test namespace cannot change the global limit.
_GLOBAL_LIMIT = re.compile(r'^conntrack sysctl left as it is sysctl="(net/netfilter/nf_conntrack_max|'
                           r'module/nf_conntrack/parameters/hashsize)"')


class Env:
    can_lower_oom_score = False  # needs CAP_SYS_RESOURCE, not everywhere root has it
    box: sb.Sandbox | None = None
    fixture: subprocess.Popen | None = None
    pki: Path | None = None


def fixture_call(op: str, **args) -> dict:
    Env.fixture.stdin.write(json.dumps({"op": op, **args}) + "\n")
    Env.fixture.stdin.flush()
    reply = json.loads(Env.fixture.stdout.readline())
    if not reply.get("ok"):
        raise AssertionError(f"fixture {op}: {reply}")
    return reply


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    if not shutil.which("openssl") or not shutil.which("unshare"):
        raise unittest.SkipTest("needs openssl and unshare")
    Env.can_lower_oom_score = subprocess.run(["sh", "-c", "echo -998 > /proc/self/oom_score_adj"],
                                             capture_output=True).returncode == 0
    Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(8080, "tcp")])
    Env.pki = Env.box.workdir / "pki"
    Env.fixture = subprocess.Popen(["ip", "netns", "exec", Env.box.node, sys.executable, apiserver.__file__,
                                    "--pki", str(Env.pki), "--port", "443"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    json.loads(Env.fixture.stdout.readline())  # {"port": 443, ...}: listening
    fixture_call("apply", resource="nodes", object={
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": sb.NODE_NAME},
        "status": {"addresses": [{"type": "InternalIP", "address": sb.NODE_V4}]}})
    fixture_call("apply", resource="services", object={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP],
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}})
    fixture_call("apply", resource="endpointslices", object={
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [pod.ip(4)], "conditions": {"ready": True, "serving": True, "terminating": False},
                       "nodeName": sb.NODE_NAME} for pod in Env.box.pods.values()],
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]})


def tearDownModule():
    if Env.fixture:
        Env.fixture.kill()
        Env.fixture.wait()
        Env.fixture.stdin.close()
        Env.fixture.stdout.close()
        Env.fixture = None
    sb.close_env(Env)


class KubeProxyCommandLines(unittest.TestCase):
    def run_case(self, name: str) -> None:
        case = json.loads((CASES / name / "case.json").read_text())
        box = Env.box
        stage = box.workdir / f"case-{name}"
        root = stage / "var-lib"
        # The case's files at their real paths (all under /var/lib).
        for target, source in case["files"].items():
            dest = root / Path(target).relative_to("/var/lib")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CASES / name / source, dest)
        kubeconfig = root / Path(case["kubeconfig"]).relative_to("/var/lib")
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        # What the cluster hands kube-proxy: the API server and credentials
        # (the fixture's certificate names "kubernetes").
        apiserver.write_kubeconfig(str(kubeconfig), "https://127.0.0.1:443", ca=str(Env.pki / "ca.crt"),
                                   token=TOKEN, inline=True, tls_server_name="kubernetes")
        script = ["set -e", "mount --make-rprivate /", "mount -t tmpfs tmpfs /var/lib",
                  f"cp -a {shlex.quote(str(root))}/. /var/lib/"]
        if "master-host" in case:
            hosts = stage / "hosts"
            hosts.write_text(f"127.0.0.1 localhost {case['master-host']}\n")
            script.append(f"mount --bind {shlex.quote(str(hosts))} /etc/hosts")
        script.append(f'exec {shlex.quote(SVCPROXY)} run "$@"')
        command = case["command"]
        self.assertEqual(command[0], "kube-proxy")
        args = [a.replace("$(NODE_NAME)", sb.NODE_NAME) for a in command[1:]]
        proc = box.spawn(box.node, ["unshare", "-m", "sh", "-c", "\n".join(script), "sh", *args],
                         name=f"svcproxy-{name}", lines_from="stderr", stdin=False)
        daemon = sb.Daemon(proc)
        try:
            daemon.wait_sync(reason="start", timeout=30)
            result = box.request(box.node, CLUSTER_IP, 80, count=20)
            self.assertEqual(result.outcomes.get("reply"), 20, result.raw)
            self.assertEqual({i.split(":")[0] for i in result.ids}, {"p1", "p2"}, result.raw)
            lines = daemon.lines.snapshot(0)
            warnings = [m.group(1) for m in map(_KLOG_MESSAGE.match, lines) if m]
            warnings = [w for w in warnings if not _GLOBAL_LIMIT.match(w)]
            self.assertEqual(warnings, case["expected-warnings"], "\n".join(lines))
            oom = next((a.split("=", 1)[1] for a in args if a.startswith("--oom-score-adj=")), None)
            if name == "eks":
                oom = "-998"  # oomScoreAdj in its config file
            if oom is not None and Env.can_lower_oom_score:
                self.assertEqual(Path(f"/proc/{daemon.pid}/oom_score_adj").read_text().strip(), oom)
            elif oom is not None:  # tried, and said so (an info line, as kube-proxy's)
                self.assertTrue(any(f"oom_score_adj left as it is value={oom}" in line for line in lines),
                                "\n".join(lines))
        finally:
            rc, _ = daemon.stop()
        self.assertEqual(rc, 0, "\n".join(daemon.lines.snapshot(0)))

    def test_kubeadm_default_config(self):
        self.run_case("kubeadm")

    def test_kops_flags(self):
        self.run_case("kops")

    def test_eks_addon_config(self):
        self.run_case("eks")


if __name__ == "__main__":
    unittest.main()
