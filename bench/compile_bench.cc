// Compile + render benchmarks: cluster state -> per-port view -> IR -> nft
// text, for growing clusters. Linear growth is the goal (see RESULTS.md).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include "bench/synthetic_cluster.h"
#include "dataplane/compile.h"
#include "dataplane/render.h"
#include "model/service_ports.h"

namespace {

using namespace svcproxy;

void BM_CompileRender(benchmark::State& state) {
  const auto cluster = bench::synthetic_cluster(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  const auto node = bench::synthetic_node();
  size_t bytes = 0;
  for (auto _ : state) {
    auto view = model::build_proxy_state(cluster, node);
    auto compiled = dataplane::compile(view.ports, node);
    auto text = dataplane::render_nft(compiled.ruleset);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["services"] = static_cast<double>(state.range(0));
  state.counters["endpoints"] = static_cast<double>(state.range(0) * state.range(1));
  state.counters["nft_bytes"] = static_cast<double>(bytes);
}

void BM_CompileOnly(benchmark::State& state) {
  const auto cluster = bench::synthetic_cluster(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  const auto node = bench::synthetic_node();
  const auto view = model::build_proxy_state(cluster, node);
  for (auto _ : state) {
    auto compiled = dataplane::compile(view.ports, node);
    benchmark::DoNotOptimize(compiled.ruleset.tables.data());
  }
}

}  // namespace

BENCHMARK(BM_CompileRender)
    ->Args({100, 10})
    ->Args({1000, 10})
    ->Args({10000, 10})
    ->Args({5000, 50})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CompileOnly)->Args({1000, 10})->Args({10000, 10})->Unit(benchmark::kMillisecond);
// No MinTime here: bench/run.sh sets --benchmark_min_time (shorter with --quick).

int main(int argc, char** argv) {
  // As svcproxy's main: keep freed memory for reuse across syncs (see
  // proxy/main.cc), so iterations measure the steady state of a daemon.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
