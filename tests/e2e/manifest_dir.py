"""Manifests for daemon e2e tests: a directory the daemon watches, edited by
rename into place, and the lab node's Node object. Shared by
test_daemon_sync, test_daemon_lifecycle and test_userspace."""
from __future__ import annotations

import os
import time
from pathlib import Path

import sandbox as sb


class Manifests:
    """A manifests directory edited atomically: each file is written in a
    staging directory beside it (same filesystem, not watched) and renamed
    into place, so the daemon never reads a half-written file and each edit
    is one inotify event. test_cluster_* put the same objects into a real
    API server instead (tests/cluster/labnode.py ApiObjects, the same
    methods)."""
    reason = "manifests-changed"  # what the daemon logs for the syncs edits cause

    def __init__(self, directory: Path):
        self.dir = directory
        self.staging = directory.with_name(directory.name + ".staging")
        self.dir.mkdir(parents=True)
        self.staging.mkdir()
        self._n = 0

    def put(self, name: str, objects: list[dict]) -> None:
        self._n += 1
        tmp = self.staging / f"{self._n}-{name}"
        tmp.write_text(sb.to_yaml(objects))
        os.rename(tmp, self.dir / name)

    def remove(self, name: str) -> None:
        os.unlink(self.dir / name)

    def flags(self) -> list[str]:
        return ["--manifests", str(self.dir)]

    def snapshot(self) -> Path:
        """A directory of the objects as they are now (for `svcproxy rules`)."""
        return self.dir


def rfc3339(t: float) -> str:
    """Go's RFC3339Nano at microsecond precision: 2026-11-28T06:13:21.123456Z."""
    whole = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((t - whole) * 1e6):06d}Z"


def node_object(addresses: tuple[str, ...] = (sb.NODE_V4,), *, deleting: bool = False,
                taints: list[dict] | None = None) -> dict:
    """The lab node (sb.NODE_NAME) with `addresses` as its InternalIPs;
    `deleting`: being deleted (held by a finalizer); `taints`: its taints."""
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"labels": {"kubernetes.io/hostname": sb.NODE_NAME}, "name": sb.NODE_NAME,
                     "resourceVersion": "1000"},
        "spec": {"podCIDR": "10.244.0.0/17", "podCIDRs": ["10.244.0.0/17", "fd00:10:244::/57"]},
        "status": {"addresses": [{"address": a, "type": "InternalIP"} for a in addresses]},
    }
    if deleting:
        node["metadata"]["deletionTimestamp"] = rfc3339(time.time())
        node["metadata"]["finalizers"] = ["example.com/keep"]
    if taints:
        node["spec"]["taints"] = taints
    return node
