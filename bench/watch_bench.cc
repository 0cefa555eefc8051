// Decode throughput of the watch decoders: a LIST of N Services + N
// EndpointSlices (E endpoints each) as the API server sends it, into the
// model. Prints MB/s, objects/s, store bytes per endpoint and the process RSS.
//
//   watch_bench [services=10000] [endpoints_per_slice=10] [managedFields=1] [rounds=5]
//       everything in one process (the generated inputs count in its RSS)
//   watch_bench --store DIR [services] [endpoints] [managedFields]
//       writes the two LIST replies to DIR, then, as the informer does,
//       receives each (read into a buffer), decodes it into a Store and frees
//       it; prints the decode rate, the store's heap per endpoint and the
//       process's peak RSS (the process holds nothing else)
#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include <unistd.h>

#include "bench/watch_data.h"
#include "watch/api_objects.h"
#include "watch/manifests.h"
#include "watch/store.h"

#include <malloc.h>

namespace {

long rss_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::strtol(line.c_str() + std::string(field).size(), nullptr, 10);
  }
  return -1;
}

}  // namespace

int store_mode(int argc, char** argv) {
  const std::string dir = argv[2];
  const int services = argc > 3 ? std::atoi(argv[3]) : 10000;
  const int endpoints = argc > 4 ? std::atoi(argv[4]) : 10;
  const bool managed = argc > 5 ? std::atoi(argv[5]) != 0 : true;
  {
    std::ofstream s(dir + "/services.json"), e(dir + "/endpointslices.json");
    s << R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"99999"},"items":[)";
    e << R"({"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"99999"},"items":[)";
    for (int i = 0; i < services; ++i) {
      s << (i > 0 ? "," : "") << svcproxy::bench::service_json(i, managed);
      e << (i > 0 ? "," : "") << svcproxy::bench::slice_json(i, endpoints, managed);
    }
    s << "]}";
    e << "]}";
  }
  const long rss_start = rss_kib("VmRSS:");
  const size_t heap_start = mallinfo2().uordblks;
  svcproxy::watch::Store store;
  svcproxy::watch::ApiDecoder decoder;
  double seconds = 0, bytes = 0;
  for (const auto& [file, resource] : {std::pair{"services.json", svcproxy::watch::Resource::Services},
                                       std::pair{"endpointslices.json", svcproxy::watch::Resource::EndpointSlices}}) {
    std::ifstream in(dir + "/" + file, std::ios::binary | std::ios::ate);
    std::string body(static_cast<size_t>(in.tellg()), '\0');
    in.seekg(0);
    in.read(body.data(), static_cast<std::streamsize>(body.size()));
    body.reserve(body.size() + svcproxy::watch::ApiDecoder::kPadding);
    svcproxy::watch::ListPage page;
    std::string error;
    const auto start = std::chrono::steady_clock::now();
    if (!decoder.decode_list(body, resource, page, error)) {
      std::fprintf(stderr, "%s\n", error.c_str());
      return 1;
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bytes += static_cast<double>(body.size());
    std::string().swap(body);
    store.replace(resource, std::move(page.objects));
  }
  const size_t heap = mallinfo2().uordblks - heap_start;
  std::printf("command: watch_bench --store DIR %d %d %d\n", services, endpoints, managed ? 1 : 0);
  std::printf("LIST replies %.1f MB: decode %.1f ms, %.0f MB/s, %.0f objects/s\n", bytes / 1e6, seconds * 1e3,
              bytes / 1e6 / seconds, 2 * services / seconds);
  std::printf("store: %zu services + %zu slices; heap %.1f MiB = %zu bytes per endpoint (all objects included)\n",
              store.size(svcproxy::watch::Resource::Services), store.size(svcproxy::watch::Resource::EndpointSlices),
              heap / 1048576.0, heap / static_cast<size_t>(services * endpoints));
  std::printf("process RSS: start %.1f MiB, now %.1f MiB, peak %.1f MiB\n", rss_start / 1024.0,
              rss_kib("VmRSS:") / 1024.0, rss_kib("VmHWM:") / 1024.0);
  std::remove((dir + "/services.json").c_str());
  std::remove((dir + "/endpointslices.json").c_str());
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 2 && std::string(argv[1]) == "--store") return store_mode(argc, argv);
  const int services = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int endpoints = argc > 2 ? std::atoi(argv[2]) : 10;
  const bool managed = argc > 3 ? std::atoi(argv[3]) != 0 : true;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 5;

  utsname uts{};
  uname(&uts);
  std::printf("machine: %s %s, %u hardware threads\n", uts.nodename, uts.machine, std::thread::hardware_concurrency());
  std::printf("command: watch_bench %d %d %d %d\n", services, endpoints, managed ? 1 : 0, rounds);

  // The API server's two LIST replies (items without kind), as the reflector
  // receives them: decoded from memory.
  {
    std::string service_list = R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"99999"},"items":[)";
    std::string slice_list =
        R"({"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"99999"},"items":[)";
    for (int i = 0; i < services; ++i) {
      if (i > 0) {
        service_list += ',';
        slice_list += ',';
      }
      service_list += svcproxy::bench::service_json(i, managed);
      slice_list += svcproxy::bench::slice_json(i, endpoints, managed);
    }
    service_list += "]}";
    slice_list += "]}";
    service_list.reserve(service_list.size() + svcproxy::watch::ApiDecoder::kPadding);
    slice_list.reserve(slice_list.size() + svcproxy::watch::ApiDecoder::kPadding);
    const double list_mb = static_cast<double>(service_list.size() + slice_list.size()) / 1e6;
    std::printf("API LIST replies: %.1f MB JSON (ServiceList %.1f MB + EndpointSliceList %.1f MB)\n", list_mb,
                service_list.size() / 1e6, slice_list.size() / 1e6);
    svcproxy::watch::ApiDecoder decoder;
    double best_list = 1e9;
    size_t heap_per_endpoint = 0;
    for (int r = 0; r < rounds; ++r) {
      const size_t heap_before = mallinfo2().uordblks;
      svcproxy::watch::ListPage services_page, slices_page;
      std::string error;
      const auto start = std::chrono::steady_clock::now();
      const bool ok = decoder.decode_list(service_list, svcproxy::watch::Resource::Services, services_page, error) &&
                      decoder.decode_list(slice_list, svcproxy::watch::Resource::EndpointSlices, slices_page, error);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!ok || services_page.objects.size() != static_cast<size_t>(services) || !slices_page.bad.empty()) {
        std::fprintf(stderr, "list decode failed: %s\n", error.c_str());
        return 1;
      }
      services_page.objects.shrink_to_fit();
      slices_page.objects.shrink_to_fit();
      heap_per_endpoint = (mallinfo2().uordblks - heap_before) / static_cast<size_t>(services * endpoints);
      best_list = std::min(best_list, seconds);
    }
    std::printf("API list decode (simdjson, from memory): best of %d: %.1f ms, %.0f MB/s, %.0f objects/s\n", rounds,
                best_list * 1e3, list_mb / best_list, 2 * services / best_list);
    std::printf("decoded objects' heap (Services + EndpointSlices) per endpoint: %zu bytes\n", heap_per_endpoint);
    std::printf("peak RSS so far: %.1f MiB\n", rss_kib("VmHWM:") / 1024.0);
  }

  std::string text = svcproxy::bench::cluster_list_json(services, endpoints, managed);
  const double mb = static_cast<double>(text.size()) / 1e6;
  text.reserve(text.size() + 64);
  {
    double best_memory = 1e9;
    for (int r = 0; r < rounds; ++r) {
      svcproxy::watch::DecodeResult result;
      const auto start = std::chrono::steady_clock::now();
      svcproxy::watch::decode_manifests_json_padded(text, "bench.json", result);
      best_memory = std::min(best_memory, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      if (!result.diagnostics.empty() || result.state.endpoint_slices.size() != static_cast<size_t>(services)) return 1;
    }
    std::printf("manifests JSON decode (from memory, + sort): best of %d: %.1f ms, %.0f MB/s, %.0f objects/s\n", rounds,
                best_memory * 1e3, mb / best_memory, 2 * services / best_memory);
  }
  const std::string path = "/tmp/watch_bench_" + std::to_string(::getpid()) + ".json";
  std::ofstream(path) << text;
  std::string().swap(text);
  std::printf("input: %.1f MB JSON, %d objects, %d endpoints\n", mb, 2 * services, services * endpoints);

  double best = 1e9;
  for (int r = 0; r < rounds; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const svcproxy::watch::DecodeResult result = svcproxy::watch::load_manifests(path);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, seconds);
    if (result.state.services.size() != static_cast<size_t>(services) || !result.diagnostics.empty()) {
      std::fprintf(stderr, "decode failed: %zu services, %zu diagnostics\n", result.state.services.size(),
                   result.diagnostics.size());
      if (!result.diagnostics.empty()) std::fprintf(stderr, "%s\n", result.diagnostics[0].str().c_str());
      return 1;
    }
  }
  std::remove(path.c_str());
  std::printf("load_manifests (read + decode + sort): best of %d: %.1f ms, %.0f MB/s, %.0f objects/s\n", rounds, best * 1e3, mb / best,
              2 * services / best);
  std::printf("peak RSS: %ld KiB (%.1f MiB)\n", rss_kib("VmHWM:"), rss_kib("VmHWM:") / 1024.0);
  return 0;
}
