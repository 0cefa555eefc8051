"""End-to-end: the conntrack sysctls `svcproxy run` sets at start (kube-proxy's
--conntrack-* flags and the config file's `conntrack:` section), in a
network namespace this test creates; the host's sysctls are never written.

What is per network namespace on this kernel (6.18): the TCP/UDP timeouts and
nf_conntrack_tcp_be_liberal are (each namespace has its own, writable);
nf_conntrack_max is global (0444 outside the initial namespace) and the
module's hashsize can only be changed from the initial namespace. So in the
lab node's namespace:

  - defaults (kube-proxy's: 24h established, 1h close-wait): both timeouts
    are set there, one `conntrack sysctl set` line each; nf_conntrack_max is
    reported once (a W line naming it as global) and left alone, and the
    start goes on; the hash table is not touched (it follows the limit);
  - a second start writes nothing (a value is written only when it differs);
  - every flag: established/close-wait/UDP/UDP-stream timeouts and
    tcp_be_liberal; 0 leaves a sysctl as it is; --conntrack-max-per-core=0
    leaves the limit alone without a word;
  - the config file's `conntrack:` section does the same;
  - --init-only sets them and exits 0 without programming anything.

After every case the host's values (all seven sysctls and the hashsize) are
what they were before the module started.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_conntrack_sysctls (from tests/e2e).
"""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
from manifest_dir import Manifests, node_object  # noqa: E402
from sandbox import SVCPROXY  # noqa: E402

NETFILTER = "net/netfilter/"
SYSCTLS = ["nf_conntrack_max", "nf_conntrack_tcp_timeout_established", "nf_conntrack_tcp_timeout_close_wait",
           "nf_conntrack_tcp_be_liberal", "nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"]
HASHSIZE = Path("/sys/module/nf_conntrack/parameters/hashsize")


def host_values() -> dict[str, str]:
    """The host's (initial namespace's) values, read from this process."""
    values = {name: (Path("/proc/sys") / NETFILTER / name).read_text().strip() for name in SYSCTLS}
    values["hashsize"] = HASHSIZE.read_text().strip()
    return values


class Env:
    box: sb.Sandbox | None = None
    tmp: Path | None = None
    host: dict[str, str] = {}


def setUpModule():
    sb.require_root_and_tools(SVCPROXY)
    if not HASHSIZE.exists():
        raise unittest.SkipTest("nf_conntrack is not loaded")
    Env.host = host_values()
    Env.tmp = Path(tempfile.mkdtemp(prefix="svcproxy-ct-sysctls-"))
    Env.box = sb.Sandbox(SVCPROXY)
    Env.box.build()


def tearDownModule():
    sb.close_env(Env)


