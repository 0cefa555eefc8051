"""End-to-end: what the daemon (`svcproxy run --manifests DIR`) shows the
outside world over its lifetime: health endpoints, healthCheckNodePorts,
Prometheus metrics, sync pacing, and restarts under load.

  - /healthz and /livez (--healthz-bind-address on the node IP): 200 with
    {"lastUpdated","currentTime","healthy"} after the first sync. A queued
    change that cannot be applied turns both into 503 no sooner than
    2 × --sync-period after it was queued, and back to 200 once a sync
    applies it. What keeps the change unapplied is a real kernel refusal,
    no test seam: another program takes svcproxy's table name with `flags
    owner` (`nft -i` holding its netlink socket), so every svcproxy
    transaction fails with EPERM until that program exits and its table
    vanishes. /healthz alone
    is 503 while this Node has a deletionTimestamp or the
    ToBeDeletedByClusterAutoscaler taint. kubeproxy_proxy_healthz_total and
    _livez_total count exactly the answers the test received, by code.
  - healthCheckNodePort (LoadBalancer, externalTrafficPolicy: Local): 200,
    kube-proxy's JSON body and X-Load-Balancing-Endpoint-Weight = local ready
    endpoints; 503 with localEndpoints 0 when they become unready or remote;
    503 with serviceProxyHealthy false while the proxy is unhealthy; the port
    is closed (connection refused) when the service goes and open again when
    it comes back.
  - /metrics (--metrics-bind-address) parsed by the strict text-format parser
    below: kube-proxy's names with their types, help and buckets;
    svcproxy_kernel_objects equal to what `svcproxy rules --format json`
    compiles; counters that move with syncs and edits; the network
    programming latency observed once per EndpointSlice trigger time, never
    for one older than the daemon (kube-proxy's trackerStartTime rule).
  - --min-sync-period 2s: a burst of edits right after a sync becomes exactly
    one sync, no sooner than 2 s after the previous one (klog timestamps),
    and it programs the last edit.
  - kill -9 and restart, twice, under ≥ 3000 short TCP connections (ClusterIP
    and NodePort): none fails, none around a start sync needs a SYN
    retransmission; each new daemon's first sync is a successful
    reason=start mode=full, and its only one; the kernel then equals
    `svcproxy rules`. A control stream straight to a pod tells a machine
    stall (seconds, on shared vCPUs) from a packet svcproxy lost.

HTTP requests come from the external client's namespace, as a load balancer
or kubelet would send them, through a small agent: this file run with
--http-agent (one JSON request per stdin line, one JSON answer per stdout
line). Waits are on log lines (Daemon.wait_sync), replies and HTTP answers,
each with a deadline; a state that the daemon changes just after its log
line (health, health-check ports, metrics) is polled every 20 ms until a
deadline.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_daemon_lifecycle (from tests/e2e).
"""

from __future__ import annotations

import calendar
import dataclasses
import http.client
import json
import math
import re
import signal
import socket
import sys
import tempfile
import time
import unittest
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from manifest_dir import Manifests, node_object, rfc3339  # noqa: E402
from sandbox import NODE_V4, NODE_V6, Pod, endpoint_slice, service  # noqa: E402

from sandbox import SVCPROXY  # noqa: E402
NS = "life"
NODE_IPS = (NODE_V4, NODE_V6)  # the node's InternalIPs in its Node object

# All three run echo on TCP 8080 ("<pod>:8080 <client>"); the manifests say
# which node each one is on.
PODS = [Pod("p1", 1), Pod("p2", 2), Pod("p3", 3)]
POD_IDS = {"p1:8080", "p2:8080", "p3:8080"}

HEALTHZ_PORT = 10256
METRICS_PORT = 10249
HTTP_FLAGS = ["--healthz-bind-address", f"{NODE_V4}:{HEALTHZ_PORT}",
              "--metrics-bind-address", f"{NODE_V4}:{METRICS_PORT}"]

WEB_IP = "10.96.5.10"            # ClusterIP TCP 80 -> 8080
NP_IP, NODE_PORT = "10.96.5.20", 30080  # NodePort TCP 80 / 30080 -> 8080
LB_IP, LB_LB_IP, LB_NODE_PORT, HC_PORT = "10.96.5.30", "192.0.2.30", 30081, 30900
BURST_IP = "10.96.5.40"          # the service the coalescing burst edits

TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
POLL_INTERVAL = 0.02  # seconds between two polls of an HTTP state (always with a deadline)


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-e2e-lifecycle-"))
    try:
        Env.box, _ = sb.start_pods_sandbox(SVCPROXY, PODS, [(8080, "tcp")])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    sb.close_env(Env)


# ---------------------------------------------------------------------- time

