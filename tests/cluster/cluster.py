#!/usr/bin/env python3
"""A real Kubernetes control plane for the lab: etcd, kube-apiserver and
kube-controller-manager (only the EndpointSlice controllers), built from
source by build.sh (tests/cluster/{k8s,etcd} modules, cached per machine).

Isolation: everything runs inside its own network namespace, svp-cluster-cp,
which is never linked to the host namespace. etcd listens on that
namespace's 127.0.0.1, the apiserver on APISERVER_IP (on the namespace's lo),
kube-controller-manager serves nothing. A lab namespace reaches the apiserver
through attach(ns): a veth pair from the control-plane namespace into it,
with its own /30 and a route to APISERVER_IP (the veth goes away with the lab
namespace). kubectl and anything else that talks to the apiserver runs inside
the control-plane namespace (kubectl()) or inside an attached lab namespace.

Run state (certificates, etcd data, logs, PIDs, admin.kubeconfig) lives in
STATE_DIR (default: build/cluster of the checkout); `down` removes it.

  cluster.py up      idempotent; waits for /readyz; prints the kubeconfig path
  cluster.py down    stops every process, deletes the namespace and the state
  cluster.py status  what runs (exit 0 when the cluster is up and ready)

Python 3 stdlib only.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import unittest
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE_DIR = HERE.parents[1]
NETNS = "svp-cluster-cp"
APISERVER_IP = "100.127.0.1"
APISERVER_PORT = 6443
SERVER_URL = f"https://{APISERVER_IP}:{APISERVER_PORT}"
# Attached lab namespaces: link n gets 100.64.0.0 + 4n as a /30 (.1 control plane side, .2 lab side).
LINK_BASE = ipaddress.IPv4Address("100.64.0.0")
MAX_LINKS = 4095
LAB_LINK = "svpcp0"  # the interface name inside an attached lab namespace
SERVICE_CIDRS = "10.96.0.0/16,fd00:10:96::/112"
READY_BUDGET = 120.0  # seconds for /readyz on two busy cores (upstream reports 31-35 s on loaded CI)
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")


class ClusterError(RuntimeError):
    pass


def default_state_dir() -> Path:
    return Path(os.environ.get("SVCPROXY_CLUSTER_STATE", SOURCE_DIR / "build" / "cluster"))


def build_binaries() -> tuple[Path, Path]:
    """(k8s bin dir, etcd bin dir), building them into the machine's cache on first use."""
    result = subprocess.run(["sh", str(HERE / "build.sh")], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise ClusterError(f"building the cluster binaries failed (exit {result.returncode}); see the output above")
    k8s, etcd = result.stdout.split()
    return Path(k8s), Path(etcd)


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def run(argv, *, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, argv))} exited {result.returncode}: {result.stderr.strip()}")
    return result


