// A LIST response as the API server sends it (compact JSON, items without
// kind/apiVersion, metadata with uid, timestamps, labels, ownerReferences and
// optionally managedFields): `services` Services and as many EndpointSlices
// with `endpoints_per_slice` endpoints each (targetRef, nodeName, zone,
// conditions), for the decode benchmark.
#pragma once

#include <cstdio>
#include <string>

namespace svcproxy::bench {

inline std::string uid(int kind, int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-8%03x-%012x", n * 2654435761u, kind, n % 4096, (n * 7) % 4096, n);
  return buf;
}

inline std::string ipv4(uint32_t n) {
  return std::to_string(n >> 24) + "." + std::to_string((n >> 16) & 255) + "." + std::to_string((n >> 8) & 255) + "." +
         std::to_string(n & 255);
}

inline std::string managed_fields(bool on, const char* manager) {
  if (!on) return "";
  return std::string(R"(,"managedFields":[{"manager":")") + manager +
         R"(","operation":"Update","apiVersion":"v1","time":"2026-01-02T03:04:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:ports":{".":{},"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:name":{},"f:port":{},"f:protocol":{},"f:targetPort":{}}},"f:selector":{}}}}])";
}

inline std::string service_json(int s, bool managed) {
  const std::string name = "svc-" + std::to_string(s);
  std::string out = R"({"metadata":{"name":")" + name + R"(","namespace":"bench-)" + std::to_string(s % 50) +
                    R"(","uid":")" + uid(1, s) + R"(","resourceVersion":")" + std::to_string(1000 + s) +
                    R"(","creationTimestamp":"2026-01-02T03:04:05Z","labels":{"app":")" + name + "\"}" +
                    managed_fields(managed, "kubectl-client-side-apply") + R"(},"spec":{"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080)";
  if (s % 3 == 0) out += R"(,"nodePort":)" + std::to_string(30000 + s % 2767);
  out += R"(}],"selector":{"app":")" + name + R"("},"clusterIP":")" + ipv4((10u << 24) | (96u << 16) | (s + 10)) +
         R"(","clusterIPs":[")" + ipv4((10u << 24) | (96u << 16) | (s + 10)) + R"("],"type":")" +
         (s % 3 == 0 ? "NodePort" : "ClusterIP") +
         R"(","sessionAffinity":"None","ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack","internalTrafficPolicy":"Cluster")";
  if (s % 3 == 0) out += R"(,"externalTrafficPolicy":"Cluster")";
  out += R"(},"status":{"loadBalancer":{}}})";
  return out;
}

inline std::string slice_json(int s, int endpoints, bool managed) {
  const std::string svc = "svc-" + std::to_string(s);
  std::string out = R"({"metadata":{"name":")" + svc + "-" + uid(2, s).substr(0, 5) + R"(","generateName":")" + svc +
                    R"(-","namespace":"bench-)" + std::to_string(s % 50) + R"(","uid":")" + uid(2, s) +
                    R"(","resourceVersion":")" + std::to_string(20000 + s) +
                    R"(","generation":3,"creationTimestamp":"2026-01-02T03:04:05Z","labels":{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io","kubernetes.io/service-name":")" +
                    svc + R"("},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-01-02T03:04:05Z"},"ownerReferences":[{"apiVersion":"v1","kind":"Service","name":")" +
                    svc + R"(","uid":")" + uid(1, s) + R"(","controller":true,"blockOwnerDeletion":true}])" +
                    managed_fields(managed, "kube-controller-manager") + R"(},"addressType":"IPv4","endpoints":[)";
  for (int e = 0; e < endpoints; ++e) {
    const uint32_t pod = (10u << 24) | (244u << 16) | static_cast<uint32_t>(s * endpoints + e);
    if (e > 0) out += ',';
    out += R"({"addresses":[")" + ipv4(pod) + R"("],"conditions":{"ready":true,"serving":true,"terminating":false},"targetRef":{"kind":"Pod","namespace":"bench-)" +
           std::to_string(s % 50) + R"(","name":")" + svc + "-7d9c8b6f5d-" + uid(3, e).substr(0, 5) + R"(","uid":")" +
           uid(3, s * endpoints + e) + R"("},"nodeName":"node-)" + std::to_string((s + e) % 500) + R"(","zone":"zone-)" +
           static_cast<char>('a' + e % 3) + "\"}";
  }
  out += R"(],"ports":[{"name":"http","protocol":"TCP","port":8080}]})";
  return out;
}

// {"kind":"List",...,"items":[services..., slices...]}: both kinds in one
// document, as a manifests file holds them (each item carries its kind).
inline std::string cluster_list_json(int services, int endpoints_per_slice, bool managed) {
  std::string out = R"({"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"99999"},"items":[)";
  for (int s = 0; s < services; ++s) {
    std::string item = service_json(s, managed);
    out += R"({"kind":"Service","apiVersion":"v1",)" + item.substr(1) + ",";
  }
  for (int s = 0; s < services; ++s) {
    std::string item = slice_json(s, endpoints_per_slice, managed);
    out += R"({"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",)" + item.substr(1);
    if (s + 1 < services) out += ",";
  }
  out += "]}";
  return out;
}

}  // namespace svcproxy::bench