_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z$")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of a UTC RFC 3339 time as the daemon writes
    it (Go's RFC3339Nano: "Z", no trailing zeros in the fraction)."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 UTC time: {text!r}")
    fraction = m.group(7) or ""
    if fraction.endswith("0"):
        raise ValueError(f"RFC3339Nano drops trailing zeros: {text!r}")
    parts = tuple(int(g) for g in m.groups()[:6])
    return calendar.timegm(parts + (0, 0, 0)) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


# ---------------------------------------------------------------------- Prometheus text format

class ExpositionError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]  # in the order written
    value: float

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass
class Family:
    name: str
    type: str | None = None
    help: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def value(self, name: str | None = None, **labels: str) -> float:
        """The one sample called `name` (default: the family's own name)
        whose labels are exactly `labels`."""
        name = name or self.name
        if "ip_family" not in labels and any(k == "ip_family" for s in self.samples for k, _ in s.labels):
            labels = {"ip_family": "IPv4", **labels}  # kube-proxy's per-family series: IPv4's
        found = [s for s in self.samples if s.name == name and dict(s.labels) == labels]
        if len(found) != 1:
            raise KeyError(f"{name}{labels}: {len(found)} samples")
        return found[0].value

    def buckets(self) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of an unlabelled histogram (of a
        per-family one: the IPv4 series)."""
        return [(parse_value(s.label("le")), s.value) for s in self.samples
                if s.name == self.name + "_bucket" and s.label("ip_family") in (None, "IPv4")]


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_value(text: str) -> float:
    """A sample value as Prometheus client libraries write it: a decimal
    float, +Inf, -Inf or NaN (nothing else: no "inf", no hex, no "1_000")."""
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.lstrip("+"))
    if not _FLOAT.match(text):
        raise ExpositionError(f"bad value {text!r}")
    return float(text)


def _unescape(text: str, allowed: dict[str, str], what: str) -> str:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in allowed:
                raise ExpositionError(f"invalid escape in {what}: {text!r}")
            out.append(allowed[text[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_sample(line: str) -> Sample:
    m = _METRIC_NAME.match(line)
    if not m:
        raise ExpositionError("sample line does not start with a metric name")
    name, pos = m.group(), m.end()
    labels: list[tuple[str, str]] = []
    if pos < len(line) and line[pos] == "{":
        pos += 1
        while True:
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos < len(line) and line[pos] == "}":
                pos += 1
                break
            lm = _LABEL_NAME.match(line, pos)
            if not lm:
                raise ExpositionError(f"bad label name at column {pos + 1}")
            key, pos = lm.group(), lm.end()
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if line[pos:pos + 2] != '="':
                raise ExpositionError(f"label {key}: expected =\"")
            pos += 2
            start = pos
            while pos < len(line) and line[pos] != '"':
                pos += 2 if line[pos] == "\\" else 1
            if pos >= len(line):
                raise ExpositionError(f"label {key}: unterminated value")
            value = _unescape(line[start:pos], {"\\": "\\", '"': '"', "n": "\n"}, f"label {key}")
            pos += 1
            if key in (k for k, _ in labels):
                raise ExpositionError(f"label {key} repeated")
            labels.append((key, value))
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos < len(line) and line[pos] == ",":
                pos += 1  # a trailing comma before } is allowed
            elif pos < len(line) and line[pos] == "}":
                continue
            else:
                raise ExpositionError(f"label {key}: expected , or }}")
    rest = line[pos:]
    if not rest or rest[0] not in " \t":
        raise ExpositionError("expected blank before the value")
    tokens = rest.split()
    if not 1 <= len(tokens) <= 2:
        raise ExpositionError(f"expected value [timestamp], got {rest.strip()!r}")
    if len(tokens) == 2 and not re.fullmatch(r"-?\d+", tokens[1]):
        raise ExpositionError(f"bad timestamp {tokens[1]!r}")
    return Sample(name, tuple(labels), parse_value(tokens[0]))


def _family_of(sample_name: str, families: dict[str, Family]) -> Family:
    for suffix, types in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                          ("_count", ("histogram", "summary"))):
        base = sample_name[:-len(suffix)]
        if sample_name.endswith(suffix) and base in families and families[base].type in types:
            return families[base]
    family = families.get(sample_name)
    if family is None or family.type is None:
        raise ExpositionError(f"sample {sample_name} has no # TYPE line before it")
    if family.type == "histogram":
        raise ExpositionError(f"histogram {sample_name}: a sample must be _bucket, _sum or _count")
    return family


def _check_histogram(family: Family) -> None:
    groups: dict[tuple, dict] = {}
    for s in family.samples:
        key = tuple((k, v) for k, v in s.labels if k != "le")
        g = groups.setdefault(key, {"buckets": [], "sum": [], "count": []})
        if s.name.endswith("_bucket"):
            if s.label("le") is None:
                raise ExpositionError(f"{s.name}{dict(s.labels)}: bucket without le")
            g["buckets"].append((parse_value(s.label("le")), s.value))
        else:
            if s.label("le") is not None:
                raise ExpositionError(f"{s.name}: le on a _sum/_count sample")
            g["sum" if s.name.endswith("_sum") else "count"].append(s.value)
    for key, g in groups.items():
        where = f"histogram {family.name}{dict(key)}"
        if len(g["sum"]) != 1 or len(g["count"]) != 1:
            raise ExpositionError(f"{where}: needs exactly one _sum and one _count")
        bounds = [b for b, _ in g["buckets"]]
        if not bounds or bounds[-1] != math.inf:
            raise ExpositionError(f"{where}: the last bucket must be le=\"+Inf\"")
        if any(math.isnan(b) for b in bounds) or any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise ExpositionError(f"{where}: le bounds not strictly increasing: {bounds}")
        counts = [c for _, c in g["buckets"]]
        if any(c < 0 or c != int(c) for c in counts) or any(a > b for a, b in zip(counts, counts[1:])):
            raise ExpositionError(f"{where}: bucket counts not cumulative whole numbers: {counts}")
        if counts[-1] != g["count"][0]:
            raise ExpositionError(f"{where}: +Inf bucket {counts[-1]} != _count {g['count'][0]}")
        if math.isnan(g["sum"][0]):
            raise ExpositionError(f"{where}: _sum is NaN")


def parse_exposition(text: str) -> dict[str, Family]:
    """Parses the Prometheus text format (0.0.4) strictly, as promtool and
    Prometheus's own parser would, plus what every client library does: each
    family has one # HELP and one # TYPE before its samples, its samples are
    contiguous, no series repeats, histograms are complete and cumulative.
    Raises ExpositionError naming the line."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    finished: set[str] = set()  # families whose samples ended
    series: set[tuple] = set()
    for number, line in enumerate(text[:-1].split("\n"), 1):
        try:
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
                    continue  # a plain comment
                name = parts[2]
                if not _METRIC_NAME.fullmatch(name):
                    raise ExpositionError(f"bad metric name {name!r}")
                family = families.setdefault(name, Family(name))
                if family.samples or name in finished:
                    raise ExpositionError(f"# {parts[1]} {name} after its samples")
                text_part = parts[3] if len(parts) == 4 else ""
                if parts[1] == "HELP":
                    if family.help is not None:
                        raise ExpositionError(f"second # HELP for {name}")
                    family.help = _unescape(text_part, {"\\": "\\", "n": "\n"}, f"help of {name}")
                else:
                    if family.type is not None:
                        raise ExpositionError(f"second # TYPE for {name}")
                    if text_part not in _TYPES:
                        raise ExpositionError(f"unknown type {text_part!r} for {name}")
                    family.type = text_part
                continue
            sample = _parse_sample(line)
            family = _family_of(sample.name, families)
            if family is not current:
                if current is not None:
                    finished.add(current.name)
                if family.name in finished:
                    raise ExpositionError(f"samples of {family.name} are not contiguous")
                current = family
            key = (sample.name, tuple(sorted(sample.labels)))
            if key in series:
                raise ExpositionError(f"series {sample.name}{dict(sample.labels)} repeated")
            series.add(key)
            if family.type == "counter" and not sample.value >= 0:
                raise ExpositionError(f"counter {sample.name} = {sample.value}")
            family.samples.append(sample)
        except ExpositionError as e:
            raise ExpositionError(f"line {number}: {e}: {line!r}") from None
    for family in families.values():
        if family.type is None or family.help is None:
            raise ExpositionError(f"{family.name}: needs both # HELP and # TYPE")
        if family.type == "histogram":
            _check_histogram(family)
    return families


# kube-proxy's metrics (proxy/metrics.cc) and svcproxy's, with their types.
KUBE_PROXY_METRICS = {
    "kubeproxy_sync_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_sync_full_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_sync_partial_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds": "gauge",
    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": "gauge",
    "kubeproxy_network_programming_duration_seconds": "histogram",
    "kubeproxy_sync_proxy_rules_endpoint_changes_pending": "gauge",
    "kubeproxy_sync_proxy_rules_endpoint_changes_total": "counter",
    "kubeproxy_sync_proxy_rules_service_changes_pending": "gauge",
    "kubeproxy_sync_proxy_rules_service_changes_total": "counter",
    "kubeproxy_sync_proxy_rules_nftables_sync_failures_total": "counter",
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total": "gauge",  # a gauge despite _total, as kube-proxy
    "kubeproxy_proxy_healthz_total": "counter",
    "kubeproxy_proxy_livez_total": "counter",
    "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total": "counter",
    "kubeproxy_conntrack_reconciler_sync_duration_seconds": "histogram",
    "kubeproxy_conntrack_reconciler_deleted_entries_total": "counter",
}
# The ones kube-proxy 1.33+ labels by IP family (every svcproxy sync is both families').
PER_FAMILY = {name for name in KUBE_PROXY_METRICS if "changes" not in name and "proxy_healthz" not in name
              and "proxy_livez" not in name}
