"""A throwaway Kubernetes-node network built from network namespaces.

Used by the end-to-end tests and by examples/demo.py. Python 3 stdlib only.

Topology (every name below is prefixed with a unique "svp-<pid>"; nothing is
ever linked to the host namespace, and the host ruleset is never touched):

      ext (external client)            sink (the rest of the world)
      203.0.113.2, .3                  198.51.100.2      answers anything
      2001:db8:77::2, ::3              2001:db8:99::2    as id "sink"
             |  eth0                        | eth0
             |  ext0 203.0.113.1            | up0 198.51.100.1
             |       2001:db8:77::1         |     2001:db8:99::1
      +------+------------------------------+------+
      |                 node ("node-a")            |  svcproxy rules load here
      |    default route -> sink (src = node IP)   |
      +--vp1-----------vp2----- ... ---------vpN---+
         10.244.1.1    10.244.2.1               10.244.N.1
         fd00:10:244:1::1 ...                   (gateway of each pod)
           |             |                        |
         pod 1         pod 2        ...         pod N     10.244.i.2, fd00:10:244:i::2
                                                          (one netns and one veth each)

Every pod-to-pod packet is routed by the node, so DNAT and its reverse
always happen in the node's conntrack (see lab notes). A pod that stands for
another node's pod is wired the same way; only the EndpointSlice's nodeName
says it is remote. Traffic the node does not redirect to a pod leaves by the
default route to "sink", which answers any TCP/UDP port: a packet that
should have been dropped but leaked shows up as an answer from "sink"
instead of a silent timeout.
"""

from __future__ import annotations

import atexit
import calendar
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "client.py"
STREAMS = HERE / "streams.py"
# The checkout and the binary under test (ctest sets both; run by hand, the
# default build/ of the checkout).
SOURCE_DIR = Path(os.environ.get("SVCPROXY_SOURCE_DIR", HERE.parents[1]))
SVCPROXY = os.environ.get("SVCPROXY_BIN", str(SOURCE_DIR / "build" / "svcproxy"))

NODE_NAME = "node-a"
REMOTE_NODE_NAME = "node-b"
NODE_V4 = "203.0.113.1"
NODE_V6 = "2001:db8:77::1"
EXT_V4 = "203.0.113.2"
EXT_V4_ALT = "203.0.113.3"
EXT_V6 = "2001:db8:77::2"
EXT_V6_ALT = "2001:db8:77::3"
UPLINK_NODE_V4 = "198.51.100.1"
UPLINK_NODE_V6 = "2001:db8:99::1"
SINK_V4 = "198.51.100.2"
SINK_V6 = "2001:db8:99::2"
SINK_PORT = 7777
SINK_ID = "sink"
CLUSTER_CIDRS = ("10.244.0.0/16", "fd00:10:244::/56")
SERVICE_CIDRS = ("10.96.0.0/16", "fd00:10:96::/112")

NODE_FLAGS = [
    "--hostname-override", NODE_NAME,
    "--node-ip", f"{NODE_V4},{NODE_V6}",
    "--cluster-cidr", ",".join(CLUSTER_CIDRS),
    "--service-cidr", ",".join(SERVICE_CIDRS),
]

_NODE_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    "net.ipv6.conf.all.forwarding": 1,
    "net.ipv6.conf.all.accept_dad": 0,
    "net.ipv6.conf.default.accept_dad": 0,
    # REJECT answers with ICMP (TCP resets are not rate limited, ICMP errors
    # are: about one per second per peer). Tests send many rejected packets
    # from one client; every one must be answered.
    "net.ipv4.icmp_ratelimit": 0,
    "net.ipv6.icmp.ratelimit": 0,
    # The namespace-wide ICMP budget too (1000/s, burst 50 by default): the
    # differential test's 40 parallel connections to a rejecting NodePort,
    # right after two other rejecting flows, found it empty for kube-proxy
    # (it rejects TCP with ICMP) and saw 4 of 40 time out.
    "net.ipv4.icmp_msgs_per_sec": 100000,
    "net.ipv4.icmp_msgs_burst": 10000,
}
_LEAF_SYSCTLS = {
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    "net.ipv6.conf.all.accept_dad": 0,
    "net.ipv6.conf.default.accept_dad": 0,
}

_instances = 0
_lock = threading.Lock()


class SandboxError(RuntimeError):
    pass


def is_root() -> bool:
    return os.geteuid() == 0


def missing_tools() -> list[str]:
    return [t for t in ("ip", "nft") if shutil.which(t) is None]


