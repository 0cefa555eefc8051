"""End-to-end: test_daemon_sync's flows with `svcproxy run --kubeconfig`
fed by the real kube-apiserver instead of a manifests directory: UDP
conntrack (a flow pinned to an endpoint stays through unrelated syncs,
moves within 100 ms of the sync that removes its endpoint, is rejected
when the last endpoint goes, answers when the first comes, and is cleaned
up by a restart), drift repair by the periodic full sync, and SIGTERM.

test_daemon_sync's classes are reused, not copied: subclassed with another
source for the daemon's objects (new_source): tests/cluster/labnode.py's
ApiObjects, which puts the same objects through kubectl; edits are seen as
syncs with reason "api-changed", and `svcproxy rules` compiles what the API
server holds (`kubectl get -o yaml`). TestNoDisruption is left to the
manifests suite: its 200 edits are 200 kubectl runs here, and a put of a
Service and its slice is two API events, so not one sync per edit.

Needs root, openssl and the cluster binaries (tests/cluster/build.sh);
skipped with the reason otherwise.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_daemon_sync (from tests/e2e).
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
import test_daemon_sync as base  # noqa: E402
from sandbox import SOURCE_DIR  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import labnode  # noqa: E402

VARIANT = labnode.ApiServerVariant(base, [base.NS], [sb.NODE_NAME])
setUpModule, tearDownModule = VARIANT.set_up_module, VARIANT.tear_down_module
FromApiServer = VARIANT.mixin


class TestUdpConntrackFromApiServer(FromApiServer, base.TestUdpConntrack):
    pass


class TestDriftRepairFromApiServer(FromApiServer, base.TestDriftRepair):
    pass


class TestSigtermFromApiServer(FromApiServer, base.TestSigterm):
    pass


if __name__ == "__main__":
    unittest.main(verbosity=2)