SVCPROXY_METRICS = {
    "svcproxy_kernel_objects": "gauge",
    "svcproxy_conntrack_entries_deleted_total": "counter",
    "svcproxy_manifest_decode_errors_total": "counter",
    "svcproxy_manifest_read_errors_total": "counter",
    "svcproxy_watch_restarts_total": "counter",
    "svcproxy_watch_relists_total": "counter",
}
# kube-proxy's buckets: ExponentialBuckets(0.001, 2, 15) for sync durations;
# 0, 0.25, 0.5, 1..59, 60..115 by 5, 120..300 by 30 for network programming.
SYNC_BUCKETS = [0.001 * 2 ** i for i in range(15)] + [math.inf]
PROGRAMMING_BUCKETS = ([0, 0.25, 0.5] + list(range(1, 60)) + list(range(60, 120, 5)) + list(range(120, 301, 30))
                       + [math.inf])


# ---------------------------------------------------------------------- HTTP from a namespace

def http_agent() -> int:
    """`--http-agent`: one JSON request per stdin line ({"host", "port",
    "path", "timeout"}), one JSON answer per stdout line ({"status",
    "headers", "body"} or {"error": "refused" | ...}, with "t0"/"t1" wall
    times around the request). Runs inside a namespace."""
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        t0 = time.time()
        try:
            conn = http.client.HTTPConnection(request["host"], request["port"], timeout=request.get("timeout", 2.0))
            try:
                conn.request("GET", request["path"])
                response = conn.getresponse()
                answer = {"status": response.status, "headers": {k.lower(): v for k, v in response.getheaders()},
                          "body": response.read().decode(errors="replace")}
            finally:
                conn.close()
        except ConnectionRefusedError:
            answer = {"error": "refused"}
        except (socket.timeout, TimeoutError):
            answer = {"error": "timeout"}
        except Exception as exc:  # reported, never fatal
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        answer.update(t0=t0, t1=time.time())
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


class HttpAgent:
    """This file's --http-agent, running in `ns`; get() is synchronous."""

    def __init__(self, box: sb.Sandbox, ns: str):
        self.proc = box.spawn(ns, [sys.executable, str(Path(__file__).resolve()), "--http-agent"], name="http-agent")

    def get(self, host: str, port: int, path: str, timeout: float = 10.0) -> dict:
        mark = len(self.proc.lines)
        self.proc.send_line(json.dumps({"host": host, "port": port, "path": path, "timeout": timeout}))
        self.proc.lines.wait_for(lambda line: True, start=mark, timeout=timeout + 10,
                                 what=f"HTTP answer from {host}:{port}{path}")
        return json.loads(self.proc.lines.snapshot(mark)[0])

    def stop(self) -> None:
        self.proc.stop()


# ---------------------------------------------------------------------- manifests

AUTOSCALER_TAINT = {"key": "ToBeDeletedByClusterAutoscaler", "value": "1790000000", "effect": "NoSchedule"}
HTTP_PORT = [{"name": "http", "port": 8080, "protocol": "TCP"}]


def endpoints(pods: list[Pod], *, node: str | None = None, ready: bool = True) -> list[dict]:
    """EndpointSlice entries for `pods`, on `node` (default: the pod's own)."""
    out = []
    for pod in pods:
        if node:
            pod = dataclasses.replace(pod, node=node)
        entry = {"pod": pod}
        if not ready:
            entry.update(ready=False, serving=False, terminating=False)
        out.append(entry)
    return out


def tcp_service(name: str, ip: str, eps: list[dict], *, node_port: int | None = None,
                trigger_time: float | None = None) -> list[dict]:
    """A ClusterIP (or NodePort) service, TCP 80 -> 8080, and its slice."""
    port = {"name": "http", "port": 80, "targetPort": 8080}
    if node_port:
        port["nodePort"] = node_port
    svc = service(name, [ip], [port], namespace=NS, type="NodePort" if node_port else "ClusterIP")
    eps_slice = endpoint_slice(name, "abcde", 4, eps, HTTP_PORT, namespace=NS)
    if trigger_time is not None:
        eps_slice["metadata"]["annotations"] = {TRIGGER_ANNOTATION: rfc3339(trigger_time)}
    return [svc, eps_slice]