def family_of(address: str) -> int:
    return 6 if ":" in address else 4


def endpoint_str(ip: str, port: int) -> str:
    """As `svcproxy trace` prints endpoints: 1.2.3.4:80 or [2001:db8::1]:80."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass
class Pod:
    name: str
    index: int
    node: str = NODE_NAME  # the node its EndpointSlice entries name
    ns: str = ""
    v4: str = ""
    v6: str = ""
    gw4: str = ""
    gw6: str = ""

    def ip(self, family: int) -> str:
        return self.v6 if family == 6 else self.v4


@dataclass
class Echo:
    ns: str
    listen: str
    udp: bool
    id: str
    proc: subprocess.Popen
    log: Path


@dataclass
class RequestResult:
    """What a batch of client attempts saw (see client.py)."""
    replies: list[tuple[str, str, int]] = field(default_factory=list)  # (id, ip seen, port seen)
    outcomes: dict[str, int] = field(default_factory=dict)  # reply/refused/unreachable/timeout/reset/error
    errors: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [r[0] for r in self.replies]


class Sandbox:
    """Creates the topology on enter (or build()) and always removes it.

    Teardown runs from close(), the context manager, atexit, and on SIGTERM
    (turned into KeyboardInterrupt so that finally blocks run)."""

    def __init__(self, svcproxy: str | os.PathLike | None = None, *, verbose: bool = False):
        global _instances
        with _lock:
            n = _instances
            _instances += 1
        self.prefix = f"svp-{os.getpid()}" if n == 0 else f"svp-{os.getpid()}.{n}"
        self.svcproxy = str(svcproxy) if svcproxy else os.environ.get("SVCPROXY_BIN", "svcproxy")
        self.verbose = verbose
        self.node = f"{self.prefix}-node"
        self.ext = f"{self.prefix}-ext"
        self.sink = f"{self.prefix}-sink"
        self.pods: dict[str, Pod] = {}
        self.namespaces: list[str] = []  # created, in order
        self.echoes: list[Echo] = []
        self._agents: dict[str, _Agent] = {}
        self.background: list[Background] = []  # daemons and traffic streams (spawn())
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._closed = False
        atexit.register(self.close)
        _install_sigterm_handler()

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "Sandbox":
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def build(self, pods: Iterable[Pod] = ()) -> None:
        """Node, external client and sink; then the given pods."""
        if self.namespaces:
            raise SandboxError("sandbox already built")
        reap_stale()
        for ns in (self.node, self.ext, self.sink):
            self._add_netns(ns)
        self._sysctls(self.node, _NODE_SYSCTLS)
        self._sysctls(self.ext, _LEAF_SYSCTLS)
        self._sysctls(self.sink, _LEAF_SYSCTLS)

        self.ip_batch(self.node, [
            "link set lo up",
            f"link add ext0 type veth peer name eth0 netns {self.ext}",
            f"link add up0 type veth peer name eth0 netns {self.sink}",
            f"addr add {NODE_V4}/24 dev ext0",
            f"addr add {NODE_V6}/64 dev ext0 nodad",
            f"addr add {UPLINK_NODE_V4}/24 dev up0",
            f"addr add {UPLINK_NODE_V6}/64 dev up0 nodad",
            "link set ext0 up",
            "link set up0 up",
            # Locally generated traffic to service IPs needs a route before the
            # output hook rewrites the destination; `src` keeps the node's
            # primary IP as the source, as on a real node.
            f"route add default via {SINK_V4} src {NODE_V4}",
            f"route add default via {SINK_V6} src {NODE_V6}",
        ])
        self.ip_batch(self.ext, [
            "link set lo up",
            f"addr add {EXT_V4}/24 dev eth0",
            f"addr add {EXT_V4_ALT}/24 dev eth0",
            f"addr add {EXT_V6}/64 dev eth0 nodad",
            f"addr add {EXT_V6_ALT}/64 dev eth0 nodad",
            "link set eth0 up",
            # Service, external and load-balancer IPs are all reached via the node.
            f"route add default via {NODE_V4}",
            f"route add default via {NODE_V6}",
        ])
        self.ip_batch(self.sink, [
            "link set lo up",
            f"addr add {SINK_V4}/24 dev eth0",
            f"addr add {SINK_V6}/64 dev eth0 nodad",
            "link set eth0 up",
            f"route add default via {UPLINK_NODE_V4}",
            f"route add default via {UPLINK_NODE_V6}",
        ])
        self.nft(self.sink, f"""
