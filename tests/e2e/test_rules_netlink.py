"""End-to-end: every flow of test_rules_nft, with the ruleset programmed by
`svcproxy run --once` inside the node namespace (netlink, one transaction,
no nft) instead of `nft -f`; plus `rules --live` (the kernel's ruleset read
back over netlink prints exactly what `svcproxy rules` prints) and
`svcproxy cleanup` (removes both svcproxy tables, leaves a foreign table
byte-identical, succeeds when run again).

The classes of test_rules_nft are reused: imported as a module (so unittest
does not collect them twice) and subclassed with loader = "netlink"; the
module fixtures (sandbox, pods, echoes, foreign table, manifests) are
test_rules_nft's own.

Needs root (network namespaces); skipped otherwise. Python 3 stdlib only.
Run: SVCPROXY_BIN=build/svcproxy python3 -m unittest -v test_rules_netlink (from tests/e2e).
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox as sb  # noqa: E402
import test_rules_nft as base  # noqa: E402

setUpModule = base.setUpModule
tearDownModule = base.tearDownModule


def svcproxy_tables(box: sb.Sandbox) -> list[str]:
    """"family name" of every svcproxy table in the node namespace."""
    tables = [line.split()[1:] for line in box.nft_list(box.node, ["tables"]).splitlines() if line.strip()]
    return sorted(" ".join(t) for t in tables if t[-1] == "svcproxy")


class LiveReadback:
    """Mixed into the netlink flow classes: what the kernel holds after `run
    --once` is what `svcproxy rules` compiles, for the class's flags."""

    def test_rules_live_prints_exactly_the_compiled_rules(self):
        live = self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout
        self.assertTrue(live.strip(), "rules --live printed nothing")
        self.assertEqual(live, self.ruleset, f"rules --live differs from `svcproxy rules {' '.join(self.extra_flags)}`")

    def test_rules_live_json_matches_the_compiled_ir(self):
        live = self.box.svcproxy_in(self.box.node, ["rules", "--live", "--format", "json"]).stdout
        self.assertEqual(live, self.svcproxy("rules", "--format", "json"))


class TestServicesNetlink(LiveReadback, base.TestServices):
    loader = "netlink"

    def test_examples_pass_nft_check(self):
        # Over netlink the kernel itself is the check: the examples program
        # in one transaction and read back as compiled. Then the scenario is
        # restored for the other tests of this class.
        examples = base.SOURCE_DIR / "examples"
        if not any(examples.glob("*.yaml")):
            self.skipTest("no example manifests")
        try:
            self.program(examples)
            live = self.box.svcproxy_in(self.box.node, ["rules", "--live"]).stdout
            compiled = self.box.svcproxy_run(["rules", "--manifests", str(examples), *sb.NODE_FLAGS]).stdout
            self.assertEqual(live, compiled)
        finally:
            self.program()
            self.box.flush_conntrack()

    def test_run_once_reports_what_it_programmed(self):
        r = self.box.svcproxy_in(self.box.node, ["run", "--once", "--manifests", str(self.dir), *sb.NODE_FLAGS])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stderr, r"programmed \d+ chains and \d+ set elements in one transaction")
        self.assertEqual(svcproxy_tables(self.box), ["ip svcproxy", "ip6 svcproxy"])


class TestMasqueradeAllNetlink(LiveReadback, base.TestMasqueradeAll):
    loader = "netlink"


class TestCleanup(base.FlowTestCase):
    """`svcproxy cleanup` in the node namespace, after `run --once`."""
    loader = "netlink"

    def test_cleanup_removes_both_tables_keeps_the_foreign_one_and_is_idempotent(self):
        box = self.box
        foreign = ["table", "inet", "foreign"]
        self.assertEqual(svcproxy_tables(box), ["ip svcproxy", "ip6 svcproxy"])
        before = box.nft_list(box.node, foreign)
        self.assertEqual(before, base.Env.foreign_before, "the full sync changed the foreign table")
        try:
            first = box.svcproxy_in(box.node, ["cleanup"], check=False)
            self.assertEqual(first.returncode, 0, f"cleanup failed: {first.stderr}")
            self.assertEqual(svcproxy_tables(box), [], "cleanup left svcproxy tables")
            self.assertEqual(box.nft_list(box.node, foreign), before, "cleanup changed the foreign table")
            second = box.svcproxy_in(box.node, ["cleanup"], check=False)
            self.assertEqual(second.returncode, 0, f"second cleanup failed: {second.stderr}")
            self.assertEqual(svcproxy_tables(box), [])
            self.assertEqual(box.nft_list(box.node, foreign), before, "second cleanup changed the foreign table")
            # With nothing programmed, a service IP is no longer captured: the
            # packet leaves by the default route and the sink answers.
            box.flush_conntrack()
            r = box.request(box.ext, base.WEB_V4, 80, count=2)
            self.assertEqual(set(r.ids), {sb.SINK_ID}, f"after cleanup: {r.outcomes} {r.ids}")
        finally:
            self.program()
            box.flush_conntrack()
        self.assertEqual(box.nft_list(box.node, foreign), before)


if __name__ == "__main__":
    unittest.main(verbosity=2)
