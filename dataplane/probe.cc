#include "dataplane/probe.h"

#include <algorithm>
#include <cerrno>
#include <functional>

#include "dataplane/ir.h"
#include "dataplane/netlink_encode.h"
#include "dataplane/netlink_socket.h"

namespace svcproxy::dataplane {
namespace {

using ir::KeyField;
using ir::KeyType;

ir::Rule rule(std::vector<ir::Match> m, std::vector<ir::Statement> s) { return ir::Rule{std::move(m), std::move(s), {}}; }

// A table "svcproxy-probe" with one base chain holding `rules`, plus sets.
ir::Ruleset probe_table(ir::Hook hook, std::vector<ir::Rule> rules, std::vector<ir::Set> sets = {}) {
  ir::Table table;
  table.family = model::IPFamily::V4;
  table.name = "svcproxy-probe";
  const int priority = hook == ir::Hook::Postrouting ? 100 : -100;
  table.chains.push_back(ir::Chain{"probe", ir::BaseChainSpec{hook, priority}, std::move(rules)});
  table.sets = std::move(sets);
  ir::Ruleset ruleset;
  ruleset.tables.push_back(std::move(table));
  return ruleset;
}

const model::IPAddress kAddr = model::IPAddress::v4(192, 0, 2, 1);

struct Feature {
  const char* name;
  std::function<ir::Ruleset()> build;
};

std::vector<Feature> features() {
  return {
      {"nat chains with dnat",
       [] {
         return probe_table(ir::Hook::Prerouting,
                            {rule({ir::ProtoMatch{model::Protocol::TCP}}, {ir::DnatStmt{kAddr, 80}})});
       }},
      {"masquerade (fully-random) and ct status",
       [] { return probe_table(ir::Hook::Postrouting, {rule({ir::CtDnatMatch{}}, {ir::MasqueradeStmt{}})}); }},
      {"fib (fib saddr/daddr type local)",
       [] {
         return probe_table(ir::Hook::Prerouting,
                            {rule({ir::FibLocalMatch{KeyField::DstAddr}}, {ir::Verdict{ir::VerdictKind::Accept, {}}})});
       }},
      {"reject (icmp and tcp reset)",
       [] {
         return probe_table(ir::Hook::Prerouting,
                            {rule({ir::ProtoMatch{model::Protocol::TCP}}, {ir::RejectStmt{true}}),
                             rule({}, {ir::RejectStmt{false}})});
       }},
      {"meta mark",
       [] {
         return probe_table(ir::Hook::Prerouting,
                            {rule({ir::MarkMatch{0x4000, true}}, {ir::MarkStmt{0x4000, false}})});
       }},
      {"concatenated verdict maps",
       [] {
         ir::Set map;
         map.name = "vmap";
         map.key = {KeyType::Addr, KeyType::Proto, KeyType::Port};
         map.is_verdict_map = true;
         map.elements.push_back(
             ir::Element{{kAddr, model::Protocol::TCP, uint16_t{80}}, ir::Verdict{ir::VerdictKind::Accept, {}}, {}});
         return probe_table(ir::Hook::Prerouting,
                            {rule({}, {ir::VmapStmt{{KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort}, "vmap", 0}})},
                            {map});
       }},
      {"numgen and concatenated data maps (dnat ... map)",
       [] {
         ir::Set map;
         map.name = "dnat";
         map.key = {KeyType::Addr, KeyType::Proto, KeyType::Port, KeyType::Slot};
         map.data = {KeyType::Addr, KeyType::Port};
         map.elements.push_back(ir::Element{{kAddr, model::Protocol::TCP, uint16_t{80}, uint32_t{0}}, std::nullopt,
                                            {kAddr, uint16_t{8080}}});
         return probe_table(
             ir::Hook::Prerouting,
             {rule({}, {ir::DnatMapStmt{{KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort, KeyField::Numgen},
                                        "dnat", 1}})},
             {map});
       }},
      {"interval sets",
       [] {
         ir::Set set;
         set.name = "cidrs";
         set.key = {KeyType::Addr};
         set.interval = true;
         set.elements.push_back(ir::Element{{*model::CIDR::parse("10.0.0.0/8")}, std::nullopt, {}});
         return probe_table(ir::Hook::Prerouting,
                            {rule({ir::AddrMatch{KeyField::SrcAddr, true, std::nullopt, "cidrs"}},
                                  {ir::Verdict{ir::VerdictKind::Accept, {}}})},
                            {set});
       }},
      {"dynamic sets with timeouts (session affinity)",
       [] {
         ir::Set set;
         set.name = "affinity";
         set.key = {KeyType::Addr};
         set.dynamic = true;
         set.timeout_seconds = 10800;
         return probe_table(ir::Hook::Prerouting, {rule({}, {ir::SetUpdateStmt{"affinity"}})}, {set});
       }},
      {"anonymous numgen verdict maps",
       [] {
         ir::Ruleset r = probe_table(ir::Hook::Prerouting, {rule({}, {ir::NumgenVmapStmt{{"target"}}})});
         r.tables[0].chains.push_back(ir::Chain{"target", std::nullopt, {}});
         std::sort(r.tables[0].chains.begin(), r.tables[0].chains.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
         return r;
       }},
  };
}

// Sends `ruleset` and then deletes its tables, in one transaction: the
// kernel validates every object (loading what each expression needs) and
// nothing lasts.
void try_ruleset(NftablesKernel& kernel, const ir::Ruleset& ruleset) {
  NetlinkBatch batch = kernel.begin_batch();
  encode_full_sync(ruleset, batch);
  NetlinkEncoder encoder(batch);
  for (const auto& table : ruleset.tables) encoder.delete_table(table);
  kernel.commit(batch);
}

}  // namespace

std::vector<MissingFeature> probe_nftables_features(NftablesKernel& kernel) {
  std::vector<MissingFeature> missing;
  for (const auto& feature : features()) {
    try {
      try_ruleset(kernel, feature.build());
    } catch (const TransactionError& e) {
      // EPERM is about this process, not the kernel: say so once.
      if (e.error() == EPERM) throw NetlinkError("nf_tables refused: permission denied (svcproxy needs CAP_NET_ADMIN)", EPERM);
      missing.push_back({feature.name, e.what()});
    }
  }
  return missing;
}

}  // namespace svcproxy::dataplane