table inet sink {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    meta l4proto tcp redirect to :{SINK_PORT}
    meta l4proto udp redirect to :{SINK_PORT}
  }}
}}
""")
        sink_echoes = [self.start_echo(self.sink, f"[::]:{SINK_PORT}", udp=udp, id=SINK_ID, wait=False)
                       for udp in (False, True)]
        self.add_pods(pods)
        self.wait_ready(sink_echoes)

    def add_pods(self, pods: Iterable[Pod]) -> list[Pod]:
        """One netns and veth pair per pod: 10.244.<index>.2/24 behind the
        node's 10.244.<index>.1 (and fd00:10:244:<index>::2/64)."""
        added = []
        node_cmds = []
        for pod in pods:
            if pod.name in self.pods:
                raise SandboxError(f"pod {pod.name} exists")
            if not 1 <= pod.index <= 255:
                raise SandboxError(f"pod {pod.name}: index {pod.index} outside 1..255")
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", pod.name):
                raise SandboxError(f"pod name {pod.name!r} is not a DNS label")
            pod.ns = f"{self.prefix}-{pod.name}"
            pod.v4, pod.gw4 = f"10.244.{pod.index}.2", f"10.244.{pod.index}.1"
            pod.v6, pod.gw6 = f"fd00:10:244:{pod.index:x}::2", f"fd00:10:244:{pod.index:x}::1"
            self._add_netns(pod.ns)
            self._sysctls(pod.ns, _LEAF_SYSCTLS)
            dev = f"vp{pod.index}"
            node_cmds += [
                f"link add {dev} type veth peer name eth0 netns {pod.ns}",
                f"addr add {pod.gw4}/24 dev {dev}",
                f"addr add {pod.gw6}/64 dev {dev} nodad",
                f"link set {dev} up",
            ]
            self.pods[pod.name] = pod
            added.append(pod)
        if node_cmds:
            self.ip_batch(self.node, node_cmds)
        for pod in added:
            self.ip_batch(pod.ns, [
                "link set lo up",
                f"addr add {pod.v4}/24 dev eth0",
                f"addr add {pod.v6}/64 dev eth0 nodad",
                "link set eth0 up",
                f"route add default via {pod.gw4}",
                f"route add default via {pod.gw6}",
            ])
        self._wait_no_tentative([self.node, self.ext, self.sink] + [p.ns for p in added])
        return added

    def close(self) -> None:
        """Kills what we started (by PID), deletes every namespace we created.
        Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self.background):
            proc.stop()
        self.background.clear()
        for agent in self._agents.values():
            agent.stop()
        self._agents.clear()
        for echo in self.echoes:
            _terminate(echo.proc)
        deadline = time.monotonic() + 3
        for echo in self.echoes:
            try:
                echo.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                echo.proc.kill()
                try:
                    echo.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            if echo.proc.stdout:
                echo.proc.stdout.close()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    # ---------------------------------------------------------------- running things

    def exec(self, ns: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess:
        """Runs argv inside namespace ns; returns the CompletedProcess (text)."""
        cmd = ["ip", "netns", "exec", ns, *argv]
        if self.verbose:
            print("+", " ".join(cmd), file=sys.stderr)
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise SandboxError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def ip_batch(self, ns: str, commands: Sequence[str]) -> None:
        script = "\n".join(commands) + "\n"
        result = subprocess.run(["ip", "-n", ns, "-batch", "-"], input=script, capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise SandboxError(f"ip -n {ns} -batch failed: {result.stderr.strip()}\n{script}")

    def nft(self, ns: str, script: str, *, check_only: bool = False) -> subprocess.CompletedProcess:
        """Loads (or with check_only, checks) an nft script inside ns."""
        return self.exec(ns, ["nft", "-c", "-f", "-"] if check_only else ["nft", "-f", "-"], input=script)

    def nft_list(self, ns: str, what: Sequence[str] = ("ruleset",)) -> str:
        return self.exec(ns, ["nft", "list", *what]).stdout

    def flush_conntrack(self, ns: str | None = None) -> None:
        """Forgets NAT decisions made under an older ruleset (a reload does not
        touch existing flows; the daemon will delete stale UDP entries itself)."""
        if shutil.which("conntrack"):
            self.exec(ns or self.node, ["conntrack", "-F"], check=False)

    def start_echo(self, ns: str, listen: str, *, udp: bool = False, id: str, wait: bool = True) -> Echo:
        """Starts `svcproxy echo` in ns. With wait, returns once it printed
        its "listening on" line (call wait_ready() for several at once)."""
        log = self.workdir / f"echo-{len(self.echoes)}.log"
        argv = ["ip", "netns", "exec", ns, self.svcproxy, "echo", "--listen", listen, "--id", id]
        if udp:
            argv.append("--udp")
        with open(log, "wb") as err:
            # `ip netns exec` execs the command: the PID is the echo server's.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        echo = Echo(ns=ns, listen=listen, udp=udp, id=id, proc=proc, log=log)
        self.echoes.append(echo)
        if wait:
            self.wait_ready([echo])
        return echo

    def start_pod_echoes(self, pod: Pod, ports: Iterable[tuple[int, str]], *, id_format: str = "{pod}:{port}",
                         wait: bool = True) -> list[Echo]:
        """One echo per (port, "tcp"|"udp") on [::] (both families)."""
        echoes = [self.start_echo(pod.ns, f"[::]:{port}", udp=(proto == "udp"),
                                  id=id_format.format(pod=pod.name, port=port, proto=proto), wait=False)
                  for port, proto in ports]
        if wait:
            self.wait_ready(echoes)
        return echoes

    def wait_ready(self, echoes: Sequence[Echo], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        pending = {e.proc.stdout.fileno(): e for e in echoes}
        buffers = {fd: b"" for fd in pending}
        with selectors.DefaultSelector() as sel:
            for fd in pending:
                sel.register(fd, selectors.EVENT_READ)
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    names = ", ".join(f"{e.id}@{e.listen}" for e in pending.values())
                    raise SandboxError(f"echo not listening after {timeout}s: {names}")
                for key, _ in sel.select(timeout=left):
                    fd = key.fd
                    chunk = os.read(fd, 4096)
                    echo = pending[fd]
                    if not chunk:
                        echo.proc.wait(timeout=5)
                        raise SandboxError(
                            f"echo {echo.id} in {echo.ns} on {echo.listen} exited {echo.proc.returncode}: "
                            f"{echo.log.read_text(errors='replace').strip()}")
                    buffers[fd] += chunk
                    if b"listening on" in buffers[fd] and buffers[fd].endswith(b"\n"):
                        sel.unregister(fd)
                        del pending[fd]

    def request(self, ns: str, dst: str, port: int, *, proto: str = "tcp", count: int = 1,
                src: str | None = None, timeout: float = 1.0, parallel: int = 16,
                http: bool = False) -> RequestResult:
        """From namespace ns: `count` fresh connections (TCP) or sockets (UDP)
        to dst:port, each sending one line (or an HTTP GET) and reading the
        echo's answer. Runs in a client.py agent kept alive per namespace."""
        request = {"dst": dst, "port": port, "proto": proto, "count": count, "timeout": timeout,
                   "parallel": parallel, "src": src, "http": http}
        agent = self._agents.get(ns)
        if agent is None:
            agent = self._agents[ns] = _Agent(ns, self.workdir / f"client-{len(self._agents)}.log")
        budget = 30 + timeout * (count / max(1, min(parallel, count)) + 2)
        try:
            data = agent.call(request, budget)
        except SandboxError:
            agent.stop()
            del self._agents[ns]
            raise
        if "fatal" in data:
            raise SandboxError(f"client in {ns} failed on {request}: {data['fatal']}")
        result = RequestResult(outcomes=data["outcomes"], errors=data["errors"], raw=data)
        for r in data["replies"]:
            ip, p = split_hostport(r["client"])
            result.replies.append((r["id"], ip, p))
        return result

    # ---------------------------------------------------------------- svcproxy

    def svcproxy_run(self, args: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs the svcproxy binary in the current (host) namespace: only for
        commands that touch no kernel state (rules, trace)."""
        result = subprocess.run([self.svcproxy, *args], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise SandboxError(f"svcproxy {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def trace(self, flags: Sequence[str], packet: Sequence[str]) -> dict:
        """`svcproxy trace --json` for one packet (packet: --src ... --dst
        ... --dport N [--proto P] [--iif I]), compiled from `flags`; with the
        node programmed from the same flags, `trace --live` in the node
        namespace must give the same result (it evaluates what the kernel
        holds, read back over netlink). Returns the result; AssertionError
        (a test failure) when the two differ."""
        offline = json.loads(self.svcproxy_run(["trace", *flags, "--json", *packet]).stdout)
        live = json.loads(self.svcproxy_in(self.node, ["trace", "--live", "--json", *packet]).stdout)
        if live != offline:
            raise AssertionError(f"trace --live differs from trace for {' '.join(packet)}:\n"
                                 f"  trace:        {json.dumps(offline, sort_keys=True)}\n"
                                 f"  trace --live: {json.dumps(live, sort_keys=True)}")
        return offline

    def svcproxy_in(self, ns: str, args: Sequence[str], *, check: bool = True,
                    timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs the svcproxy binary inside namespace ns (run --once, rules
        --live, cleanup, ...)."""
        return self.exec(ns, [self.svcproxy, *args], check=check, timeout=timeout)

    def spawn(self, ns: str, argv: Sequence[str], *, name: str, lines_from: str = "stdout",
              stdin: bool = True) -> "Background":
        """Starts a long-running process in ns whose stdout (or stderr) lines
        are collected as they come (Background.lines). Stopped by close()."""
        proc = Background(ns, argv, self.workdir / f"{name}-{len(self.background)}.log", lines_from=lines_from,
                          stdin=stdin, verbose=self.verbose)
        self.background.append(proc)
        return proc

    def start_stream(self, ns: str, mode: str, dst: str, port: int, **options) -> "Background":
        """streams.py <mode> in ns (udp, tcp-loop, tcp-hold); options are its
        flags (sport=40000 -> --sport 40000). Stop it with .stop()."""
        argv = [sys.executable, str(STREAMS), mode, "--dst", dst, "--port", str(port)]
        for key, value in options.items():
            argv += [f"--{key}", str(value)]
        return self.spawn(ns, argv, name=f"stream-{mode}")

    def start_daemon(self, manifests: str | os.PathLike, flags: Sequence[str] = (), *,
                     ns: str | None = None) -> "Daemon":
        """`svcproxy run --manifests DIR` in the node namespace (or ns); its
        log lines are collected. Stop it with .stop() (SIGTERM)."""
        argv = [self.svcproxy, "run", "--manifests", str(manifests), *flags]
        proc = Background(ns or self.node, argv, self.workdir / f"daemon-{len(self.background)}.log",
                          lines_from="stderr", stdin=False, verbose=self.verbose)
        daemon = Daemon(proc)
        self.background.append(proc)
        return daemon

    def node_addresses(self) -> set[str]:
        addresses = {NODE_V4, NODE_V6, UPLINK_NODE_V4, UPLINK_NODE_V6}
        for pod in self.pods.values():
            addresses |= {pod.gw4, pod.gw6}
        return addresses

    # ---------------------------------------------------------------- internals

    def _add_netns(self, ns: str) -> None:
        result = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
        if result.returncode != 0:
            raise SandboxError(f"ip netns add {ns}: {result.stderr.strip()}")
        self.namespaces.append(ns)

    def _sysctls(self, ns: str, values: dict[str, int]) -> None:
        self.exec(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])

    def _wait_no_tentative(self, namespaces: Sequence[str], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        for ns in namespaces:
            while True:
                out = subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "tentative"], capture_output=True,
                                     text=True).stdout
                if "inet6" not in out:
                    break
                if time.monotonic() > deadline:
                    raise SandboxError(f"{ns}: IPv6 addresses still tentative:\n{out}")
                time.sleep(0.05)  # polling a condition with a deadline


