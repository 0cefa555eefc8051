"""The two proxies as the lab runs them against its control plane: the real
kube-proxy (nftables mode) and svcproxy, each in a node namespace, and
their shared Prometheus metrics, as the side-by-side benchmark
(bench/cluster_bench.py) runs them from threads inside the lab's namespaces
(the tests start them through labnode.py, with the same flags). Python 3
stdlib only.

kube-proxy runs as section 5 of the reference notes says: nftables mode,
`--hostname-override`, no conntrack sysctl writes (nf_conntrack_max is
host-global, and the comparison does not need them), the kernel version
check skipped (the lab's kernel is newer than the check knows), and
`--iptables-min-sync-period=0s` (it applies to nftables mode too) so that a
change is synced as soon as it arrives rather than rate-limited to one sync
a second: both proxies are timed on how fast they program a change, not on
a configured delay.
"""

from __future__ import annotations

import http.client
import re
from pathlib import Path

METRICS_ADDRESS = "127.0.0.1:10249"
HEALTHZ_ADDRESS = "127.0.0.1:10256"
# kube-proxy's gauge, which svcproxy exports too (proxy/metrics.cc): the wall-clock time of the last
# successful sync; 0 (or absent) before the first one.
SYNC_TIMESTAMP = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
# Cumulative count of full syncs (a histogram's _count), both proxies.
FULL_SYNCS = "kubeproxy_sync_full_proxy_rules_duration_seconds_count"


def kube_proxy_argv(kube_proxy: str | Path, kubeconfig: str | Path, node: str, cluster_cidrs: str,
                    *, verbosity: int = 2) -> list[str]:
    """The command (for `ip netns exec NODE_NS ...`) that runs kube-proxy for node `node`."""
    return ["env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "KUBE_PROXY_NFTABLES_SKIP_KERNEL_VERSION_CHECK=1",
            str(kube_proxy), f"--kubeconfig={kubeconfig}", "--proxy-mode=nftables",
            f"--hostname-override={node}", f"--cluster-cidr={cluster_cidrs}", "--nodeport-addresses=primary",
            # Writing conntrack sysctls is not needed here, and nf_conntrack_max is global.
            "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            f"--metrics-bind-address={METRICS_ADDRESS}", f"--healthz-bind-address={HEALTHZ_ADDRESS}",
            "--iptables-min-sync-period=0s", f"--v={verbosity}"]


def svcproxy_argv(svcproxy: str | Path, kubeconfig: str | Path, node: str, node_ip: str,
                  cluster_cidrs: str) -> list[str]:
    """The command (for `ip netns exec NODE_NS ...`) that runs svcproxy as node `node`'s daemon."""
    return [str(svcproxy), "run", "--kubeconfig", str(kubeconfig), "--hostname-override", node,
            "--node-ip", node_ip, "--cluster-cidr", cluster_cidrs,
            "--healthz-bind-address", HEALTHZ_ADDRESS, "--metrics-bind-address", METRICS_ADDRESS]


# name{labels} value   (labels optional; the value may be 1.7e+09, +Inf, NaN)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> list[tuple[str, str, float]]:
    """(name, labels text without braces, value) for every sample of a Prometheus text page."""
    samples = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        samples.append((m.group(1), (m.group(2) or "{}")[1:-1], value))
    return samples


def metric(text: str, name: str, family: str = "IPv4") -> float | None:
    """A sample of `name`: the one labelled ip_family=`family` (kube-proxy labels per family since
    1.33) or else the unlabelled one (svcproxy); None if absent."""
    unlabelled = None
    for sample, labels, value in parse_metrics(text):
        if sample != name:
            continue
        if f'ip_family="{family}"' in labels:
            return value
        if "ip_family" not in labels:
            unlabelled = value
    return unlabelled


def sync_timestamp(text: str) -> float:
    """The wall-clock time of the last successful sync (IPv4), 0 before the first."""
    return metric(text, SYNC_TIMESTAMP) or 0.0


def fetch_metrics(address: str = METRICS_ADDRESS, timeout: float = 2) -> str:
    """GET /metrics from address in the calling thread's network namespace (see netns.py); raises
    OSError while nothing listens yet."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)  # never through an http_proxy
    try:
        conn.request("GET", "/metrics")
        reply = conn.getresponse()
        body = reply.read().decode(errors="replace")
        if reply.status != 200:
            raise OSError(f"GET http://{address}/metrics: HTTP {reply.status}")
        return body
    finally:
        conn.close()
