#!/usr/bin/env python3
"""The lab's kubelet stand-in: registers a node and its pods with the real
kube-apiserver and runs the pods' readiness probes for real.

Runs inside the node's network namespace (attached to the control plane by
cluster.Cluster.attach), where the pods' addresses are routed, as a kubelet
would: `ip netns exec NODE_NS podagent.py CONFIG.json`. The pods themselves
are network namespaces with servers in them, built by tests/e2e/sandbox.py;
this program only speaks for them to the API server.

  - The Node: created with the zone label, then its status (InternalIP,
    capacity, Ready) written through the status subresource.
  - Each Pod: created with spec.nodeName (no scheduler runs), its labels, a
    container with its ports and an httpGet readinessProbe; its status
    (Running, podIP, podIPs, Ready=False) is written through the status
    subresource. Then the probe runs against the pod's first address every
    periodSeconds (timeoutSeconds, failureThreshold, successThreshold as the
    kubelet counts them), and every change of readiness is written as the
    Ready and ContainersReady conditions. The real EndpointSlice controller
    does the rest.
  - Closing stdin deletes the pods and the node and exits.

CONFIG.json: {"server", "ca", "cert", "key" (cluster.json's fields),
  "node": {"name", "ip", "zone"},
  "pods": [{"name", "namespace", "labels": {...}, "ips": ["10.244.1.2", ...],
            "ports": [{"name": "http", "containerPort": 8080}],
            "probe": {"port": 8081, "path": "/ready", "periodSeconds": 1, "timeoutSeconds": 1,
                      "failureThreshold": 1, "successThreshold": 1}}]}

Stdout: one JSON object per line, flushed, with wall-clock times t
(time.time()): {"event": "registered"} once every object exists;
{"event": "probe", "pod", "ok", "detail"} when a probe's result changes;
{"event": "ready", "pod", "ready"} after the status write succeeded;
{"event": "error", "pod", "detail"} for a failed API call (retried on the
next probe). Python 3 stdlib only.
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

_out_lock = threading.Lock()


def emit(**fields) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps({"t": time.time(), **fields}) + "\n")
        sys.stdout.flush()


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(RuntimeError):
    def __init__(self, status: int, text: str):
        super().__init__(f"HTTP {status}: {text[:300]}")
        self.status = status


class Kube:
    """A minimal client: one TLS connection per thread, client-certificate auth."""

    def __init__(self, server: str, ca: str, cert: str, key: str):
        url = urllib.parse.urlsplit(server)
        self.host, self.port = url.hostname, url.port or 443
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)
        self.local = threading.local()

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in (0, 1):  # one retry on a connection the server closed
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                                      timeout=10)
            try:
                conn.request(method, path, body=data, headers=headers)
                reply = conn.getresponse()
                text = reply.read().decode(errors="replace")
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
                continue
            if reply.status >= 300:
                raise ApiError(reply.status, text)
            return json.loads(text) if text else {}
        raise AssertionError("unreachable")

    def create(self, path: str, obj: dict) -> None:
        """POST; an object that already exists is fine (a rerun against a shared cluster)."""
        try:
            self.request("POST", path, obj)
        except ApiError as e:
            if e.status != 409:
                raise

    def patch_status(self, path: str, status: dict) -> None:
        self.request("PATCH", path + "/status", {"status": status}, "application/merge-patch+json")


def node_objects(node: dict) -> tuple[dict, dict]:
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": node["name"],
                        "labels": {"kubernetes.io/hostname": node["name"],
                                   "topology.kubernetes.io/zone": node.get("zone", "zone-a")}}}
    status = {"addresses": [{"type": "InternalIP", "address": ip} for ip in node["ips"]]
              + [{"type": "Hostname", "address": node["name"]}],
              "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
              "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
              "conditions": [{"type": "Ready", "status": "True", "reason": "LabNodeReady",
                              "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}]}
    return obj, status


def pod_object(pod: dict, node_name: str) -> dict:
    probe = pod["probe"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod["name"], "namespace": pod["namespace"], "labels": pod.get("labels", {})},
            "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": 0,
                     "containers": [{
                         "name": "app", "image": "svcproxy-lab/echo:none",
                         "ports": [{"protocol": "TCP", **p} for p in pod.get("ports", [])],
                         "readinessProbe": {
                             "httpGet": {"path": probe.get("path", "/"), "port": probe["port"]},
                             **{k: probe[k] for k in ("periodSeconds", "timeoutSeconds", "failureThreshold",
                                                      "successThreshold") if k in probe}}}]}}


def pod_status(pod: dict, ready: bool, since: str) -> dict:
    value = "True" if ready else "False"
    return {"phase": "Running", "podIP": pod["ips"][0], "podIPs": [{"ip": ip} for ip in pod["ips"]],
            "hostIP": pod["host_ip"], "startTime": pod["started"],
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": pod["started"]},
                {"type": "Initialized", "status": "True", "lastTransitionTime": pod["started"]},
                {"type": "ContainersReady", "status": value, "lastTransitionTime": since},
                {"type": "Ready", "status": value, "lastTransitionTime": since}]}


def probe_once(ip: str, probe: dict) -> tuple[bool, str]:
    """One httpGet probe as the kubelet runs it: success is a status in 200..399."""
    host = f"[{ip}]" if ":" in ip else ip
    conn = http.client.HTTPConnection(host.strip("[]"), probe["port"], timeout=probe.get("timeoutSeconds", 1))
    try:
        conn.request("GET", probe.get("path", "/"), headers={"User-Agent": "kube-probe/lab"})
        status = conn.getresponse().status
        return 200 <= status < 400, f"HTTP {status}"
    except (OSError, http.client.HTTPException) as e:
        return False, type(e).__name__ + (f": {e}" if str(e) else "")
    finally:
        conn.close()


class Prober(threading.Thread):
    """Probes one pod every periodSeconds and writes readiness changes."""

    def __init__(self, kube: Kube, pod: dict, stop: threading.Event):
        super().__init__(daemon=True, name=f"probe:{pod['name']}")
        self.kube, self.pod, self.stop_event = kube, pod, stop
        self.path = f"/api/v1/namespaces/{pod['namespace']}/pods/{pod['name']}"

    def run(self) -> None:
        probe = self.pod["probe"]
        period = float(probe.get("periodSeconds", 10))
        fail_needed = int(probe.get("failureThreshold", 3))
        ok_needed = int(probe.get("successThreshold", 1))
        ready, written = False, True  # the pod was created with Ready=False
        last_ok, streak = None, 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            ok, detail = probe_once(self.pod["ips"][0], probe)
            if ok != last_ok:
                emit(event="probe", pod=self.pod["name"], ok=ok, detail=detail)
                last_ok, streak = ok, 0
            streak += 1
            if ok and not ready and streak >= ok_needed or not ok and ready and streak >= fail_needed:
                ready, written = ok, False
            if not written:
                try:
                    self.kube.patch_status(self.path, pod_status(self.pod, ready, now_rfc3339()))
                    written = True
                    emit(event="ready", pod=self.pod["name"], ready=ready)
                except (ApiError, OSError, http.client.HTTPException) as e:
                    emit(event="error", pod=self.pod["name"], detail=str(e))
            next_at += period
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))


def register(kube: Kube, config: dict) -> None:
    node = config["node"]
    node["ips"] = node.get("ips") or [node["ip"]]
    obj, status = node_objects(node)
    kube.create("/api/v1/nodes", obj)
    kube.patch_status(f"/api/v1/nodes/{node['name']}", status)
    for ns in sorted({p["namespace"] for p in config["pods"]}):
        kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for pod in config["pods"]:
        pod["started"], pod["host_ip"] = now_rfc3339(), node["ips"][0]
        path = f"/api/v1/namespaces/{pod['namespace']}/pods"
        kube.create(path, pod_object(pod, node["name"]))
        kube.patch_status(f"{path}/{pod['name']}", pod_status(pod, False, pod["started"]))


def unregister(kube: Kube, config: dict) -> None:
    for pod in config["pods"]:
        try:
            kube.request("DELETE", f"/api/v1/namespaces/{pod['namespace']}/pods/{pod['name']}",
                         {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        except (ApiError, OSError) as e:
            emit(event="error", pod=pod["name"], detail=f"delete: {e}")
    try:
        kube.request("DELETE", f"/api/v1/nodes/{config['node']['name']}")
    except (ApiError, OSError) as e:
        emit(event="error", pod="", detail=f"delete node: {e}")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        config = json.load(f)
    kube = Kube(config["server"], config["ca"], config["cert"], config["key"])
    register(kube, config)
    emit(event="registered")
    stop = threading.Event()
    probers = [Prober(kube, pod, stop) for pod in config["pods"]]
    for p in probers:
        p.start()
    try:
        sys.stdin.read()  # until stdin is closed
    except KeyboardInterrupt:
        pass
    stop.set()
    for p in probers:
        p.join(timeout=5)
    unregister(kube, config)
    emit(event="stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