class _Agent:
    """`client.py --serve` running inside one namespace."""

    def __init__(self, ns: str, log: Path):
        self.ns = ns
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(CLIENT), "--serve"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self.buffer = b""

    def call(self, request: dict, timeout: float) -> dict:
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError as e:
            raise SandboxError(f"client agent in {self.ns} died: {self.log.read_text(errors='replace')}") from e
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    raise SandboxError(f"client agent in {self.ns}: no answer to {request} in {timeout:.0f}s")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise SandboxError(f"client agent in {self.ns} died: {self.log.read_text(errors='replace')}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def stop(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        _terminate(self.proc)
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=3)


def require_root_and_tools(svcproxy: str | os.PathLike) -> None:
    """An e2e module's first check: skipped (unittest.SkipTest) unless root
    with every tool present; an error if the svcproxy binary is missing."""
    import unittest
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root: creates network namespaces")
    missing = missing_tools()
    if missing:
        raise unittest.SkipTest(f"missing tools: {', '.join(missing)}")
    if not os.access(svcproxy, os.X_OK):
        raise RuntimeError(f"svcproxy binary not found at {svcproxy} (set SVCPROXY_BIN)")


def close_env(env) -> None:
    """An e2e module's teardown: closes env.box (namespaces, processes) and
    removes env.tmp; safe to call twice and after a failed setup."""
    if getattr(env, "box", None):
        env.box.close()
        env.box = None
    if getattr(env, "tmp", None):
        shutil.rmtree(env.tmp, ignore_errors=True)
        env.tmp = None


