"""Deployment artifacts: deploy/*.yaml through `kubectl apply --dry-run=client`,
their content (RBAC, capabilities, probes, config mount), the systemd unit,
and the Debian package built by `cpack -G DEB` (contents, Depends complete for
every library the binary links, the unit's ExecStart).

kubectl's client-side dry run still asks a server for API discovery (which
kinds exist, namespaced or not) and GETs each object to decide between create
and patch. No cluster here: a small in-process server answers discovery for
the kinds deploy/ uses and 404 for every object, so every object must print
"created (dry run)". Schema validation needs the server's OpenAPI document, so
it is off (--validate=false); the content checks below cover what matters.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("SVCPROXY_SOURCE_DIR", Path(__file__).resolve().parents[2]))
DEPLOY = SOURCE_DIR / "deploy"
KUBECTL = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)

# group -> (version, [(resource, kind, namespaced)]): what deploy/ may use.
DISCOVERY = {
    "": ("v1", [("serviceaccounts", "ServiceAccount", True), ("configmaps", "ConfigMap", True),
                ("services", "Service", True), ("namespaces", "Namespace", False), ("nodes", "Node", False)]),
    "apps": ("v1", [("daemonsets", "DaemonSet", True)]),
    "rbac.authorization.k8s.io": ("v1", [("clusterroles", "ClusterRole", False),
                                         ("clusterrolebindings", "ClusterRoleBinding", False)]),
}


class DiscoveryHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                       "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                      for g, (v, _) in DISCOVERY.items() if g]
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for group, (version, resources) in DISCOVERY.items():
            gv = f"{group}/{version}" if group else version
            if path == (f"/apis/{gv}" if group else "/api/v1"):
                return self.reply(200, {
                    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": [{"name": r, "singularName": "", "namespaced": ns, "kind": k,
                                   "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                                  for r, k, ns in resources]})
        return self.reply(404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "reason": "NotFound", "code": 404, "message": f"{path} not found"})


@unittest.skipIf(KUBECTL is None, "kubectl not installed: deploy/ manifests not validated")
class Manifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), DiscoveryHandler)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.tmp = tempfile.TemporaryDirectory(prefix="svcproxy-deploy-")
        cls.kubeconfig = Path(cls.tmp.name) / "kubeconfig"
        cls.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{cls.server.server_address[1]}'}}}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n")

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        cls.tmp.cleanup()

    def kubectl_apply(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(Path(self.tmp.name) / "cache"),
             "apply", "--dry-run=client", "--validate=false", "-f", str(DEPLOY), *extra],
            capture_output=True, text=True, timeout=120)

    def objects(self) -> dict:
        r = self.kubectl_apply("-o", "json")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        items = doc["items"] if doc.get("kind") == "List" else [doc]
        return {(o["kind"], o["metadata"]["name"]): o for o in items}

    def test_every_object_is_created_in_a_dry_run(self):
        r = self.kubectl_apply()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(r.stdout.splitlines()), sorted([
            "serviceaccount/svcproxy created (dry run)",
            "clusterrole.rbac.authorization.k8s.io/svcproxy created (dry run)",
            "clusterrolebinding.rbac.authorization.k8s.io/svcproxy created (dry run)",
            "configmap/svcproxy created (dry run)",
            "daemonset.apps/svcproxy created (dry run)",
        ]), r.stderr)

    def test_cluster_role_reads_only_what_svcproxy_watches(self):
        role = self.objects()[("ClusterRole", "svcproxy")]
        grants = set()
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.add((group, resource, verb))
        self.assertEqual(grants, {
            ("", "services", "list"), ("", "services", "watch"),
            ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"),
            ("discovery.k8s.io", "endpointslices", "list"), ("discovery.k8s.io", "endpointslices", "watch"),
            ("networking.k8s.io", "servicecidrs", "list"), ("networking.k8s.io", "servicecidrs", "watch"),
        })
        binding = self.objects()[("ClusterRoleBinding", "svcproxy")]
        self.assertEqual(binding["roleRef"]["name"], "svcproxy")
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "svcproxy",
                                                "namespace": "kube-system"}])

    def test_daemonset_runs_with_host_network_and_only_net_capabilities(self):
        objects = self.objects()
        ds = objects[("DaemonSet", "svcproxy")]
        pod = ds["spec"]["template"]["spec"]
        self.assertTrue(pod["hostNetwork"])
        self.assertEqual(pod["serviceAccountName"], "svcproxy")
        self.assertEqual(
            ds["spec"]["selector"]["matchLabels"].items() - ds["spec"]["template"]["metadata"]["labels"].items(), set())
        (container,) = pod["containers"]
        sc = container["securityContext"]
        self.assertFalse(sc.get("privileged", False))
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(sorted(sc["capabilities"]["add"]), ["NET_ADMIN", "NET_RAW"])
        # No host paths at all (in particular no /lib/modules).
        self.assertFalse([v for v in pod.get("volumes", []) if "hostPath" in v])
        self.assertEqual(container["livenessProbe"]["httpGet"], {"path": "/livez", "port": 10256})
        self.assertEqual(container["readinessProbe"]["httpGet"], {"path": "/healthz", "port": 10256})

        # --config names a file the ConfigMap provides at the mounted path.
        config_args = [a for a in container["command"] if a.startswith("--config=")]
        self.assertEqual(len(config_args), 1)
        config_path = Path(config_args[0].split("=", 1)[1])
        (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        configmap = objects[("ConfigMap", volume["configMap"]["name"])]
        self.assertIn(config_path.name, configmap["data"])
        config = configmap["data"][config_path.name]
        self.assertIn("apiVersion: kubeproxy.config.k8s.io/v1alpha1", config)
        self.assertIn("kind: KubeProxyConfiguration", config)
        self.assertIn("healthzBindAddress: 0.0.0.0:10256", config)

        # The kubeconfig the config names is in the same ConfigMap, and its
        # credentials are the pod's service account (mounted by default).
        (kubeconfig_line,) = [line for line in config.splitlines() if line.strip().startswith("kubeconfig:")]
        kubeconfig_path = Path(kubeconfig_line.split(":", 1)[1].split("#")[0].strip())
        self.assertEqual(kubeconfig_path.parent, config_path.parent)
        kubeconfig = configmap["data"][kubeconfig_path.name]
        self.assertIn("tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token", kubeconfig)
        self.assertIn("certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt", kubeconfig)
        self.assertNotEqual(pod.get("automountServiceAccountToken", True), False)
        # Host network pods resolve with the node's resolver, not cluster DNS.
        self.assertNotIn("dnsPolicy", pod)


class SystemdUnit(unittest.TestCase):
    def unit(self) -> configparser.ConfigParser:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read(DEPLOY / "svcproxy.service")
        return parser

    def test_restarts_and_keeps_only_network_capabilities(self):
        service = self.unit()["Service"]
        self.assertEqual(service["Restart"], "always")
        self.assertTrue(service["ExecStart"].startswith("/usr/bin/svcproxy run "))
        allowed = {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}
        bounding = set(service["CapabilityBoundingSet"].split())
        self.assertTrue({"CAP_NET_ADMIN"} <= bounding <= allowed, bounding)
        self.assertTrue(set(service["AmbientCapabilities"].split()) <= bounding)
        self.assertEqual(service["NoNewPrivileges"], "yes")
        self.assertEqual(service["ProtectSystem"], "strict")

    @unittest.skipIf(shutil.which("systemd-analyze") is None, "systemd-analyze not installed")
    def test_systemd_analyze_verify(self):
        with tempfile.TemporaryDirectory() as tmp:
            # verify wants ExecStart's binary to exist.
            unit = Path(tmp) / "svcproxy.service"
            unit.write_text((DEPLOY / "svcproxy.service").read_text().replace("/usr/bin/svcproxy", "/bin/true"))
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn("svcproxy.service:", r.stderr)


def needed_libraries(binary: Path) -> list[str]:
    out = subprocess.run(["objdump", "-p", str(binary)], capture_output=True, text=True, check=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]


def package_of(path: str) -> str:
    """The Debian package that ships the library at `path` (usr-merged or not)."""
    real = os.path.realpath(path)
    candidates = []
    for p in (path, real):
        candidates += [p, p.replace("/usr/lib/", "/lib/", 1), p.replace("/lib/", "/usr/lib/", 1)]
    for candidate in dict.fromkeys(candidates):
        r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].split(",")[0].strip()
    raise AssertionError(f"no Debian package ships {path}")


def resolved_libraries(binary: Path) -> dict[str, str]:
    """soname -> path, as the dynamic linker resolves them (ldd)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    resolved = {}
    for line in out.splitlines():
        parts = line.strip().split(" => ")
        if len(parts) == 2 and parts[1].startswith("/"):
            resolved[parts[0]] = parts[1].split(" (")[0]
    return resolved


