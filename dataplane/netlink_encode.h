// IR -> nf_tables messages. Each NetlinkEncoder call appends the messages of
// one kernel object operation to a batch (one transaction), built exactly as
// nft 1.0.6 builds them for the text render_nft() prints, so the kernel ends
// up with the same objects either way. A full sync is one sequence of these
// calls (encode_full_sync); a partial sync is another over the same calls.
//
// The IR objects passed in must outlive the batch's commit: failure
// descriptions refer to them.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "dataplane/ir.h"
#include "dataplane/netlink_socket.h"

namespace svcproxy::dataplane {

// The IR cannot be expressed as nf_tables objects (a value of the wrong type
// or family, an empty key, ...): names the object.
class EncodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class NetlinkEncoder {
 public:
  explicit NetlinkEncoder(NetlinkBatch& batch) : batch_(batch) {}

  // NEWTABLE with NLM_F_CREATE: creates the table or leaves an existing one
  // as it is. `with_comment` attaches svcproxy's table comment (creation only).
  void add_table(const ir::Table& table, bool with_comment);
  void delete_table(const ir::Table& table);

  void add_chain(const ir::Table& table, const ir::Chain& chain);
  void delete_chain(const ir::Table& table, const ir::Chain& chain);
  // Every rule of the chain, appended in order (anonymous maps first).
  void add_rules(const ir::Table& table, const ir::Chain& chain);
  void add_rule(const ir::Table& table, const ir::Chain& chain, size_t rule_index);
  // Deletes every rule of the chain (NFT_MSG_DELRULE without a handle).
  void flush_chain(const ir::Table& table, const ir::Chain& chain);

  // A named counter object (NFT_MSG_NEWOBJ), created with zero counts.
  void add_counter(const ir::Table& table, const ir::Counter& counter);
  void delete_counter(const ir::Table& table, const ir::Counter& counter);

  // The set and all its elements.
  void add_set(const ir::Table& table, const ir::Set& set);
  // The set with its own elements followed by `extra` (a RulesetRef's set).
  void add_set(const ir::Table& table, const ir::RulesetRef::SetRef& set);
  void delete_set(const ir::Table& table, const ir::Set& set);
  // Adds (or deletes) `elements` of `set`, split over as many messages as
  // needed so that no element list exceeds one netlink attribute (64 KiB).
  // Not for interval sets, which are replaced whole (delete_set + add_set).
  void add_elements(const ir::Table& table, const ir::Set& set, std::span<const ir::Element> elements);
  void delete_elements(const ir::Table& table, const ir::Set& set, std::span<const ir::Element> elements);

 private:
  // Elements by index: from a span of values or of pointers.
  struct ElementList {
    std::span<const ir::Element> values;
    std::span<const ir::Element* const> pointers;
    size_t size() const { return values.size() + pointers.size(); }
    const ir::Element& operator[](size_t i) const { return i < values.size() ? values[i] : *pointers[i - values.size()]; }
  };
  void add_set_definition(const ir::Table& table, const ir::Set& set);
  void elements(const ir::Table& table, const ir::Set& set, ElementList elements, bool add);
  uint32_t add_anonymous_vmap(const ir::Table& table, const ir::Chain& chain, size_t rule_index,
                              const ir::NumgenVmapStmt& vmap);

  NetlinkBatch& batch_;
  uint32_t next_set_id_ = 1;
};

// A full sync: for each table, "add table; delete table; add table with all
// its sets, elements, chains and rules" - what `nft -f` does with
// render_nft()'s output - replacing the tables atomically.
void encode_full_sync(const ir::Ruleset& ruleset, NetlinkBatch& batch);
// The same from a ruleset by reference (no copy of the compiler's state).
void encode_full_sync(const ir::RulesetRef& ruleset, NetlinkBatch& batch);

// Removes `ruleset`'s tables if present ("add table; delete table"), touching
// nothing else; succeeds when they do not exist.
void encode_cleanup(const ir::Ruleset& tables, NetlinkBatch& batch);

}  // namespace svcproxy::dataplane