def start_pods_sandbox(svcproxy: str | os.PathLike, pods: Sequence[Pod],
                       echo_ports: Iterable[tuple[int, str]]) -> tuple["Sandbox", dict[str, list[Echo]]]:
    """A built sandbox with `pods`, each running echo on `echo_ports`, every
    echo answering; closed again if any step fails. Returns the sandbox and
    each pod's echoes (in `echo_ports` order)."""
    echo_ports = list(echo_ports)
    box = Sandbox(svcproxy)
    try:
        box.build()
        box.add_pods(pods)
        echoes = {pod.name: box.start_pod_echoes(pod, echo_ports, wait=False) for pod in pods}
        box.wait_ready([e for started in echoes.values() for e in started])
        return box, echoes
    except BaseException:
        box.close()
        raise


class LineLog:
    """The lines of a child's pipe, read by a thread as they come, each with
    the wall-clock time it was read; waiters block on a condition with a
    deadline (no polling, no fixed sleeps)."""

    def __init__(self, stream, copy_to: Path):
        self.lines: list[str] = []
        self.received: list[float] = []  # time.time() when each line was read
        self.closed = False
        self._cond = threading.Condition()
        self._stream = stream
        self._copy = open(copy_to, "a", encoding="utf-8")
        self._thread = threading.Thread(target=self._pump, daemon=True, name=f"lines:{copy_to.name}")
        self._thread.start()

    def _pump(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode(errors="replace").rstrip("\n")
                now = time.time()
                with self._cond:
                    self.lines.append(line)
                    self.received.append(now)
                    self._cond.notify_all()
                self._copy.write(line + "\n")
                self._copy.flush()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()
            self._copy.close()
            try:
                self._stream.close()
            except OSError:
                pass

    def __len__(self) -> int:
        with self._cond:
            return len(self.lines)

    def snapshot(self, start: int = 0) -> list[str]:
        with self._cond:
            return self.lines[start:]

    def wait_for(self, predicate, *, start: int = 0, timeout: float = 10, what: str = "") -> int:
        """Index of the first line at or after `start` for which
        predicate(line) is true; SandboxError after `timeout` seconds or if
        the stream ends first. predicate may also be a regex string."""
        if isinstance(predicate, str):
            pattern = re.compile(predicate)
            predicate = lambda line: pattern.search(line) is not None  # noqa: E731
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    if predicate(self.lines[i]):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    tail = "\n    ".join(self.lines[-15:])
                    state = "stream ended" if self.closed else f"timed out after {timeout}s"
                    raise SandboxError(f"waiting for {what or 'a line'}: {state}; last lines:\n    {tail}")
                self._cond.wait(left)

    def wait_count(self, predicate, count: int, *, start: int = 0, timeout: float = 10, what: str = "") -> int:
        """Waits until `count` lines from `start` satisfy predicate; returns
        the index of the count-th one."""
        index = start - 1
        for n in range(count):
            index = self.wait_for(predicate, start=index + 1, timeout=timeout, what=f"{what} ({n + 1}/{count})")
        return index

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Background:
    """A long-running process inside a namespace (`ip netns exec` execs it:
    the PID is the program's own), one of its output streams collected line
    by line. stop() closes its stdin, then escalates to SIGTERM and
    SIGKILL; never raises."""

    def __init__(self, ns: str, argv: Sequence[str], log: Path, *, lines_from: str = "stdout", stdin: bool = True,
                 verbose: bool = False):
        self.ns = ns
        self.argv = list(argv)
        self.log = log
        cmd = ["ip", "netns", "exec", ns, *argv]
        if verbose:
            print("+", " ".join(cmd), "&", file=sys.stderr)
        with open(log.with_suffix(".other.log"), "wb") as other:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if lines_from == "stdout" else other,
                stderr=subprocess.PIPE if lines_from == "stderr" else other)
        stream = self.proc.stdout if lines_from == "stdout" else self.proc.stderr
        self.lines = LineLog(stream, log)

    def json_lines(self, start: int = 0) -> list[dict]:
        out = []
        for line in self.lines.snapshot(start):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def send_line(self, text: str = "") -> None:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 5) -> int | None:
        """Asks the process to finish (stdin closed, then SIGTERM) and waits
        for it and for its output to be read. Returns its exit status."""
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            _terminate(self.proc)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
        self.lines.join(3)
        return self.proc.returncode