def lb_local_service(eps: list[dict]) -> list[dict]:
    """LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort HC_PORT."""
    svc = service("lb-local", [LB_IP], [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": LB_NODE_PORT}],
                  namespace=NS, type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=HC_PORT,
                  ingress=[LB_LB_IP])
    return [svc, endpoint_slice("lb-local", "klmno", 4, eps, HTTP_PORT, namespace=NS)]


# ---------------------------------------------------------------------- base test case

class LifecycleTestCase(unittest.TestCase):
    """Starts `svcproxy run` on a fresh manifests directory (the node, plus
    what base_manifests() adds), waits for its start sync, stops it
    afterwards. An HTTP agent runs in the external client's namespace."""
    sync_period = "1h"  # no periodic full sync unless a test asks for one
    extra_flags: list[str] = []

    def base_manifests(self) -> None:
        pass

    def setUp(self):
        self.box = Env.box
        self.pods = self.box.pods
        self.m = Manifests(Env.tmp / self.id().rpartition(".")[2])
        self.m.put("nodes.yaml", [node_object(NODE_IPS)])
        self.base_manifests()
        self.flags = [*sb.NODE_FLAGS, *HTTP_FLAGS, "--sync-period", self.sync_period, *self.extra_flags]
        self.agent = HttpAgent(self.box, self.box.ext)
        self.addCleanup(self.agent.stop)
        self.answers: Counter = Counter()  # (path, status) of every /healthz and /livez answer
        self.daemons: list[sb.Daemon] = []  # every daemon this test started, in order
        self.start_daemon()

    def start_daemon(self) -> sb.SyncLine:
        self.daemon = self.box.start_daemon(self.m.dir, self.flags)
        self.daemons.append(self.daemon)
        self.addCleanup(self.daemon.stop)
        start = self.daemon.wait_sync(reason="start", timeout=30)
        self.assertEqual(start.mode, "full", start.text)
        self.start = start
        return start

    def edit(self, action, *args) -> sb.SyncLine:
        """Applies one manifests edit and returns the sync it caused."""
        mark = self.daemon.mark()
        action(*args)
        return self.daemon.wait_sync(after=mark, reason="manifests-changed", timeout=10)

    def compiled(self) -> str:
        return self.box.svcproxy_run(["rules", "--manifests", str(self.m.dir), *sb.NODE_FLAGS]).stdout

    def live(self) -> str:
        return self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout

    def log_tail(self, n: int = 20) -> str:
        return "\n    ".join(self.daemon.lines.snapshot()[-n:])

    # ------------------------------------------------------------ HTTP

    def health(self, path: str) -> dict:
        """GET path on the healthz address; the answer with its JSON body
        parsed ("json"). Counted in self.answers."""
        answer = self.agent.get(NODE_V4, HEALTHZ_PORT, path)
        self.assertNotIn("error", answer, f"GET {path}: {answer}")
        self.answers[(path, answer["status"])] += 1
        self.assertEqual(answer["headers"].get("content-type"), "application/json", answer)
        answer["json"] = json.loads(answer["body"])
        return answer

    def poll(self, fetch, done, *, timeout: float, what: str) -> tuple[dict, list[dict]]:
        """Calls fetch() every POLL_INTERVAL until done(answer) or the
        deadline; returns (that answer, every answer)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            answer = fetch()
            seen.append(answer)
            if done(answer):
                return answer, seen
            if time.monotonic() > deadline:
                self.fail(f"{what}: not within {timeout} s; last answer {answer}; daemon log:\n    {self.log_tail()}")
            time.sleep(POLL_INTERVAL)  # the interval of a poll with a deadline, not a synchronization

    def scrape(self) -> dict[str, Family]:
        answer = self.agent.get(NODE_V4, METRICS_PORT, "/metrics")
        self.assertEqual(answer.get("status"), 200, answer)
        self.assertTrue(answer["headers"].get("content-type", "").startswith("text/plain; version=0.0.4"), answer)
        try:
            return parse_exposition(answer["body"])
        except ExpositionError as e:
            self.fail(f"/metrics is not valid text exposition: {e}")

    def health_check(self, ip: str = NODE_V4) -> dict:
        answer = self.agent.get(ip, HC_PORT, "/")
        if "body" in answer and answer["headers"].get("content-type") == "application/json":
            answer["json"] = json.loads(answer["body"])
        return answer

    def assert_health_body(self, answer: dict, *, path: str, healthy: bool, node_eligible: bool = True) -> dict:
        """kube-proxy's body: lastUpdated, currentTime (the answer's own
        time), healthy (and nodeEligible on /healthz); when healthy,
        lastUpdated is reported as currentTime."""
        body = answer["json"]
        keys = {"lastUpdated", "currentTime", "healthy"} | ({"nodeEligible"} if path == "/healthz" else set())
        self.assertEqual(set(body), keys, answer["body"])
        self.assertIs(body["healthy"], healthy and (node_eligible or path == "/livez"), answer["body"])
        if path == "/healthz":
            self.assertIs(body["nodeEligible"], node_eligible, answer["body"])
        now = parse_rfc3339(body["currentTime"])
        self.assertGreaterEqual(now, answer["t0"] - 0.01, f"currentTime before the request: {answer}")
        self.assertLessEqual(now, answer["t1"] + 0.01, f"currentTime after the answer: {answer}")
        if body["healthy"]:
            self.assertEqual(body["lastUpdated"], body["currentTime"], answer["body"])
        return body


# ---------------------------------------------------------------------- tests

class TestHealthz(LifecycleTestCase):
    sync_period = "1s"  # unhealthy 2 s after a queued change is not applied

    def base_manifests(self):
        self.m.put("svc-web.yaml", tcp_service("web", WEB_IP, endpoints([self.pods["p1"], self.pods["p2"]])))
        self.m.put("svc-lb.yaml", lb_local_service(endpoints([self.pods["p1"], self.pods["p2"]])))

    def assert_counted(self) -> None:
        """kubeproxy_proxy_{healthz,livez}_total equal the answers received."""
        families = self.scrape()
        for path, metric in (("/healthz", "kubeproxy_proxy_healthz_total"),
                             ("/livez", "kubeproxy_proxy_livez_total")):
            for code in ("200", "503"):
                self.assertEqual(families[metric].value(code=code), self.answers[(path, int(code))],
                                 f"{metric}{{code={code}}} vs the answers this test received: {dict(self.answers)}")

    def test_unapplied_change_turns_healthz_and_livez_503_after_twice_the_sync_period(self):
        box = self.box
        for path in ("/healthz", "/livez"):
            answer = self.health(path)
            self.assertEqual(answer["status"], 200, answer)
            self.assert_health_body(answer, path=path, healthy=True)

        # Another program takes the table name `ip svcproxy` with `flags
        # owner`: while its netlink socket is open, the kernel refuses every
        # transaction that touches the table (EPERM), so no sync can succeed.
        holder = box.spawn(box.node, ["nft", "-i"], name="nft-owner")
        self.addCleanup(holder.stop)
        holder.send_line("delete table ip svcproxy; add table ip svcproxy { flags owner; }")
        holder.send_line("list table ip svcproxy")
        holder.lines.wait_for(r"flags owner", timeout=10, what="nft -i holding table ip svcproxy")

        mark = self.daemon.mark()
        t_edit = time.time()
        self.m.put("svc-new.yaml", tcp_service("new", "10.96.5.11", endpoints([self.pods["p3"]])))
        failed = self.daemon.wait_sync(after=mark, timeout=10, allow_failed=True)
        self.assertFalse(failed.ok, f"a sync succeeded while the table was owned by another program: {failed.text}")
        # Queued less than 2 s ago: still healthy.
        answer = self.health("/healthz")
        if answer["t1"] < t_edit + 1.5:
            self.assertEqual(answer["status"], 200, f"unhealthy {answer['t1'] - t_edit:.3f} s after the edit")

        unhealthy, seen = self.poll(lambda: self.health("/healthz"), lambda a: a["status"] == 503, timeout=10,
                                    what="/healthz 503 after the change stayed unapplied")
        became = unhealthy["t1"] - t_edit
        print(f"\n  healthz: 503 {became:.3f} s after the edit (sync period 1 s)", file=sys.stderr)
        self.assertGreaterEqual(became, 2.0, f"503 before 2 × sync period: {unhealthy}")
        # And not later: every 200 was asked for before the change, queued
        # at kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds, had
        # waited 2 s.
        queued = self.scrape()["kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"].value()
        self.assertGreaterEqual(queued, t_edit)
        last_200 = max((a["t0"] for a in seen if a["status"] == 200), default=t_edit)
        self.assertLess(last_200, queued + 2.0 + 0.01,
                        f"200 asked for {last_200 - queued:.3f} s after the change was queued")
        body = self.assert_health_body(unhealthy, path="/healthz", healthy=False)
        last_updated = parse_rfc3339(body["lastUpdated"])
        self.assertLessEqual(last_updated, t_edit, f"lastUpdated must be the last successful sync: {body}")
        self.assertGreaterEqual(last_updated, self.start.time - 1.0, body)
        livez = self.health("/livez")
        self.assertEqual(livez["status"], 503, livez)
        self.assertEqual(self.assert_health_body(livez, path="/livez", healthy=False)["lastUpdated"],
                         body["lastUpdated"])
        # The health-check node port reports the proxy's health too.
        hc = self.health_check()
        self.assertEqual(hc.get("status"), 503, hc)
        self.assertEqual((hc["json"]["localEndpoints"], hc["json"]["serviceProxyHealthy"]), (2, False), hc["body"])
        self.assertEqual(hc["headers"].get("x-load-balancing-endpoint-weight"), "2", hc)

        # The other program exits, its table goes: the next sync applies it.
        mark = self.daemon.mark()
        holder.stop()
        deadline = time.monotonic() + 15
        while True:
            sync = self.daemon.wait_sync(after=mark, timeout=max(0.1, deadline - time.monotonic()), allow_failed=True)
            if sync.ok:
                break
            mark = sync.index + 1
        self.assertEqual(sync.mode, "full", f"the first sync after a failure must be full: {sync.text}")
        healthy, _ = self.poll(lambda: self.health("/healthz"), lambda a: a["status"] == 200, timeout=10,
                               what="/healthz 200 after the change was applied")
        self.assert_health_body(healthy, path="/healthz", healthy=True)
        livez = self.health("/livez")
        self.assertEqual(livez["status"], 200, livez)
        hc = self.health_check()
        self.assertEqual((hc.get("status"), hc["json"]["serviceProxyHealthy"]), (200, True), hc)
        self.assertEqual(self.live(), self.compiled(), "the change queued during the failure is not programmed")
        r = box.request(box.ext, "10.96.5.11", 80, count=4)
        self.assertEqual(r.ids, ["p3:8080"] * 4, f"{r.outcomes} {r.errors}")
        families = self.scrape()
        self.assertGreaterEqual(families["kubeproxy_sync_proxy_rules_nftables_sync_failures_total"].value(), 1)
        self.assert_counted()

    def test_node_being_deleted_or_tainted_fails_healthz_but_not_livez(self):
        answer = self.health("/healthz")
        self.assertEqual(answer["status"], 200, answer)
        for what, node in (("deletionTimestamp", node_object(NODE_IPS, deleting=True)),
                           ("ToBeDeletedByClusterAutoscaler taint", node_object(NODE_IPS, taints=[AUTOSCALER_TAINT]))):
            with self.subTest(what):
                self.edit(self.m.put, "nodes.yaml", [node])
                answer, _ = self.poll(lambda: self.health("/healthz"), lambda a: a["status"] == 503, timeout=10,
                                      what=f"/healthz 503 with the Node's {what}")
                self.assert_health_body(answer, path="/healthz", healthy=True, node_eligible=False)
                livez = self.health("/livez")
                self.assertEqual(livez["status"], 200, f"/livez must ignore the Node: {livez}")
                self.assert_health_body(livez, path="/livez", healthy=True)
                # A health-check node port follows the proxy, not the Node.
                hc = self.health_check()
                self.assertEqual((hc.get("status"), hc["json"]["serviceProxyHealthy"]), (200, True), hc)

                self.edit(self.m.put, "nodes.yaml", [node_object(NODE_IPS)])
                answer, _ = self.poll(lambda: self.health("/healthz"), lambda a: a["status"] == 200, timeout=10,
                                      what=f"/healthz 200 once the Node lost its {what}")
                self.assert_health_body(answer, path="/healthz", healthy=True)
        # A taint with another key is not a reason to drain.
        self.edit(self.m.put, "nodes.yaml",
                  [node_object(NODE_IPS, taints=[{"key": "example.com/other", "effect": "NoSchedule"}])])
        answer = self.health("/healthz")
        self.assertEqual(answer["status"], 200, answer)
        self.assert_counted()


class TestHealthCheckNodePort(LifecycleTestCase):

    def base_manifests(self):
        self.m.put("svc-lb.yaml", lb_local_service(
            endpoints([self.pods["p1"], self.pods["p2"]]) + endpoints([self.pods["p3"]], node=sb.REMOTE_NODE_NAME)))

    def wait_hc(self, status: int | str, local: int | None, *, ip: str = NODE_V4, what: str) -> dict:
        """Polls the health-check port until it answers `status` with
        localEndpoints `local` (or until it refuses, status="refused"): the
        daemon opens, closes and updates the port just after its log line."""
        def done(a: dict) -> bool:
            if status == "refused":
                return a.get("error") == "refused"
            return a.get("status") == status and a.get("json", {}).get("localEndpoints") == local
        answer, _ = self.poll(lambda: self.health_check(ip), done, timeout=10, what=f"{ip}:{HC_PORT} {what}")
        return answer

    def assert_hc_answer(self, answer: dict, local: int) -> None:
        """kube-proxy's answer: 200 iff there are local ready endpoints."""
        self.assertEqual(answer["status"], 200 if local else 503, answer)
        self.assertEqual(answer["json"], {"service": {"namespace": NS, "name": "lb-local"}, "localEndpoints": local,
                                          "serviceProxyHealthy": True}, answer["body"])
        self.assertEqual(answer["headers"].get("x-load-balancing-endpoint-weight"), str(local), answer["headers"])
        self.assertEqual(answer["headers"].get("content-type"), "application/json", answer["headers"])

    def test_health_check_node_port_follows_local_ready_endpoints(self):
        p1, p2, p3 = self.pods["p1"], self.pods["p2"], self.pods["p3"]
        remote_p3 = endpoints([p3], node=sb.REMOTE_NODE_NAME)
        # Two ready endpoints on this node (p3 is on another node), on both node IPs.
        for ip in (NODE_V4, NODE_V6):
            self.assert_hc_answer(self.wait_hc(200, 2, ip=ip, what="2 local endpoints"), 2)

        steps = [
            ("p1 unready", endpoints([p1], ready=False) + endpoints([p2]) + remote_p3, 1),
            ("both unready", endpoints([p1, p2], ready=False) + remote_p3, 0),
            ("both ready again", endpoints([p1, p2]) + remote_p3, 2),
            ("both on the other node", endpoints([p1, p2], node=sb.REMOTE_NODE_NAME) + remote_p3, 0),
            ("back on this node", endpoints([p1, p2]) + remote_p3, 2),
        ]
        for what, eps, local in steps:
            self.edit(self.m.put, "svc-lb.yaml", lb_local_service(eps))
            self.assert_hc_answer(self.wait_hc(200 if local else 503, local, what=what), local)

        # The service goes: the port closes, on both node IPs.
        self.edit(self.m.remove, "svc-lb.yaml")
        self.wait_hc("refused", None, what="connection refused once the service is gone")
        self.wait_hc("refused", None, ip=NODE_V6, what="connection refused once the service is gone")
        # And comes back: open again.
        self.edit(self.m.put, "svc-lb.yaml", lb_local_service(endpoints([p1, p2]) + remote_p3))
        for ip in (NODE_V4, NODE_V6):
            self.assert_hc_answer(self.wait_hc(200, 2, ip=ip, what="the port open again"), 2)


