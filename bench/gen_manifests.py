#!/usr/bin/env python3
"""Writes a synthetic cluster as one kubectl-shaped JSON List (what
`kubectl get services,endpointslices -A -o json` prints): S Services and S
EndpointSlices with E ready endpoints each. Same shape as
bench/synthetic_cluster.h (so `svcproxy rules` on this file with
bench/run.sh's node flags gives the ruleset gen_ruleset prints for S x E):
one TCP port 80 -> 8080 named "http", every third service a NodePort, a
quarter of the endpoints on node-a, ClusterIPs from 10.96.0.10 up, pod IPs
from 10.244.0.0 up.

    gen_manifests.py SERVICES ENDPOINTS OUT.json [--target CLUSTER_IP:PORT=POD_IP:PORT]

--target adds one more service, "bench/target", with that ClusterIP and one
endpoint (the first-packet latency benchmark connects to it).
"""

import argparse
import ipaddress
import json
import sys
import zlib

POD_BASE = int(ipaddress.IPv4Address("10.244.0.0"))
SVC_BASE = int(ipaddress.IPv4Address("10.96.0.0"))


def ip(n: int) -> str:
    return str(ipaddress.IPv4Address(n))


def meta(name: str, labels=None, **extra) -> dict:
    m = {
        "name": name,
        "namespace": "bench",
        "uid": f"00000000-0000-4000-8000-{zlib.crc32(name.encode()):012x}",
        "resourceVersion": "1000",
        "creationTimestamp": "2026-01-02T03:04:05Z",
    }
    if labels:
        m["labels"] = labels
    m.update(extra)
    return m


def service(name: str, cluster_ip: str, port: int, target_port: int, node_port: int | None) -> dict:
    p = {"name": "http", "protocol": "TCP", "port": port, "targetPort": target_port}
    if node_port:
        p["nodePort"] = node_port
    spec = {
        "ports": [p],
        "selector": {"app": name},
        "clusterIP": cluster_ip,
        "clusterIPs": [cluster_ip],
        "type": "NodePort" if node_port else "ClusterIP",
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
    }
    if node_port:
        spec["externalTrafficPolicy"] = "Cluster"
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, {"app": name}), "spec": spec,
            "status": {"loadBalancer": {}}}


def slice_(service_name: str, endpoints: list[tuple[str, str]], port: int) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta(service_name + "-abcde", {
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            "kubernetes.io/service-name": service_name,
        }, generateName=service_name + "-"),
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [addr],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": node,
            "targetRef": {"kind": "Pod", "namespace": "bench", "name": f"{service_name}-{i}"},
        } for i, (addr, node) in enumerate(endpoints)],
        "ports": [{"name": "http", "protocol": "TCP", "port": port}],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("services", type=int)
    ap.add_argument("endpoints", type=int)
    ap.add_argument("out")
    ap.add_argument("--target", help="CLUSTER_IP:PORT=POD_IP:PORT of one extra service bench/target")
    args = ap.parse_args()

    services, slices = [], []
    pod = POD_BASE
    for s in range(args.services):
        name = f"svc-{s}"
        node_port = 30000 + s % 30000 if s % 3 == 0 else None
        services.append(service(name, ip(SVC_BASE + s + 10), 80, 8080, node_port))
        eps = []
        for e in range(args.endpoints):
            eps.append((ip(pod), "node-a" if e % 4 == 0 else "node-b"))
            pod += 1
        slices.append(slice_(name, eps, 8080))
    if args.target:
        front, back = args.target.split("=")
        cip, cport = front.rsplit(":", 1)
        pip, pport = back.rsplit(":", 1)
        services.append(service("target", cip, int(cport), int(pport), None))
        slices.append(slice_("target", [(pip, "node-b")], int(pport)))

    doc = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": services + slices}
    with open(args.out, "w") as f:
        # kubectl indents with 4 spaces; so do we (the decoder sees realistic bytes).
        json.dump(doc, f, indent=4)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