# klog's header: I1128 06:13:21.123456    1234 run.cc:42] message key="value" n=3
_KLOG = re.compile(r"^([IWEF])(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})\s+\d+ (\S+)\] (.*)$")
_SYNC = re.compile(r"^sync (done|failed) (.*)$")
# key=value and key="quoted value" (klog's structured fields).
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def log_fields(text: str) -> dict[str, str]:
    """The key=value fields of a klog line's message, quotes removed."""
    out = {}
    for key, value in _FIELD.findall(text):
        if value.startswith('"'):
            value = json.loads(value) if "\\x" not in value else value[1:-1]
        out[key] = value
    return out


def klog_time(line: str) -> float:
    """The wall-clock time (seconds since the epoch, UTC) in a klog line's
    header. klog leaves out the year: the one that puts it nearest to now."""
    m = _KLOG.match(line)
    if not m:
        raise ValueError(f"not a klog line: {line!r}")
    month, day, hour, minute, second, micros = (int(g) for g in m.groups()[1:7])
    now = time.time()
    year = time.gmtime(now).tm_year
    candidates = [calendar.timegm((y, month, day, hour, minute, second, 0, 0, 0)) + micros / 1e6
                  for y in (year - 1, year, year + 1)]
    return min(candidates, key=lambda t: abs(t - now))


