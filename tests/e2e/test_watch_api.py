"""End-to-end: svcproxy and the real kubectl against the fixture API server
(tests/fixtures/apiserver.py) over TLS.

  - kubectl agrees with the fixture: `get services,endpointslices -A -o json`
    prints exactly the fixture's objects, and `get services -A --watch` shows
    a service created while it watches (skipped when kubectl is absent);
  - `svcproxy rules --kubeconfig` compiles the same ruleset as
    `svcproxy rules --manifests` on kubectl's JSON of the same cluster;
  - unreachable server, rejected token and failed TLS verification exit 1
    with one line on stderr and no ruleset;
  - exec credential plugins (shell scripts, found relative to the
    kubeconfig): a token plugin gives the same ruleset, an expired token runs
    the plugin again, a failing one exits 1 quoting its stderr, an
    auth-provider is one line naming its replacement.

Needs python3 and openssl; no root. Run:
SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_watch_api (from tests/e2e).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("SVCPROXY_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SVCPROXY = os.environ.get("SVCPROXY_BIN", str(SOURCE_DIR / "build" / "svcproxy"))
sys.path.insert(0, str(SOURCE_DIR / "tests" / "fixtures"))
import apiserver  # noqa: E402

KUBECTL = shutil.which("kubectl")
NODE = ["--hostname-override", "node-a", "--node-ip", "192.168.50.2"]


def service(ns, name, ip, port, node_port=None, **spec):
    p = {"name": "http", "protocol": "TCP", "port": port, "targetPort": 8080}
    if node_port:
        p["nodePort"] = node_port
    body = {"metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"type": "NodePort" if node_port else "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [p], **spec}}
    return body


def slice_(ns, name, svc, ips, node="node-a"):
    return {"metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": node, "zone": "z1"} for ip in ips],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}


class WatchApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="svcproxy-api-")
        cls.pki = apiserver.generate_pki(os.path.join(cls.tmp, "pki"))
        cls.fixture = apiserver.Fixture(bookmark_interval=0.5)
        cls.server, cls.url = apiserver.serve(cls.fixture, cls.pki)
        fx = cls.fixture
        fx.apply("services", service("shop", "web", "10.96.0.10", 80, node_port=30080))
        fx.apply("services", service("shop", "api", "10.96.0.11", 9090, sessionAffinity="ClientIP"))
        fx.apply("services", service("shop", "headless", "None", 80))
        fx.apply("endpointslices", slice_("shop", "web-1", "web", ["10.244.0.5", "10.244.1.6"]))
        fx.apply("endpointslices", slice_("shop", "api-1", "api", ["10.244.0.7"], node="node-b"))
        fx.apply("nodes", {"metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "z1"}},
                           "spec": {"podCIDRs": ["10.244.0.0/24"]},
                           "status": {"addresses": [{"type": "InternalIP", "address": "192.168.50.2"}]}})
        fx.apply("servicecidrs", {"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/16"]}})
        cls.kubeconfig = apiserver.write_kubeconfig(os.path.join(cls.tmp, "kubeconfig"), cls.url,
                                                    ca=cls.pki["ca_crt"], token="test-token")

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def svcproxy(self, *args, timeout=60):
        return subprocess.run([SVCPROXY, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)  # no terminal: exec plugins are not interactive

    # -- kubectl agrees with the fixture --

    def kubectl(self, *args):
        if not KUBECTL:
            self.skipTest("kubectl is not installed (not in Debian's archive); the fixture is checked by svcproxy only")
        return subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                              timeout=60)

    def test_kubectl_get_json_matches_the_fixture(self):
        out = self.kubectl("get", "services,endpointslices", "-A", "-o", "json")
        self.assertEqual(out.returncode, 0, out.stderr)
        items = json.loads(out.stdout)["items"]
        got = sorted((i["kind"], i["apiVersion"], i["metadata"]["namespace"], i["metadata"]["name"],
                      i["metadata"]["resourceVersion"]) for i in items)
        want = []
        for resource, kind in (("services", "Service"), ("endpointslices", "EndpointSlice")):
            for o in self.fixture.list_body(resource)["items"]:
                want.append((kind, apiserver.api_version(resource), o["metadata"]["namespace"],
                             o["metadata"]["name"], o["metadata"]["resourceVersion"]))
        self.assertEqual(got, sorted(want))
        web = next(i for i in items if i["metadata"]["name"] == "web")
        self.assertEqual(web["spec"]["ports"][0]["nodePort"], 30080)

    def test_kubectl_watch_sees_a_new_service(self):
        if not KUBECTL:
            self.skipTest("kubectl is not installed (not in Debian's archive)")
        proc = subprocess.Popen([KUBECTL, "--kubeconfig", self.kubeconfig, "get", "services", "-A", "--watch",
                                 "--request-timeout", "30s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        seen = threading.Event()
        listed = threading.Event()

        def read():
            for line in proc.stdout:
                lines.append(line)
                if "api" in line:
                    listed.set()
                if "watched" in line:
                    seen.set()
        threading.Thread(target=read, daemon=True).start()
        try:
            self.assertTrue(listed.wait(30), "kubectl listed nothing: %r %s" % (lines, proc.stderr))
            self.fixture.apply("services", service("shop", "watched", "10.96.0.77", 8080))
            self.assertTrue(seen.wait(30), "kubectl did not print the new service: %r" % lines)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            self.fixture.delete("services", "shop", "watched")
        row = next(line for line in lines if "watched" in line).split()
        self.assertEqual(row[:2], ["shop", "watched"])

    # -- svcproxy --

    def cluster_items(self):
        """The fixture's cluster as kubectl-shaped objects (with kind)."""
        items = []
        for resource in ("services", "endpointslices", "nodes", "servicecidrs"):
            for o in self.fixture.list_body(resource)["items"]:
                items.append(dict(o, kind=apiserver.RESOURCES[resource][2], apiVersion=apiserver.api_version(resource)))
        return items

    def manifests_file(self):
        # What the API server filters (headless services) is not in the files either.
        items = [o for o in self.cluster_items()
                 if not (o["kind"] == "Service" and o["spec"].get("clusterIP") == "None")]
        manifests = os.path.join(self.tmp, "cluster.json")
        with open(manifests, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
        return manifests

    def test_run_once_in_a_netns_programs_what_rules_manifests_prints(self):
        if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
            self.skipTest("needs root, ip and nft (a network namespace)")
        ns = "svcproxy-watch-%d" % os.getpid()
        subprocess.run(["ip", "netns", "add", ns], check=True)
        proc = None
        try:
            def in_ns(*argv):
                return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=120)
            in_ns("ip", "link", "set", "lo", "up")
            in_ns("ip", "link", "add", "eth0", "type", "dummy")
            in_ns("ip", "addr", "add", "192.168.50.2/24", "dev", "eth0")
            in_ns("ip", "link", "set", "eth0", "up")
            # The same cluster served from inside the namespace.
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, apiserver.__file__, "--pki",
                                     os.path.dirname(self.pki["ca_crt"])], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
            url = json.loads(proc.stdout.readline())["url"]
            for o in self.cluster_items():
                resource = next(r for r, spec in apiserver.RESOURCES.items() if spec[2] == o["kind"])
                proc.stdin.write(json.dumps({"op": "apply", "resource": resource, "object": o}) + "\n")
                proc.stdin.flush()
                self.assertTrue(json.loads(proc.stdout.readline())["ok"])
            kc = apiserver.write_kubeconfig(os.path.join(self.tmp, "kc-netns"), url, ca=self.pki["ca_crt"],
                                            token="test-token")
            once = in_ns(SVCPROXY, "run", "--once", "--kubeconfig", kc, *NODE)
            self.assertEqual(once.returncode, 0, once.stderr)
            live = in_ns(SVCPROXY, "rules", "--live")
            files = in_ns(SVCPROXY, "rules", "--manifests", self.manifests_file(), *NODE)
            self.assertEqual(files.returncode, 0, files.stderr)
            self.assertTrue(live.stdout.strip(), live.stderr)
            self.assertEqual(live.stdout, files.stdout)
        finally:
            if proc:
                proc.kill()
                proc.wait()
                proc.stdin.close()
                proc.stdout.close()
            subprocess.run(["ip", "netns", "del", ns])

    def test_rules_from_the_api_equal_rules_from_manifests(self):
        live = self.svcproxy("rules", "--kubeconfig", self.kubeconfig, *NODE)
        self.assertEqual(live.returncode, 0, live.stderr)
        files = self.svcproxy("rules", "--manifests", self.manifests_file(), *NODE)
        self.assertEqual(files.returncode, 0, files.stderr)
        self.assertEqual(live.stdout, files.stdout)
        self.assertIn("10.96.0.10", live.stdout)
        trace = self.svcproxy("trace", "--kubeconfig", self.kubeconfig, *NODE, "--src", "192.168.50.9",
                              "--dst", "10.96.0.10", "--dport", "80")
        self.assertEqual(trace.returncode, 0, trace.stderr)
        self.assertIn("10.244.0.5", trace.stdout)

    def test_master_overrides_the_server(self):
        bad = apiserver.write_kubeconfig(os.path.join(self.tmp, "kc-wrong-server"), "https://127.0.0.1:1",
                                         ca=self.pki["ca_crt"], token="test-token")
        out = self.svcproxy("rules", "--kubeconfig", bad, "--master", self.url, *NODE)
        self.assertEqual(out.returncode, 0, out.stderr)

    def assert_one_line_failure(self, out, needle):
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertEqual(out.stdout, "")
        lines = out.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, out.stderr)
        self.assertIn(needle, lines[0])

    def test_failures_are_one_line(self):
        refused = apiserver.write_kubeconfig(os.path.join(self.tmp, "kc-refused"), "https://127.0.0.1:1",
                                             ca=self.pki["ca_crt"], token="test-token")
        self.assert_one_line_failure(self.svcproxy("rules", "--kubeconfig", refused, "--request-timeout", "2s", *NODE),
                                     "connection refused")
        token = apiserver.write_kubeconfig(os.path.join(self.tmp, "kc-token"), self.url, ca=self.pki["ca_crt"],
                                           token="wrong")
        self.assert_one_line_failure(self.svcproxy("rules", "--kubeconfig", token, *NODE), "401 Unauthorized")
        tls = apiserver.write_kubeconfig(os.path.join(self.tmp, "kc-tls"), self.url, ca=self.pki["other-ca_crt"],
                                         token="test-token")
        self.assert_one_line_failure(self.svcproxy("trace", "--kubeconfig", tls, *NODE, "--src", "192.168.50.9",
                                                   "--dst", "10.96.0.10", "--dport", "80"),
                                     "certificate verify failed")
        both = self.svcproxy("rules", "--kubeconfig", self.kubeconfig, "--manifests", "x", *NODE)
        self.assertEqual(both.returncode, 2, both.stderr)

    def test_client_certificate_inline(self):
        kc = apiserver.write_kubeconfig(os.path.join(self.tmp, "kc-cert"), self.url.replace("127.0.0.1", "localhost"),
                                        ca=self.pki["ca_crt"], client_crt=self.pki["client_crt"],
                                        client_key=self.pki["client_key"], inline=True)
        out = self.svcproxy("rules", "--kubeconfig", kc, *NODE)
        self.assertEqual(out.returncode, 0, out.stderr)

    # -- exec credential plugins --

    def exec_kubeconfig(self, name, script, api_version="client.authentication.k8s.io/v1"):
        """A kubeconfig in its own directory whose user runs ./plugin (a path
        relative to the kubeconfig, as kubectl resolves it)."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        plugin = os.path.join(d, "plugin")
        with open(plugin, "w") as f:
            f.write("#!/bin/sh\n" + script)
        os.chmod(plugin, 0o755)
        exec_ = {"apiVersion": api_version, "command": "./plugin", "args": ["get-token", name],
                 "env": [{"name": "RUNS", "value": os.path.join(d, "runs")}], "interactiveMode": "IfAvailable"}
        kubeconfig = os.path.join(d, "kubeconfig")
        return apiserver.write_kubeconfig(kubeconfig, self.url, ca=self.pki["ca_crt"], exec_=exec_), d

    @staticmethod
    def token_script(expiry, api_version="client.authentication.k8s.io/v1"):
        return ('echo "$2 $KUBERNETES_EXEC_INFO" >> "$RUNS"\n'
                'printf \'{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"test-token",'
                '"expirationTimestamp":"%s"}}\' "' + api_version + '" "' + expiry + '"\n')

    def runs(self, d):
        with open(os.path.join(d, "runs")) as f:
            return f.read().splitlines()

    def test_exec_plugin_token_gives_the_same_rules(self):
        want = self.svcproxy("rules", "--kubeconfig", self.kubeconfig, *NODE)
        self.assertEqual(want.returncode, 0, want.stderr)
        kc, d = self.exec_kubeconfig("exec-lasting", self.token_script("2999-01-01T00:00:00Z"))
        out = self.svcproxy("rules", "--kubeconfig", kc, *NODE)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, want.stdout)
        self.assertNotIn("test-token", out.stderr)
        runs = self.runs(d)
        self.assertEqual(len(runs), 1, runs)  # cached for every request of the list
        # stdin is no terminal: not interactive
        self.assertEqual(runs[0], 'exec-lasting {"kind":"ExecCredential",'
                                  '"apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}')

    def test_exec_plugin_expired_token_runs_it_again(self):
        kc, d = self.exec_kubeconfig("exec-expired", self.token_script(
            "2000-01-01T00:00:00Z", "client.authentication.k8s.io/v1beta1"), "client.authentication.k8s.io/v1beta1")
        out = self.svcproxy("rules", "--kubeconfig", kc, *NODE)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertGreaterEqual(len(self.runs(d)), 2)

    def test_exec_plugin_failures_are_one_line(self):
        kc, _ = self.exec_kubeconfig("exec-failing", "echo 'error: SSO session expired' >&2\n"
                                                     "echo '  run: aws sso login' >&2\nexit 1\n")
        out = self.svcproxy("rules", "--kubeconfig", kc, *NODE)
        self.assert_one_line_failure(out, 'failed with exit code 1: "error: SSO session expired run: aws sso login"')
        self.assertIn("/exec-failing/plugin\"", out.stderr)
        kc, _ = self.exec_kubeconfig("exec-version", self.token_script("2999-01-01T00:00:00Z"),
                                     "client.authentication.k8s.io/v1beta1")
        self.assert_one_line_failure(self.svcproxy("rules", "--kubeconfig", kc, *NODE),
                                     'returned apiVersion "client.authentication.k8s.io/v1"')
        missing = apiserver.write_kubeconfig(
            os.path.join(self.tmp, "kc-missing-plugin"), self.url, ca=self.pki["ca_crt"],
            exec_={"apiVersion": "client.authentication.k8s.io/v1beta1",
                   "command": "svcproxy-no-such-plugin",
                   "installHint": "Install it:\n  apt install svcproxy-no-such-plugin"})
        self.assert_one_line_failure(self.svcproxy("rules", "--kubeconfig", missing, *NODE),
                                     "not found in $PATH; Install it: apt install svcproxy-no-such-plugin")

    def test_auth_provider_is_one_line_naming_the_replacement(self):
        kc = os.path.join(self.tmp, "kc-auth-provider")
        apiserver.write_kubeconfig(kc, self.url, ca=self.pki["ca_crt"])
        with open(kc) as f:
            config = json.load(f)
        config["users"][0]["user"]["auth-provider"] = {"name": "gcp", "config": {"access-token": "x"}}
        with open(kc, "w") as f:
            json.dump(config, f)
        out = self.svcproxy("rules", "--kubeconfig", kc, *NODE)
        self.assert_one_line_failure(out, 'auth-provider "gcp" was removed from kubectl')
        self.assertIn("use the exec plugin gke-gcloud-auth-plugin", out.stderr)


if __name__ == "__main__":
    unittest.main()