@unittest.skipIf(shutil.which("cpack") is None or shutil.which("dpkg-deb") is None, "cpack or dpkg-deb missing")
class DebianPackage(unittest.TestCase):
    """Configures a fresh build directory, builds only svcproxy and its help
    text, installs it, packages it, and reads the .deb back."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="svcproxy-cpack-")
        cls.build = Path(cls.tmp.name) / "build"
        jobs = os.environ.get("SVCPROXY_PACKAGE_JOBS", "2")

        def run(*cmd, cwd=None):
            r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
            if r.returncode != 0:
                raise AssertionError(f"{' '.join(cmd)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
            return r

        run("cmake", "-S", str(SOURCE_DIR), "-B", str(cls.build), "-DCMAKE_BUILD_TYPE=Release", "-DSVCPROXY_BENCH=OFF")
        run("cmake", "--build", str(cls.build), "-j", jobs, "--target", "svcproxy", "svcproxy_help")
        cls.prefix = Path(cls.tmp.name) / "prefix"
        run("cmake", "--install", str(cls.build), "--prefix", str(cls.prefix))
        run("cpack", "-G", "DEB", cwd=cls.build)
        (cls.deb,) = list(cls.build.glob("svcproxy_*.deb"))
        cls.contents = run("dpkg-deb", "-c", str(cls.deb)).stdout
        cls.fields = {}
        for line in run("dpkg-deb", "-f", str(cls.deb)).stdout.splitlines():
            if ":" in line and not line.startswith(" "):
                key, value = line.split(":", 1)
                cls.fields[key] = value.strip()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def paths(self) -> set[str]:
        return {line.split()[-1] for line in self.contents.splitlines()}

    def test_package_holds_binary_unit_and_help(self):
        paths = self.paths()
        for path in ("./usr/bin/svcproxy", "./usr/lib/systemd/system/svcproxy.service",
                     "./usr/share/doc/svcproxy/svcproxy-help.txt",
                     "./usr/share/doc/svcproxy/examples/config.yaml",
                     "./usr/share/doc/svcproxy/examples/daemonset.yaml"):
            self.assertIn(path, paths, self.contents)
        binary = [line for line in self.contents.splitlines() if line.endswith(" ./usr/bin/svcproxy")][0]
        self.assertTrue(binary.startswith("-rwxr-xr-x root/root"), binary)

    def test_control_fields(self):
        self.assertEqual(self.fields["Package"], "svcproxy")
        self.assertTrue(self.fields["Maintainer"])
        depends = {d.strip().split()[0] for d in self.fields["Depends"].split(",")}
        for package in ("libnftnl11", "libmnl0", "libnetfilter-conntrack3", "libyaml-cpp0.7", "nftables"):
            self.assertIn(package, depends)

    @unittest.skipIf(shutil.which("objdump") is None or shutil.which("ldd") is None or shutil.which("dpkg") is None,
                     "objdump, ldd or dpkg missing")
    def test_depends_covers_every_linked_library(self):
        depends = {d.strip().split()[0] for d in self.fields["Depends"].split(",")}
        binary = self.build / "svcproxy"
        resolved = resolved_libraries(binary)
        missing = {}
        for soname in needed_libraries(binary):
            package = package_of(resolved[soname])
            if package not in depends:
                missing[soname] = package
        self.assertEqual(missing, {}, f"Depends: {self.fields['Depends']}")

    def test_packaged_unit_and_help(self):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(self.deb), tmp], check=True)
            unit = (Path(tmp) / "usr/lib/systemd/system/svcproxy.service").read_text()
            self.assertIn("ExecStart=/usr/bin/svcproxy run ", unit)
            help_text = (Path(tmp) / "usr/share/doc/svcproxy/svcproxy-help.txt").read_text()
            for command in ("RUN", "RULES", "TRACE", "CLEANUP"):
                self.assertIn(f"COMMAND {command} (svcproxy {command.lower()} --help)", help_text)
            self.assertIn("--sync-period", help_text)
            r = subprocess.run([str(Path(tmp) / "usr/bin/svcproxy"), "--version"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)

    def test_cmake_install_writes_its_own_prefix_into_the_unit(self):
        unit = (self.prefix / "lib/systemd/system/svcproxy.service").read_text()
        self.assertIn(f"ExecStart={self.prefix}/bin/svcproxy run ", unit)
        self.assertTrue((self.prefix / "bin/svcproxy").exists())
        self.assertTrue((self.prefix / "share/doc/svcproxy/svcproxy-help.txt").exists())


if __name__ == "__main__":
    unittest.main()