@dataclass
class SyncLine:
    """One "sync done" (or "sync failed") line of `svcproxy run`."""
    index: int  # in Daemon.lines
    time: float  # when it was logged (the line's own timestamp)
    ok: bool
    reason: str
    mode: str = ""
    operations: int = -1
    conntrack_deleted: int = -1
    duration_us: int = -1
    text: str = ""


def parse_sync_line(line: str, index: int = -1) -> SyncLine | None:
    m = _KLOG.match(line)
    if not m or not m.group(8).startswith(("run", "daemon")):
        return None
    s = _SYNC.match(m.group(9))
    if not s:
        return None
    fields = log_fields(s.group(2))
    if "reason" not in fields:
        return None
    sync = SyncLine(index=index, time=klog_time(line), ok=s.group(1) == "done", reason=fields["reason"], text=line)
    if sync.ok:
        sync.mode = fields.get("mode", "")
        for key in ("operations", "conntrack_deleted", "duration_us"):
            setattr(sync, key, int(fields.get(key, -1)))
    return sync


class Daemon:
    """`svcproxy run` in a namespace (Sandbox.start_daemon), read through its
    log: mark() the log before an action, then wait_sync(after=mark) for the
    sync that follows it."""

    def __init__(self, proc: Background):
        self.proc = proc
        self.lines = proc.lines

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def mark(self) -> int:
        return len(self.lines)

    def syncs(self, start: int = 0) -> list[SyncLine]:
        out = []
        for i, line in enumerate(self.lines.snapshot(start), start):
            sync = parse_sync_line(line, i)
            if sync:
                out.append(sync)
        return out

    def wait_sync(self, *, after: int = 0, reason: str | None = None, timeout: float = 10,
                  allow_failed: bool = False) -> SyncLine:
        """The first sync line at or after index `after` (with `reason` if
        given). A failed sync is an error unless allow_failed."""
        def wanted(line: str) -> bool:
            sync = parse_sync_line(line)
            return sync is not None and (reason is None or sync.reason == reason)

        index = self.lines.wait_for(wanted, start=after, timeout=timeout,
                                    what=f"svcproxy run: sync {'reason=' + reason if reason else ''}")
        sync = parse_sync_line(self.lines.snapshot(index)[0], index)
        if not sync.ok and not allow_failed:
            raise SandboxError(f"svcproxy run: {sync.text}")
        return sync

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> tuple[int | None, float]:
        """Sends sig and waits up to timeout; returns (exit status or None if
        still running, seconds it took). The process is always reaped
        (escalating after the timeout)."""
        start = time.monotonic()
        rc = None
        if self.proc.proc.poll() is None:
            try:
                self.proc.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            rc = self.proc.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - start
        self.proc.stop(timeout=0.1)
        return rc, elapsed


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass


_sigterm_installed = False