class ConntrackSysctls(unittest.TestCase):
    def setUp(self):
        self.box = Env.box
        self.manifests = Manifests(Env.tmp / f"m-{self.id().rsplit('.', 1)[-1]}")
        self.manifests.put("node.yaml", [node_object()])
        # Every case starts from the fresh namespace's own values.
        self.fresh = self.netns_values()
        self.addCleanup(self.restore)

    def tearDown(self):
        self.assertEqual(host_values(), Env.host, "the host's conntrack sysctls changed")

    def restore(self):
        for name in SYSCTLS[1:]:
            self.box.exec(self.box.node, ["sysctl", "-q", "-w", f"net.netfilter.{name}={self.fresh[name]}"])

    def netns_values(self) -> dict[str, str]:
        out = self.box.exec(self.box.node, ["sh", "-c", "cd /proc/sys/net/netfilter && "
                                            "for f in " + " ".join(SYSCTLS) + "; do echo $f $(cat $f); done"])
        return dict(line.split() for line in out.stdout.splitlines())

    def run_daemon(self, *flags: str) -> tuple[list[str], dict[str, str]]:
        """Starts the daemon with `flags`, waits for its first sync, stops
        it; returns its log lines and the namespace's values."""
        d = self.box.start_daemon(self.manifests.dir, ["--hostname-override", sb.NODE_NAME, *flags])
        d.wait_sync(reason="start")
        rc, _ = d.stop()
        self.assertEqual(rc, 0)
        return d.lines.snapshot(0), self.netns_values()

    @staticmethod
    def conntrack_lines(lines: list[str]) -> list[str]:
        return [line for line in lines if "conntrack sysctl" in line]

    def test_defaults_set_the_per_namespace_timeouts_and_report_the_global_limit_once(self):
        # A limit that surely differs from the host's: the write is tried
        # and refused (nf_conntrack_max is read-only here).
        floor = int(Env.host["nf_conntrack_max"]) + 4096
        lines, now = self.run_daemon("--conntrack-min", str(floor))
        self.assertEqual(now["nf_conntrack_tcp_timeout_established"], "86400")
        self.assertEqual(now["nf_conntrack_tcp_timeout_close_wait"], "3600")
        for untouched in ("nf_conntrack_tcp_be_liberal", "nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            self.assertEqual(now[untouched], self.fresh[untouched], untouched)
        self.assertEqual(now["nf_conntrack_max"], Env.host["nf_conntrack_max"])
        ct = self.conntrack_lines(lines)
        refused = [line for line in ct if line.startswith("W")]
        self.assertEqual(len(refused), 1, "\n".join(lines))
        self.assertIn('sysctl="net/netfilter/nf_conntrack_max"', refused[0])
        self.assertIn(f"value={floor}", refused[0])
        self.assertIn("global: only the initial network namespace may change it", refused[0])
        written = sorted(line.split("sysctl=")[1].split()[0] for line in ct if line.startswith("I"))
        self.assertEqual(written, ['"net/netfilter/nf_conntrack_tcp_timeout_close_wait"',
                                   '"net/netfilter/nf_conntrack_tcp_timeout_established"'], "\n".join(ct))
        # The start went on: the sync above happened after the warning.
        self.assertLess(lines.index(refused[0]), next(i for i, line in enumerate(lines) if "sync done" in line))

        # Started again: everything already has its value, nothing is written.
        again, _ = self.run_daemon("--conntrack-min", str(floor))
        self.assertEqual([line for line in self.conntrack_lines(again) if line.startswith("I")], [], "\n".join(again))

    def test_every_flag(self):
        lines, now = self.run_daemon("--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=2h",
                                     "--conntrack-tcp-timeout-close-wait=0", "--conntrack-tcp-be-liberal",
                                     "--conntrack-udp-timeout=45s", "--conntrack-udp-timeout-stream=3m0s")
        self.assertEqual(now["nf_conntrack_tcp_timeout_established"], "7200")
        self.assertEqual(now["nf_conntrack_tcp_timeout_close_wait"], self.fresh["nf_conntrack_tcp_timeout_close_wait"])
        self.assertEqual(now["nf_conntrack_tcp_be_liberal"], "1")
        self.assertEqual(now["nf_conntrack_udp_timeout"], "45")
        self.assertEqual(now["nf_conntrack_udp_timeout_stream"], "180")
        # --conntrack-max-per-core=0: the limit is not even looked at.
        self.assertFalse([line for line in lines if line.startswith("W")], "\n".join(lines))

    def test_config_file_section(self):
        config = Env.tmp / "conntrack.yaml"
        config.write_text("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                          "conntrack:\n  maxPerCore: 0\n  tcpEstablishedTimeout: 3h\n  tcpCloseWaitTimeout: 10m\n"
                          "  tcpBeLiberal: true\n  udpTimeout: 20s\n  udpStreamTimeout: 0s\n")
        lines, now = self.run_daemon("--config", str(config))
        self.assertEqual(now["nf_conntrack_tcp_timeout_established"], "10800")
        self.assertEqual(now["nf_conntrack_tcp_timeout_close_wait"], "600")
        self.assertEqual(now["nf_conntrack_tcp_be_liberal"], "1")
        self.assertEqual(now["nf_conntrack_udp_timeout"], "20")
        self.assertEqual(now["nf_conntrack_udp_timeout_stream"], self.fresh["nf_conntrack_udp_timeout_stream"])
        self.assertFalse([line for line in lines if line.startswith("W")], "\n".join(lines))

    def test_init_only_sets_them_and_exits(self):
        self.box.svcproxy_in(self.box.node, ["cleanup"])  # what earlier cases left programmed
        result = self.box.svcproxy_in(self.box.node, ["run", "--manifests", str(self.manifests.dir), "--init-only",
                                                      "--conntrack-max-per-core=0",
                                                      "--conntrack-tcp-timeout-established=5h"])
        self.assertIn("conntrack sysctl set", result.stderr)
        self.assertNotIn("sync done", result.stderr)
        self.assertEqual(self.netns_values()["nf_conntrack_tcp_timeout_established"], "18000")
        self.assertEqual(self.box.nft_list(self.box.node).strip(), "", "--init-only programmed nftables")


if __name__ == "__main__":
    unittest.main()
