// Prints the nft script svcproxy compiles for a synthetic cluster:
//   gen_ruleset SERVICES ENDPOINTS_PER_SERVICE [affinity]
// Used by bench/nft_load.sh to time `nft -f` on rulesets of known size
// without the manifest decoder in the way. Prints the IR's object counts
// (chains rules sets elements) on stderr.
#include <cstdlib>
#include <iostream>

#include "bench/synthetic_cluster.h"
#include "dataplane/compile.h"
#include "dataplane/render.h"
#include "model/service_ports.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: gen_ruleset SERVICES ENDPOINTS_PER_SERVICE [affinity]\n";
    return 2;
  }
  using namespace svcproxy;
  const auto cluster = bench::synthetic_cluster(std::atoi(argv[1]), std::atoi(argv[2]), argc > 3);
  const auto node = bench::synthetic_node();
  const auto view = model::build_proxy_state(cluster, node);
  const auto ruleset = dataplane::compile(view.ports, node).ruleset;
  size_t chains = 0, rules = 0, sets = 0, elements = 0;
  for (const auto& t : ruleset.tables) {
    chains += t.chains.size();
    sets += t.sets.size();
    for (const auto& c : t.chains) rules += c.rules.size();
    for (const auto& s : t.sets) elements += s.elements.size();
  }
  std::cerr << chains << " " << rules << " " << sets << " " << elements << "\n";
  std::cout << dataplane::render_nft(ruleset);
  return 0;
}