def _install_sigterm_handler() -> None:
    """SIGTERM would skip atexit; turn it into KeyboardInterrupt (which
    unittest does not swallow, unlike SystemExit) so that finally blocks and
    the atexit teardown run."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def handler(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        signal.signal(signal.SIGTERM, handler)
    _sigterm_installed = True


def reap_stale() -> None:
    """Removes namespaces left by a sandbox whose process died without
    teardown (SIGKILL): names svp-<pid>-* whose <pid> no longer exists. The
    processes inside were started by that sandbox."""
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(r"svp-(\d+)(?:\.\d+)?-[-a-z0-9]+", name)
        if not m or Path(f"/proc/{m.group(1)}").exists():
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------------- manifests

_PLAIN = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./:@-]*$")
_NOT_PLAIN = re.compile(
    r"^(?:true|false|yes|no|on|off|null|~|y|n|[-+]?(?:\d[\d_]*)?(?:\.\d*)?(?:e[-+]?\d+)?|0x[0-9a-f]+|0o[0-7]+"
    r"|[-+]?\.inf|\.nan)$", re.IGNORECASE)


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if text and _PLAIN.match(text) and not _NOT_PLAIN.match(text) and not text.endswith(":"):
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def _yaml_lines(value, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        for key, item in sorted(value.items()):  # kubectl prints keys sorted
            if isinstance(item, dict) and item:
                lines.append(f"{pad}{_scalar(key)}:")
                lines += _yaml_lines(item, indent + 2)
            elif isinstance(item, list) and item:
                lines.append(f"{pad}{_scalar(key)}:")
                lines += _yaml_lines(item, indent)  # kubectl style: "- " at the key's indent
            else:
                lines.append(f"{pad}{_scalar(key)}: {_inline(item)}")
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub = _yaml_lines(item, indent + 2)
                lines.append(pad + "- " + sub[0][indent + 2:])
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {_inline(item)}")
        return lines
    return [pad + _scalar(value)]


def _inline(value) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(documents: Sequence[dict]) -> str:
    """Multi-document YAML in the block style kubectl prints."""
    return "".join("---\n" + "\n".join(_yaml_lines(doc, 0)) + "\n" for doc in documents)


def service(name: str, cluster_ips: Sequence[str], ports: Sequence[dict], *, namespace: str = "default",
            type: str = "ClusterIP", **spec_extra) -> dict:
    """A v1 Service as kubectl prints it. ports: dicts with name, port,
    protocol, targetPort, nodePort. spec_extra: other spec fields, plus
    `ingress` (list of LB ingress IPs, or dicts) for status."""
    ingress = spec_extra.pop("ingress", None)
    families = ["IPv6" if ":" in ip else "IPv4" for ip in cluster_ips]
    spec = {
        "clusterIP": cluster_ips[0],
        "clusterIPs": list(cluster_ips),
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": families,
        "ipFamilyPolicy": "RequireDualStack" if len(families) > 1 else "SingleStack",
        "ports": [{"protocol": "TCP", **p} for p in ports],
        "selector": {"app": name},
        "sessionAffinity": "None",
        "type": type,
    }
    if type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = "Cluster"
    spec.update(spec_extra)
    status: dict = {"loadBalancer": {}}
    if ingress:
        status["loadBalancer"]["ingress"] = [i if isinstance(i, dict) else {"ip": i, "ipMode": "VIP"}
                                             for i in ingress]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"labels": {"app": name}, "name": name, "namespace": namespace,
                     "resourceVersion": "1000", "uid": f"00000000-0000-0000-0000-{zlib.crc32(name.encode()):012d}"},
        "spec": spec,
        "status": status,
    }


def endpoint_slice(service_name: str, suffix: str, family: int, endpoints: Sequence[dict],
                   ports: Sequence[dict], *, namespace: str = "default") -> dict:
    """A discovery.k8s.io/v1 EndpointSlice. endpoints: dicts with pod (Pod),
    and optionally ready/serving/terminating (booleans; omitted when None)
    and node (the nodeName instead of the pod's; None: no nodeName)."""
    items = []
    for e in endpoints:
        pod: Pod = e["pod"]
        conditions = {k: e[k] for k in ("ready", "serving", "terminating") if e.get(k) is not None}
        if "ready" not in e:
            conditions = {"ready": True, "serving": True, "terminating": False}
        item = {
            "addresses": [pod.ip(family)],
            "conditions": conditions,
            "targetRef": {"kind": "Pod", "name": pod.name, "namespace": namespace},
        }
        # node=None: no nodeName (a selectorless service's hand-written slice).
        node = e.get("node", pod.node)
        if node:
            item["nodeName"] = node
        items.append(item)
    return {
        "addressType": "IPv6" if family == 6 else "IPv4",
        "apiVersion": "discovery.k8s.io/v1",
        "endpoints": items,
        "kind": "EndpointSlice",
        "metadata": {
            "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                       "kubernetes.io/service-name": service_name},
            "name": f"{service_name}-{suffix}",
            "namespace": namespace,
            "resourceVersion": "1000",
        },
        "ports": [{"protocol": "TCP", **p} for p in ports],
    }
