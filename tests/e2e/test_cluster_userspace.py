"""End-to-end: test_userspace's flows (the userspace proxy: round robin,
unready and killed pods, ClientIP affinity, UDP, IPv6, NodePort, no
endpoints, drain timeout, fd exhaustion; `--proxy-mode auto` on a kernel
without nf_tables) with `svcproxy run --kubeconfig` fed by the real
kube-apiserver instead of a manifests directory.

test_userspace's classes are reused, not copied: subclassed with another
source for the daemon's objects (new_source): tests/cluster/labnode.py's
ApiObjects, which puts the same fixtures through kubectl (Services without
their selector, the fixtures' own EndpointSlices, Node addresses through
/status) and deletes what an edit removes; the daemon's syncs for those
edits are logged with reason "api-changed". The sandbox's node namespace
is linked to the control plane (tests/cluster/cluster.py).

Needs root, openssl and the cluster binaries (tests/cluster/build.sh);
skipped with the reason otherwise.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_cluster_userspace (from tests/e2e).
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
import test_userspace as base  # noqa: E402
from sandbox import SOURCE_DIR  # noqa: E402

sys.path.insert(0, str(SOURCE_DIR / "tests" / "cluster"))
import labnode  # noqa: E402

VARIANT = labnode.ApiServerVariant(base, [base.NS], [sb.NODE_NAME])
setUpModule, tearDownModule = VARIANT.set_up_module, VARIANT.tear_down_module


class FromApiServer(VARIANT.mixin):
    def others_service_ips(self) -> set[str]:
        """The API server's own Service (default/kubernetes) is proxied as well."""
        return {VARIANT.cluster.kubectl("get", "service", "-n", "default", "kubernetes",
                                        "-o", "jsonpath={.spec.clusterIP}").stdout.strip()}


class TestUserspaceFromApiServer(FromApiServer, base.TestUserspace):
    pass


class TestAutoFallsBackToUserspaceFromApiServer(FromApiServer, base.TestAutoFallsBackToUserspace):
    pass


if __name__ == "__main__":
    unittest.main(verbosity=2)