class Cluster:
    """The control plane whose state lives in state_dir."""

    def __init__(self, state_dir: Path | None = None, *, netns: str = NETNS, apiserver_flags: tuple[str, ...] = ()):
        """netns: the control-plane namespace (another name runs a second control
        plane beside the shared one); apiserver_flags: extra kube-apiserver flags."""
        self.state = Path(state_dir or default_state_dir()).resolve()
        self.netns = netns
        self.apiserver_flags = tuple(apiserver_flags)
        self.pki = self.state / "pki"
        self.logs = self.state / "logs"
        self.pids = self.state / "pids"
        self.kubeconfig = self.state / "admin.kubeconfig"
        self.info_file = self.state / "cluster.json"
        self.lock_file = self.state.parent / f".{self.state.name}.lock"

    # ------------------------------------------------------------ queries

    def pid_of(self, component: str) -> int | None:
        """The PID of a running component we started (checked against its command line)."""
        try:
            pid = int((self.pids / f"{component}.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            return None
        return pid if os.path.basename(cmdline.decode(errors="replace")) == component else None

    def running(self) -> dict[str, int | None]:
        return {c: self.pid_of(c) for c in COMPONENTS}

    def ready(self, timeout: float = 5) -> bool:
        """GET /readyz from inside the control-plane namespace answers 200."""
        if not netns_exists(self.netns) or not self.kubeconfig.exists():
            return False
        result = run(["ip", "netns", "exec", self.netns, sys.executable, str(Path(__file__).resolve()),
                      "--state", str(self.state), "_readyz", "--timeout", str(timeout)],
                     check=False, timeout=timeout + 30)
        return result.returncode == 0

    def is_up(self) -> bool:
        return all(self.running().values()) and self.ready()

    def info(self) -> dict:
        """Server URL and credential paths (for stdlib clients such as podagent.py)."""
        return json.loads(self.info_file.read_text())

    # ------------------------------------------------------------ up / down

    def up(self, *, log=print) -> None:
        """Starts the control plane unless it already runs and is ready."""
        self.state.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_up():
                log(f"cluster: already up ({SERVER_URL}, namespace {self.netns})")
                return
            if any(self.running().values()) or netns_exists(self.netns) or self.state.exists():
                log("cluster: cleaning up a partial cluster first")
                self._down_locked(log=lambda *_: None)
            k8s_bin, etcd_bin = build_binaries()
            try:
                self._start(k8s_bin, etcd_bin, log)
            except BaseException:
                log("cluster: start failed; logs:")
                for f in sorted(self.logs.glob("*.log")) if self.logs.exists() else []:
                    tail = f.read_text(errors="replace").splitlines()[-15:]
                    log(f"--- {f.name}\n" + "\n".join(tail))
                self._down_locked(log=lambda *_: None)
                raise

    def down(self, *, log=print) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._down_locked(log=log)

    def _down_locked(self, *, log) -> None:
        # Reverse start order: the controller manager and apiserver before etcd.
        for component in reversed(COMPONENTS):
            pid = self.pid_of(component)
            if pid:
                _stop(pid)
                log(f"cluster: stopped {component} (pid {pid})")
        if netns_exists(self.netns):
            # Anything else still inside was started by a lab test against this cluster (kubectl).
            for pid in run(["ip", "netns", "pids", self.netns], check=False).stdout.split():
                _stop(int(pid))
            run(["ip", "netns", "del", self.netns], check=False)
            log(f"cluster: deleted namespace {self.netns}")
        if self.state.exists():
            shutil.rmtree(self.state, ignore_errors=True)
            log(f"cluster: removed {self.state}")

    def _start(self, k8s_bin: Path, etcd_bin: Path, log) -> None:
        for d in (self.pki, self.logs, self.pids, self.state / "etcd"):
            d.mkdir(parents=True, exist_ok=True)
        run(["ip", "netns", "add", self.netns])
        run(["ip", "-n", self.netns, "-batch", "-"], input=f"link set lo up\naddr add {APISERVER_IP}/32 dev lo\n")
        self._make_pki()
        self._write_kubeconfig()
        started = time.monotonic()
        self._spawn("etcd", [
            str(etcd_bin / "etcd"), "--name=lab", f"--data-dir={self.state / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=lab=http://127.0.0.1:2380",
            "--unsafe-no-fsync", "--log-level=warn",
        ])
        self._spawn("kube-apiserver", self._apiserver_argv(k8s_bin))
        self._wait_ready(started)
        log(f"cluster: kube-apiserver ready after {time.monotonic() - started:.1f} s")
        self._spawn("kube-controller-manager", [
            str(k8s_bin / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            "--controllers=endpointslice-controller,endpointslice-mirroring-controller",
            "--leader-elect=false", "--use-service-account-credentials=false", "--secure-port=0",
            "--profiling=false", "--v=2",
        ])
        # Logged once the controller's informers have synced (--v=2).
        self._wait_log("kube-controller-manager", "Starting service queue worker threads", 60)
        p = self.pki
        self.info_file.write_text(json.dumps({
            "server": SERVER_URL, "netns": self.netns, "kubeconfig": str(self.kubeconfig),
            "ca": str(p / "ca.crt"), "cert": str(p / "admin.crt"), "key": str(p / "admin.key"),
            "k8s_bin": str(k8s_bin), "etcd_bin": str(etcd_bin),
        }, indent=1) + "\n")
        log(f"cluster: up in {time.monotonic() - started:.1f} s")

    def _apiserver_argv(self, k8s_bin: Path) -> list[str]:
        p = self.pki
        return [
            str(k8s_bin / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
            f"--bind-address={APISERVER_IP}", f"--secure-port={APISERVER_PORT}",
            f"--advertise-address={APISERVER_IP}", f"--cert-dir={p / 'serving'}",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}", "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDRS}",
            # No ServiceAccount controller runs, so there is no `default` account to admit pods with.
            "--disable-admission-plugins=ServiceAccount", "--profiling=false", "--v=1", *self.apiserver_flags,
        ]

    def stop_apiserver(self) -> None:
        """Stops kube-apiserver (SIGTERM) and waits until it is gone."""
        pid = self.pid_of("kube-apiserver")
        if pid:
            _stop(pid)

    def start_apiserver(self) -> None:
        """Starts kube-apiserver again (after stop_apiserver) and waits for /readyz."""
        started = time.monotonic()
        self._spawn("kube-apiserver", self._apiserver_argv(Path(self.info()["k8s_bin"])))
        self._wait_ready(started)

    def _spawn(self, component: str, argv: list[str]) -> None:
        """Starts a component inside the control-plane namespace, detached from us
        (`ip netns exec` execs it, so the PID is the component's)."""
        with open(self.logs / f"{component}.log", "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, start_new_session=True, cwd=self.state)
        (self.pids / f"{component}.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 10
        while not self.pid_of(component):  # until `ip netns exec` has exec'd the component
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"{component} did not start: {(self.logs / f'{component}.log').read_text()}")
            time.sleep(0.01)  # waiting for exec with a deadline

    def _wait_ready(self, started: float) -> None:
        deadline = started + READY_BUDGET
        while True:
            if not self.pid_of("kube-apiserver") or not self.pid_of("etcd"):
                raise ClusterError("kube-apiserver or etcd exited during start")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClusterError(f"kube-apiserver not ready after {READY_BUDGET:.0f} s")
            if self.ready(timeout=min(left, 20)):
                return

    def _wait_log(self, component: str, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        log = self.logs / f"{component}.log"
        while text not in log.read_text(errors="replace"):
            if not self.pid_of(component):
                raise ClusterError(f"{component} exited during start")
            if time.monotonic() > deadline:
                raise ClusterError(f"{component}: no {text!r} in its log after {timeout:.0f} s")
            time.sleep(0.2)  # polling a log file with a deadline

    # ------------------------------------------------------------ certificates

    def _make_pki(self) -> None:
        p = self.pki

        def ssl_(*args):
            run(["openssl", *args])

        ssl_("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p / "ca.key", "-out", p / "ca.crt",
             "-days", "30", "-subj", "/CN=svcproxy-lab-ca")
        (p / "server.ext").write_text(
            f"subjectAltName=IP:{APISERVER_IP},IP:10.96.0.1,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
            "extendedKeyUsage=serverAuth\n")
        (p / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        for name, subject, ext in (("apiserver", "/CN=kube-apiserver", "server.ext"),
                                   ("admin", "/O=system:masters/CN=lab-admin", "client.ext")):
            ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p / f"{name}.key", "-out", p / f"{name}.csr",
                 "-subj", subject)
            ssl_("x509", "-req", "-in", p / f"{name}.csr", "-CA", p / "ca.crt", "-CAkey", p / "ca.key",
                 "-CAcreateserial", "-days", "30", "-extfile", p / ext, "-out", p / f"{name}.crt")
        ssl_("genrsa", "-out", p / "sa.key", "2048")
        ssl_("rsa", "-in", p / "sa.key", "-pubout", "-out", p / "sa.pub")

    def _write_kubeconfig(self) -> None:
        p = self.pki
        self.kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {SERVER_URL}
    certificate-authority: {p / 'ca.crt'}
users:
- name: admin
  user:
    client-certificate: {p / 'admin.crt'}
    client-key: {p / 'admin.key'}
contexts:
- name: lab
  context:
    cluster: lab
    user: admin
current-context: lab
""")

    # ------------------------------------------------------------ lab access

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """kubectl inside the control-plane namespace with the admin kubeconfig."""
        kubectl = Path(self.info()["k8s_bin"]) / "kubectl"
        return run(["ip", "netns", "exec", self.netns, str(kubectl), f"--kubeconfig={self.kubeconfig}", *args],
                   input=input, check=check, timeout=timeout)

    def attach(self, ns: str) -> str:
        """Links lab namespace ns to the control plane: a veth pair, a /30 and a
        route to the apiserver. Returns ns's address on the link. The link
        disappears when ns is deleted."""
        with open(self.lock_file, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            links = run(["ip", "-n", self.netns, "-o", "link", "show"]).stdout.splitlines()
            used = {line.split(": ")[1].split("@")[0] for line in links if ": " in line}
            n = next((i for i in range(1, MAX_LINKS + 1) if f"lab{i}" not in used), None)
            if n is None:
                raise ClusterError("no free control-plane link")
            cp_ip, lab_ip = LINK_BASE + 4 * n + 1, LINK_BASE + 4 * n + 2
            run(["ip", "-n", self.netns, "-batch", "-"], input=(
                f"link add lab{n} type veth peer name {LAB_LINK} netns {ns}\n"
                f"addr add {cp_ip}/30 dev lab{n}\nlink set lab{n} up\n"))
        run(["ip", "-n", ns, "-batch", "-"], input=(
            f"addr add {lab_ip}/30 dev {LAB_LINK}\nlink set {LAB_LINK} up\n"
            f"route add {APISERVER_IP}/32 via {cp_ip} dev {LAB_LINK}\n"))
        return str(lab_ip)


class ForTests:
    """A test module's cluster: reuses one that is up (`./dev cluster up`),
    otherwise starts one; release() stops only a cluster it started."""

    def __init__(self):
        self.cluster: Cluster | None = None
        self.started = False

    def acquire(self, log=print) -> Cluster:
        cluster = self.cluster = Cluster()
        if not cluster.is_up():
            self.started = True
            atexit.register(self.release)  # also when the test run is interrupted
            cluster.up(log=log)
        return cluster

    def set_up_module(self) -> Cluster:
        """A cluster test module's setUpModule after its root/tool checks:
        skips when the binaries cannot be built here, else acquires (and
        releases again if acquiring fails half-way)."""
        if not shutil.which("openssl"):
            raise unittest.SkipTest("needs openssl (cluster certificates)")
        try:
            build_binaries()
        except ClusterError as e:
            raise unittest.SkipTest(f"the cluster binaries cannot be built here: {e}") from e
        try:
            return self.acquire(log=lambda *a: print(*a, file=sys.stderr))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self.cluster and self.started:
            self.cluster.down(log=lambda *_: None)
        self.cluster, self.started = None, False


def _stop(pid: int, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after timeout; waits until the process is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reaps it if it is our child
            except ChildProcessError:
                pass
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                return
            time.sleep(0.05)  # waiting for a process to exit, with a deadline


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _readyz(state: Path, timeout: float) -> int:
    """Inside the control-plane namespace: 0 once GET /readyz answers 200."""
    info_ca = state / "pki" / "ca.crt"
    ctx = ssl.create_default_context(cafile=str(info_ca))
    ctx.load_cert_chain(str(state / "pki" / "admin.crt"), str(state / "pki" / "admin.key"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{SERVER_URL}/readyz", context=ctx, timeout=5) as reply:
                if reply.status == 200:
                    return 0
        except OSError:
            pass
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.5)  # polling the server's readiness with a deadline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, default=None, help="state directory (default build/cluster)")
    parser.add_argument("command", choices=["up", "down", "status", "_readyz"])
    parser.add_argument("--timeout", type=float, default=5)
    args = parser.parse_args()
    cluster = Cluster(args.state)
    if args.command == "_readyz":
        return _readyz(cluster.state, args.timeout)
    if os.geteuid() != 0:
        print("cluster: needs root (network namespaces)", file=sys.stderr)
        return 1
    try:
        if args.command == "up":
            cluster.up()
            print(f"cluster: kubeconfig {cluster.kubeconfig}")
            print(f"  its server {SERVER_URL} is reachable only inside the lab: from the control-plane "
                  f"namespace ({NETNS}) or a lab namespace linked to it, e.g.")
            print(f"  ip netns exec {NETNS} {cluster.info()['k8s_bin']}/kubectl --kubeconfig "
                  f"{cluster.kubeconfig} get nodes")
            print(str(cluster.kubeconfig))
        elif args.command == "down":
            cluster.down()
        else:
            running = cluster.running()
            for component, pid in running.items():
                print(f"{component}: {'running, pid ' + str(pid) if pid else 'not running'}")
            ready = all(running.values()) and cluster.ready()
            print(f"namespace {NETNS}: {'present' if netns_exists(NETNS) else 'absent'}")
            print(f"apiserver {SERVER_URL}: {'ready' if ready else 'not ready'}")
            if ready:
                print(f"kubeconfig: {cluster.kubeconfig}")
            return 0 if ready else 3
    except ClusterError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
