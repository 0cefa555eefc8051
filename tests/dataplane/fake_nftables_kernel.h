// An in-memory NftablesKernel for unit tests: it reads each committed batch
// (the exact netlink messages the real socket would send), records it, and
// refuses it the way nf_tables does:
//  - a rule using an expression named in `refused_expressions` fails with
//    ENOENT, as on a kernel without that expression's module
//    (nft_expr_type_get finds no type: "No such file or directory");
//  - with `refuse_all` set (e.g. EPERM, what nfnetlink answers a sender
//    without CAP_NET_ADMIN) the batch's BEGIN message fails.
// A refused batch changes nothing and is recorded with refused = true.
#pragma once

#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "dataplane/nftables_kernel.h"
#include "dataplane/netlink_socket.h"

namespace svcproxy::dataplane::testing {

class FakeNftablesKernel final : public NftablesKernel {
 public:
  struct Message {
    int type = 0;                          // NFT_MSG_*
    std::vector<std::string> expressions;  // a rule's expression names, in order
  };
  struct Transaction {
    std::vector<Message> messages;
    bool refused = false;
  };

  std::set<std::string> refused_expressions;
  int refuse_all = 0;  // errno for every batch; 0: judge by expression
  std::vector<Transaction> transactions;

  NetlinkBatch begin_batch() override { return NetlinkBatch(next_seq_); }

  void commit(NetlinkBatch& batch) override {
    next_seq_ += static_cast<uint32_t>(batch.size()) + 2;
    Transaction& t = transactions.emplace_back();
    std::vector<std::string> failures;
    if (refuse_all != 0) failures.push_back("batch begin: " + std::string(std::strerror(refuse_all)));
    for (size_t i = 0; i < batch.size(); ++i) {
      const Message& m = t.messages.emplace_back(read(batch.message_at(i)));
      for (const auto& name : m.expressions) {
        if (refuse_all == 0 && refused_expressions.count(name) != 0) {
          failures.push_back(batch.describe(i) + ": " + std::strerror(ENOENT) + " (expression " + name + ")");
          break;
        }
      }
    }
    if (failures.empty()) return;
    t.refused = true;
    std::string what = "nf_tables refused the transaction (" + std::to_string(failures.size()) + " of " +
                       std::to_string(batch.size()) + " messages failed; nothing was applied): " + failures.front();
    throw TransactionError(what, refuse_all != 0 ? refuse_all : ENOENT, std::move(failures));
  }

 private:
  // Calls fn for each attribute in [begin, end).
  template <typename Fn>
  static void each(const void* begin, const void* end, Fn&& fn) {
    const auto* attr = static_cast<const nlattr*>(begin);
    while (mnl_attr_ok(attr, static_cast<int>(static_cast<const char*>(end) - reinterpret_cast<const char*>(attr)))) {
      fn(attr);
      attr = mnl_attr_next(attr);
    }
  }
  template <typename Fn>
  static void each_nested(const nlattr* nest, Fn&& fn) {
    each(mnl_attr_get_payload(nest), static_cast<const char*>(mnl_attr_get_payload(nest)) + mnl_attr_get_payload_len(nest),
         fn);
  }

  static Message read(const nlmsghdr* nlh) {
    Message m;
    m.type = NFNL_MSG_TYPE(nlh->nlmsg_type);
    if (m.type != NFT_MSG_NEWRULE) return m;
    each(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)), mnl_nlmsg_get_payload_tail(nlh), [&](const nlattr* attr) {
      if (mnl_attr_get_type(attr) != NFTA_RULE_EXPRESSIONS) return;
      each_nested(attr, [&](const nlattr* elem) {
        each_nested(elem, [&](const nlattr* field) {
          if (mnl_attr_get_type(field) == NFTA_EXPR_NAME) m.expressions.emplace_back(mnl_attr_get_str(field));
        });
      });
    });
    return m;
  }

  uint32_t next_seq_ = 1;
};

}  // namespace svcproxy::dataplane::testing