class TestMetrics(LifecycleTestCase):
    OLD = 3600.0  # the start manifests' trigger time is this much older than the daemon

    def base_manifests(self):
        self.t_base = time.time()
        self.m.put("svc-web.yaml", tcp_service("web", WEB_IP, endpoints([self.pods["p1"], self.pods["p2"]]),
                                               trigger_time=self.t_base - self.OLD))

    def setUp(self):
        super().setUp()
        self.synced_count = 0
        self.m0 = self.scrape_after(self.start)

    def scrape_after(self, sync: sb.SyncLine) -> dict[str, Family]:
        """Metrics once they include all of `sync`: one more sync observed
        than before, and svcproxy_kernel_objects equal to what `svcproxy
        rules` compiles from the manifests (the daemon updates its metrics
        one by one around its log line; the gauges come last)."""
        before = self.synced_count
        want = self.compiled_objects()
        families: dict[str, Family] = {}

        def fetch():
            families.clear()
            families.update(self.scrape())
            return {"count": self.value(families, "kubeproxy_sync_proxy_rules_duration_seconds", "_count"),
                    "objects": {kind: self.value(families, "svcproxy_kernel_objects", kind=kind) for kind in want}}
        answer, _ = self.poll(fetch, lambda a: a["count"] > before and a["objects"] == want, timeout=10,
                              what=f"metrics of {sync.text} with svcproxy_kernel_objects = {want} (from `svcproxy "
                                   f"rules --format json`)")
        self.assertEqual(answer["count"], before + 1, "one sync, one observation")
        self.synced_count = answer["count"]
        return families

    def compiled_objects(self) -> dict[str, int]:
        """Chains, sets and elements in what `svcproxy rules` compiles from
        the manifests (both families' tables)."""
        ir = json.loads(self.box.svcproxy_run(["rules", "--manifests", str(self.m.dir), *sb.NODE_FLAGS,
                                               "--format", "json"]).stdout)
        tables = ir["tables"]
        return {"chains": sum(len(t["chains"]) for t in tables), "sets": sum(len(t["sets"]) for t in tables),
                "elements": sum(len(s["elements"]) for t in tables for s in t["sets"])}

    @staticmethod
    def value(families: dict[str, Family], name: str, suffix: str = "", **labels: str) -> float:
        return families[name].value(name + suffix, **labels)

    def test_kube_proxy_names_types_help_and_buckets(self):
        m0 = self.m0
        for name, kind in {**KUBE_PROXY_METRICS, **SVCPROXY_METRICS}.items():
            self.assertIn(name, m0, f"/metrics lacks {name}")
            self.assertEqual(m0[name].type, kind, name)
            self.assertTrue(m0[name].samples, f"{name} has no samples")
            if name.startswith("kubeproxy_"):
                self.assertTrue(m0[name].help.startswith("[ALPHA] "), f"{name}: help {m0[name].help!r}")
        for name in ("kubeproxy_sync_proxy_rules_duration_seconds", "kubeproxy_sync_full_proxy_rules_duration_seconds",
                     "kubeproxy_sync_partial_proxy_rules_duration_seconds"):
            self.assertEqual([b for b, _ in m0[name].buckets()], SYNC_BUCKETS, name)
        self.assertEqual([b for b, _ in m0["kubeproxy_network_programming_duration_seconds"].buckets()],
                         PROGRAMMING_BUCKETS)
        for name in ("kubeproxy_proxy_healthz_total", "kubeproxy_proxy_livez_total"):
            self.assertEqual({s.label("code") for s in m0[name].samples}, {"200", "503"}, name)
        self.assertEqual({s.label("traffic_policy") for s in
                          m0["kubeproxy_sync_proxy_rules_no_local_endpoints_total"].samples}, {"internal", "external"})
        for name in KUBE_PROXY_METRICS:
            families = {s.label("ip_family") for s in m0[name].samples}
            self.assertEqual(families, {"IPv4", "IPv6"} if name in PER_FAMILY else {None}, name)
        self.assertEqual({s.label("kind") for s in m0["svcproxy_kernel_objects"].samples},
                         {"chains", "sets", "elements"})

    def test_start_sync_is_counted(self):
        m0, v = self.m0, self.value
        self.assertEqual(v(m0, "kubeproxy_sync_full_proxy_rules_duration_seconds", "_count"), 1)
        self.assertEqual(v(m0, "kubeproxy_sync_partial_proxy_rules_duration_seconds", "_count"), 0)
        self.assertEqual(v(m0, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"), 0)
        self.assertAlmostEqual(v(m0, "kubeproxy_sync_proxy_rules_last_timestamp_seconds"), self.start.time, delta=0.5)
        self.assertLessEqual(v(m0, "kubeproxy_sync_proxy_rules_duration_seconds", "_sum"),
                             self.start.duration_us / 1e6 + 0.5)
        for kind in ("chains", "sets", "elements"):
            self.assertGreater(v(m0, "svcproxy_kernel_objects", kind=kind), 0, kind)

    def test_trigger_time_older_than_the_daemon_is_not_observed(self):
        # kube-proxy ignores trigger times from before it started (its
        # trackerStartTime): an hour-old change was not "programmed in an hour".
        programming = "kubeproxy_network_programming_duration_seconds"
        self.assertEqual(self.value(self.m0, programming, "_count"), 0,
                         f"the start sync observed the start manifests' hour-old trigger time: _sum "
                         f"{self.value(self.m0, programming, '_sum'):.1f} s")

    def test_endpoint_edit_moves_the_counters_and_observes_its_latency_once(self):
        m0, v = self.m0, self.value
        p1, p2, p3 = self.pods["p1"], self.pods["p2"], self.pods["p3"]
        t_trigger = time.time()
        sync = self.edit(self.m.put, "svc-web.yaml",
                         tcp_service("web", WEB_IP, endpoints([p1, p2, p3]), trigger_time=t_trigger))
        self.assertEqual(sync.mode, "partial", sync.text)
        m1 = self.scrape_after(sync)
        self.assertEqual(v(m1, "kubeproxy_sync_partial_proxy_rules_duration_seconds", "_count"),
                         v(m0, "kubeproxy_sync_partial_proxy_rules_duration_seconds", "_count") + 1)
        self.assertEqual(v(m1, "kubeproxy_sync_full_proxy_rules_duration_seconds", "_count"),
                         v(m0, "kubeproxy_sync_full_proxy_rules_duration_seconds", "_count"))
        self.assertAlmostEqual(v(m1, "kubeproxy_sync_proxy_rules_last_timestamp_seconds"), sync.time, delta=0.5)
        queued = v(m1, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds")
        self.assertTrue(t_trigger <= queued <= sync.time, f"queued at {queued}, edit at {t_trigger}, sync {sync.time}")
        self.assertGreater(v(m1, "svcproxy_kernel_objects", kind="elements"),
                           v(m0, "svcproxy_kernel_objects", kind="elements"), "one more endpoint")
        # One network programming observation: programmed − trigger time.
        programming = "kubeproxy_network_programming_duration_seconds"
        self.assertEqual(v(m1, programming, "_count") - v(m0, programming, "_count"), 1,
                         "one EndpointSlice change with a trigger time, one observation")
        latency = v(m1, programming, "_sum") - v(m0, programming, "_sum")
        self.assertGreaterEqual(latency, 0)
        self.assertLessEqual(latency, sync.time - t_trigger + 0.5, f"observed {latency} s")
        for (le, after), (_, before) in zip(m1[programming].buckets(), m0[programming].buckets()):
            self.assertEqual(after - before, 1 if latency <= le else 0,
                             f"bucket le={le} for a {latency:.6f} s observation")
        self.assertEqual(v(m1, "kubeproxy_sync_proxy_rules_endpoint_changes_pending"), 0, "pending after the sync")

        # An edit of something else: no new latency observation (that
        # trigger time was observed already).
        sync = self.edit(self.m.put, "svc-other.yaml",
                         [service("other", ["10.96.5.12"], [{"name": "http", "port": 80, "targetPort": 8080}],
                                  namespace=NS)])
        m2 = self.scrape_after(sync)
        self.assertEqual(v(m2, programming, "_count"), v(m1, programming, "_count"),
                         "a trigger time already observed was observed again")
        self.assertGreater(v(m2, "kubeproxy_sync_proxy_rules_last_timestamp_seconds"),
                           v(m1, "kubeproxy_sync_proxy_rules_last_timestamp_seconds"))
        self.assertGreater(v(m1, "kubeproxy_sync_proxy_rules_endpoint_changes_total"),
                           v(m0, "kubeproxy_sync_proxy_rules_endpoint_changes_total"),
                           "an EndpointSlice edit is not counted in kubeproxy_sync_proxy_rules_endpoint_changes_total")

    def test_service_edit_and_decode_error_are_counted(self):
        m0, v = self.m0, self.value
        sync = self.edit(self.m.put, "svc-other.yaml",
                         [service("other", ["10.96.5.12"], [{"name": "http", "port": 80, "targetPort": 8080}],
                                  namespace=NS)])
        m1 = self.scrape_after(sync)
        self.assertEqual(v(m1, "kubeproxy_sync_proxy_rules_service_changes_pending"), 0, "pending after the sync")
        # A file with one good Service and one that cannot be decoded (port
        # out of range): the bad one is skipped and counted.
        good = service("good", ["10.96.5.13"], [{"name": "http", "port": 80, "targetPort": 8080}], namespace=NS)
        bad = service("bad", ["10.96.5.14"], [{"name": "http", "port": 99999, "targetPort": 8080}], namespace=NS)
        sync = self.edit(self.m.put, "svc-mixed.yaml", [good, bad])
        m2 = self.scrape_after(sync)
        self.assertEqual(v(m2, "svcproxy_manifest_decode_errors_total"),
                         v(m1, "svcproxy_manifest_decode_errors_total") + 1, "one object skipped")
        self.assertGreater(v(m1, "kubeproxy_sync_proxy_rules_service_changes_total"),
                           v(m0, "kubeproxy_sync_proxy_rules_service_changes_total"),
                           "a Service edit is not counted in kubeproxy_sync_proxy_rules_service_changes_total")


class TestMinSyncPeriod(LifecycleTestCase):
    # The first periodic sync (6 s after start) is the barrier after which
    # no further sync caused by the burst can come: the coalesced sync is due
    # at start + 2 s, a second one could come no sooner than 2 s after that.
    sync_period = "6s"
    extra_flags = ["--min-sync-period", "2s"]
    BURST = 8

    def base_manifests(self):
        self.m.put("svc-burst.yaml", tcp_service("burst", BURST_IP, endpoints([self.pods["p1"]])))

    def burst(self) -> tuple[float, float]:
        """2 × BURST edits as fast as they go: each moves the service to
        another pod and adds a service; the last leaves it on p3. Returns
        the wall times of the first and the last."""
        order = ["p2", "p3", "p1"]
        t_first = time.time()
        for i in range(self.BURST):
            pod = self.pods[order[i % 3]] if i < self.BURST - 1 else self.pods["p3"]
            self.m.put("svc-burst.yaml", tcp_service("burst", BURST_IP, endpoints([pod])))
            self.m.put(f"svc-extra-{i}.yaml", tcp_service(f"extra-{i}", f"10.96.6.{i + 1}", endpoints([pod])))
        return t_first, time.time()

    def test_a_burst_of_edits_is_one_sync_of_the_last_edit_no_sooner_than_min_sync_period(self):
        box = self.box
        # The burst must end well within --min-sync-period of the start sync.
        # A machine stall can break that; then start over (a new daemon on
        # the base manifests), at most 3 times.
        for attempt in range(1, 4):
            t_first, t_last = self.burst()
            if t_last - self.start.time < 1.0:
                break
            print(f"\n  min-sync-period: attempt {attempt}: the burst ended {t_last - self.start.time:.3f} s after "
                  f"the start sync; starting over", file=sys.stderr)
            self.daemon.stop()
            for i in range(self.BURST):
                self.m.remove(f"svc-extra-{i}.yaml")
            self.base_manifests()
            self.start_daemon()
        else:
            self.fail("three times, the burst did not end within 1 s of the start sync: this machine is too slow "
                      "for a burst well within --min-sync-period")

        sync = self.daemon.wait_sync(after=self.start.index + 1, timeout=10)
        self.assertEqual((sync.reason, sync.mode), ("manifests-changed", "partial"), sync.text)
        began = sync.time - sync.duration_us / 1e6
        print(f"\n  min-sync-period: {2 * self.BURST} edits in {1000 * (t_last - t_first):.1f} ms; "
              f"one sync {began - self.start.time:.3f} s after the start sync", file=sys.stderr)
        # The daemon takes its own timestamp for the period a few µs before
        # it writes the start line, on CLOCK_MONOTONIC (the log: REALTIME).
        self.assertGreaterEqual(began, self.start.time + 2.0 - 0.01,
                                f"synced {began - self.start.time:.3f} s after the previous sync "
                                f"(--min-sync-period 2s): {sync.text}")
        # It programmed the last edit.
        self.assertEqual(self.live(), self.compiled(), "the coalesced sync did not program the last edit")
        r = box.request(box.ext, BURST_IP, 80, count=8)
        self.assertEqual(r.ids, ["p3:8080"] * 8, f"{r.outcomes} {r.errors}")
        r = box.request(box.ext, f"10.96.6.{self.BURST}", 80, count=2)
        self.assertEqual(r.ids, ["p3:8080"] * 2, f"the last added service: {r.outcomes} {r.errors}")

        # Nothing more until the periodic sync.
        periodic = self.daemon.wait_sync(after=sync.index + 1, timeout=15)
        between = [s.text for s in self.daemon.syncs(self.start.index + 1) if s.index < periodic.index]
        self.assertEqual(periodic.reason, "sync-period",
                         "another sync after the coalesced one:\n    " + "\n    ".join(between + [periodic.text]))
        self.assertEqual(len(between), 1, "\n    ".join(between))


class TestRestartUnderLoad(LifecycleTestCase):
    MIN_REQUESTS = 3000
    RESTARTS = 2

    def base_manifests(self):
        pods = endpoints([self.pods["p1"], self.pods["p2"]])
        self.m.put("svc-web.yaml", tcp_service("web", WEB_IP, pods))
        self.m.put("svc-np.yaml", tcp_service("np", NP_IP, pods, node_port=NODE_PORT))

    def test_kill_9_and_restart_twice_under_load_fails_no_request(self):
        box = self.box
        # Two service streams under test, and a control stream straight to a
        # pod (no service, no NAT): when the control is slow too, the machine
        # stalled (shared vCPUs can stall every process for seconds). Hence
        # the long timeout: only the restarts change the kernel, and what
        # they could break shows as a refused/reset connection, as no answer
        # in 10 s (rules gone), or as a SYN answered only when resent (1 s)
        # by a request around a start sync.
        timeout = 10
        loops = {"clusterip": box.start_stream(box.ext, "tcp-loop", WEB_IP, 80, parallel=2, timeout=timeout),
                 "nodeport": box.start_stream(box.ext, "tcp-loop", NODE_V4, NODE_PORT, parallel=2, timeout=timeout),
                 "control": box.start_stream(box.ext, "tcp-loop", self.pods["p3"].v4, 8080, parallel=1,
                                             timeout=timeout)}
        services = ("clusterip", "nodeport")
        for loop in loops.values():
            self.addCleanup(loop.stop)

        def is_request(line: str) -> bool:
            return '"t0"' in line

        def wait_requests(count: int, what: str) -> None:
            for name in services:
                loop = loops[name]
                loop.lines.wait_count(is_request, count, start=len(loop.lines), timeout=20, what=f"{name}: {what}")

        wait_requests(100, "requests before the first kill")
        restarts = []
        for n in range(1, self.RESTARTS + 1):
            rc, _ = self.daemon.stop(signal.SIGKILL, timeout=5)
            self.assertEqual(rc, -signal.SIGKILL, f"daemon {n} exit status")
            t_killed = time.time()
            wait_requests(100, f"requests while no daemon runs ({n})")  # the rules stay in the kernel
            start = self.start_daemon()
            first = self.daemon.syncs()[0]
            self.assertEqual(first.index, start.index, f"daemon {n + 1}'s first sync: {first.text}")
            self.assertTrue(start.ok and start.reason == "start" and start.mode == "full", start.text)
            restarts.append((t_killed, start))
            wait_requests(100, f"requests after restart {n}")
        # Until at least MIN_REQUESTS in all, split between the two.
        total = sum(len([r for r in loops[name].json_lines() if "t0" in r]) for name in services)
        if total < self.MIN_REQUESTS:
            wait_requests((self.MIN_REQUESTS - total) // 2 + 1, "requests to reach the total")
        for loop in loops.values():
            loop.stop()

        results = {name: [r for r in loop.json_lines() if "t0" in r] for name, loop in loops.items()}
        events = [(f"kill {n}", k) for n, (k, _) in enumerate(restarts, 1)] + \
                 [(f"start sync {n}", s.time) for n, (_, s) in enumerate(restarts, 1)]

        def when(t: float) -> str:  # relative to the nearest kill or start sync
            name, at = min(events, key=lambda e: abs(e[1] - t))
            return f"{1000 * (t - at):+.0f} ms from {name}"

        def describe(name: str, r: dict) -> str:
            return f"{name}: {r.get('error', 'answered')} t0 {when(r['t0'])}, took {1000 * (r['t1'] - r['t0']):.0f} ms"

        def in_flight(sync: sb.SyncLine) -> list[tuple[str, dict]]:
            """Service requests that overlapped the start sync's transaction
            or began up to 1 s before it (a SYN it dropped would be resent
            1 s later)."""
            began = sync.time - sync.duration_us / 1e6
            return [(name, r) for name in services for r in results[name]
                    if began - 1.0 <= r["t0"] <= sync.time and r["t1"] >= began - 1.0]

        failed = [(name, r) for name, rs in results.items() for r in rs if "error" in r]
        durations = ", ".join(f"start sync {1000 * (s.time - k):.0f} ms after the kill, {s.duration_us} us, "
                              f"{len(in_flight(s))} requests around it" for k, s in restarts)
        summary = f"{', '.join(f'{n}: {len(rs)}' for n, rs in results.items())} requests; {durations}"
        print(f"\n  restart: {summary}", file=sys.stderr)
        self.assertEqual([describe(name, r) for name, r in failed[:10]], [],
                         f"{len(failed)} requests failed across kill -9 and restart: {summary}")
        # Answered, but only after a SYN retransmission (initial RTO 1 s): a
        # packet the restart dropped, unless the control was as slow then.
        def machine_stalled(r: dict) -> bool:
            return any(c["t0"] <= r["t1"] and c["t1"] >= r["t0"] and c["t1"] - c["t0"] >= 1.0
                       for c in results["control"])
        for _, sync in restarts:
            slow = [(name, r) for name, r in in_flight(sync) if r["t1"] - r["t0"] >= 1.0]
            self.assertEqual([describe(name, r) for name, r in slow if not machine_stalled(r)], [],
                             f"requests around {sync.text} answered only after a retransmission")
            if slow:
                print(f"  restart: {len(slow)} slow requests around {sync.text}, the control stream as slow "
                      f"(the machine stalled)", file=sys.stderr)
        self.assertGreaterEqual(sum(len(results[name]) for name in services), self.MIN_REQUESTS, summary)
        # Nothing changed: each daemon synced once, at its start.
        self.assertEqual([[s.text for s in d.syncs()][1:] for d in self.daemons], [[]] * (self.RESTARTS + 1))
        for name in services:
            rs = results[name]
            self.assertGreaterEqual(len(rs), self.MIN_REQUESTS // 4, f"{name}: {summary}")
            self.assertLessEqual({r["id"] for r in rs}, {"p1:8080", "p2:8080"}, name)
            # Requests ran through each restart: before the kill and after the start sync.
            for t_killed, start in restarts:
                self.assertTrue(any(r["t1"] < t_killed for r in rs) and any(r["t0"] > start.time for r in rs), name)
        self.assertEqual(self.live(), self.compiled(), "after the restarts the kernel differs from a compile")


class TestExpositionParser(unittest.TestCase):
    """The parser above is as strict as the tests rely on."""

    GOOD = ('# HELP a_total Help with \\\\ and \\n escapes.\n# TYPE a_total counter\n'
            'a_total{code="200",path="a\\"b\\\\c\\nd",} 3\na_total{code="503"} 0\n'
            '# HELP h A histogram.\n# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="1"} 2\n'
            'h_bucket{le="+Inf"} 2\nh_sum 1.25\nh_count 2\n# HELP g Gauge.\n# TYPE g gauge\ng NaN\n'
            'g{x="y"} -Inf 1700000000000\n')

    def test_accepts_valid_text(self):
        families = parse_exposition(self.GOOD)
        self.assertEqual(families["a_total"].help, "Help with \\ and \n escapes.")
        self.assertEqual(families["a_total"].samples[0].label("path"), 'a"b\\c\nd')
        self.assertEqual(families["h"].buckets(), [(0.5, 1), (1.0, 2), (math.inf, 2)])
        self.assertTrue(math.isnan(families["g"].value()))
        self.assertEqual(families["g"].value(x="y"), -math.inf)

    def test_rejects_invalid_text(self):
        bad = {
            "no final newline": self.GOOD[:-1],
            "bad label escape": self.GOOD.replace('a\\"b', 'a\\tb'),
            "bad help escape": self.GOOD.replace("Gauge.", "Gau\\ge."),
            "bad value": self.GOOD.replace("h_sum 1.25", "h_sum 1.2.5"),
            "lower-case inf": self.GOOD.replace("g NaN", "g inf"),
            "not cumulative": self.GOOD.replace('h_bucket{le="1"} 2', 'h_bucket{le="1"} 0'),
            "le out of order": self.GOOD.replace('le="0.5"', 'le="2"'),
            "no +Inf bucket": self.GOOD.replace('h_bucket{le="+Inf"} 2\n', ""),
            "count mismatch": self.GOOD.replace("h_count 2", "h_count 3"),
            "no _sum": self.GOOD.replace("h_sum 1.25\n", ""),
            "repeated series": self.GOOD.replace('a_total{code="503"} 0',
                                                 'a_total{path="a\\"b\\\\c\\nd",code="200"} 0'),
            "repeated label": self.GOOD.replace('{code="503"}', '{code="503",code="1"}'),
            "no TYPE": self.GOOD.replace("# TYPE g gauge\n", ""),
            "no HELP": self.GOOD.replace("# HELP g Gauge.\n", ""),
            "second TYPE": self.GOOD.replace("# TYPE g gauge\n", "# TYPE g gauge\n# TYPE g gauge\n"),
            "unknown type": self.GOOD.replace("# TYPE g gauge", "# TYPE g number"),
            "negative counter": self.GOOD.replace('a_total{code="503"} 0', 'a_total{code="503"} -1'),
            "not contiguous": self.GOOD + 'a_total{code="404"} 1\n',
            "TYPE after samples": self.GOOD + "# TYPE a_total counter\n",
            "bad metric name": self.GOOD.replace("g NaN", "9g NaN"),
            "bad label name": self.GOOD.replace('{x="y"}', '{9x="y"}'),
            "unterminated label value": self.GOOD.replace('{x="y"}', '{x="y}'),
            "garbage after the value": self.GOOD.replace("h_sum 1.25", "h_sum 1.25 12 extra"),
            "histogram bare sample": self.GOOD.replace("h_sum 1.25\n", "h_sum 1.25\nh 1\n"),
        }
        for what, text in bad.items():
            with self.subTest(what):
                self.assertNotEqual(text, self.GOOD, f"the {what!r} case did not change the text")
                with self.assertRaises(ExpositionError):
                    parse_exposition(text)


if __name__ == "__main__":
    if sys.argv[1:] == ["--http-agent"]:
        sys.exit(http_agent())
    unittest.main(verbosity=2)
