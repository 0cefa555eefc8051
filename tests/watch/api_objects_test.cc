// Decoding what the API server sends: real-shaped objects (every field the
// compiler uses), list items without kind, watch events of every type, and
// bad input.
#include "watch/api_objects.h"

#include <gtest/gtest.h>

#include "watch/manifests.h"

namespace svcproxy::watch {
namespace {

const std::string kService = R"({"metadata":{"name":"web","namespace":"shop","uid":"1b4e","resourceVersion":"4242","creationTimestamp":"2026-01-01T00:00:00Z","labels":{"app":"web"},"annotations":{"x":"y"},"managedFields":[{"manager":"kubectl","operation":"Update","fieldsV1":{"f:spec":{}}}]},"spec":{"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":"http","nodePort":30080},{"name":"dns","protocol":"UDP","port":53,"targetPort":5353,"nodePort":30053},{"name":"sctp","protocol":"SCTP","port":9,"targetPort":9}],"selector":{"app":"web"},"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10","fd00:10:96::a"],"type":"LoadBalancer","externalIPs":["192.0.2.10"],"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":600}},"loadBalancerSourceRanges":["203.0.113.0/24"," 198.51.100.0/24 "],"externalTrafficPolicy":"Local","healthCheckNodePort":32000,"ipFamilies":["IPv4","IPv6"],"ipFamilyPolicy":"PreferDualStack","allocateLoadBalancerNodePorts":true,"internalTrafficPolicy":"Local"},"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.7","ipMode":"VIP"},{"ip":"198.51.100.8","ipMode":"Proxy"},{"hostname":"lb.example"}]}}})";

const std::string kSlice = R"({"metadata":{"name":"web-x7k2p","generateName":"web-","namespace":"shop","resourceVersion":"4243","labels":{"kubernetes.io/service-name":"web","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-01-01T00:00:01Z"},"ownerReferences":[{"apiVersion":"v1","kind":"Service","name":"web","uid":"1b4e","controller":true}]},"addressType":"IPv4","endpoints":[{"addresses":["10.244.1.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"hints":{"forZones":[{"name":"zone-a"}],"forNodes":[{"name":"node-1"}]},"nodeName":"node-1","targetRef":{"kind":"Pod","namespace":"shop","name":"web-1","uid":"aa"},"zone":"zone-a"},{"addresses":["10.244.2.6"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"node-2","zone":"zone-b"}],"ports":[{"name":"http","protocol":"TCP","port":8080},{"name":"dns","protocol":"UDP","port":5353}]})";

std::string padded(std::string text) {
  text.reserve(text.size() + ApiDecoder::kPadding);
  return text;
}

TEST(ApiObjects, ListItemsWithoutKindDecodeLikeTheManifestsDecoder) {
  const std::string body = padded(R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"5000","continue":"abc"},"items":[)" + kService + "]}");
  ApiDecoder decoder;
  ListPage page;
  std::string error;
  ASSERT_TRUE(decoder.decode_list(body, Resource::Services, page, error)) << error;
  EXPECT_EQ(page.resource_version, "5000");
  EXPECT_EQ(page.continue_token, "abc");
  ASSERT_EQ(page.objects.size(), 1u);
  const auto& s = std::get<model::Service>(page.objects[0]);

  // The same object through the manifests decoders (YAML and JSON), with its kind.
  DecodeResult manifests;
  decode_manifests(R"({"kind":"Service","apiVersion":"v1",)" + kService.substr(1), "web.yaml", manifests, ManifestFormat::Yaml);
  ASSERT_TRUE(manifests.diagnostics.empty()) << manifests.diagnostics[0].str();
  EXPECT_EQ(s, manifests.state.services.at(0));

  EXPECT_EQ(s.ref, (model::ObjectRef{"shop", "web"}));
  EXPECT_EQ(s.resource_version, "4242");
  EXPECT_EQ(s.type, model::ServiceType::LoadBalancer);
  ASSERT_EQ(s.cluster_ips.size(), 2u);
  EXPECT_EQ(s.cluster_ips[1].str(), "fd00:10:96::a");
  ASSERT_EQ(s.ports.size(), 3u);
  EXPECT_EQ(s.ports[0].target_port.name, "http");
  EXPECT_EQ(s.ports[0].node_port, 30080);
  EXPECT_EQ(s.ports[1].protocol, model::Protocol::UDP);
  EXPECT_EQ(s.ports[1].target_port.number, 5353);
  EXPECT_EQ(s.ports[2].protocol, model::Protocol::SCTP);
  EXPECT_EQ(s.external_ips.at(0).str(), "192.0.2.10");
  ASSERT_EQ(s.load_balancer_ips.size(), 1u);  // not the Proxy one, not the hostname
  EXPECT_EQ(s.load_balancer_ips[0].str(), "198.51.100.7");
  ASSERT_EQ(s.load_balancer_source_ranges.size(), 2u);
  EXPECT_EQ(s.external_traffic_policy, model::TrafficPolicy::Local);
  EXPECT_EQ(s.internal_traffic_policy, model::TrafficPolicy::Local);
  EXPECT_TRUE(s.session_affinity_client_ip);
  EXPECT_EQ(s.session_affinity_timeout_seconds, 600u);
  EXPECT_EQ(s.health_check_node_port, 32000);
  EXPECT_FALSE(s.headless);
}

TEST(ApiObjects, EndpointSliceEveryField) {
  const std::string body = padded(R"({"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"9"},"items":[)" + kSlice + "]}");
  ApiDecoder decoder;
  ListPage page;
  std::string error;
  ASSERT_TRUE(decoder.decode_list(body, Resource::EndpointSlices, page, error)) << error;
  ASSERT_EQ(page.objects.size(), 1u);
  const auto& e = std::get<model::EndpointSlice>(page.objects[0]);
  EXPECT_EQ(e.service_name, "web");
  EXPECT_EQ(e.last_change_trigger_time, "2026-01-01T00:00:01Z");
  ASSERT_EQ(e.endpoints.size(), 2u);
  EXPECT_EQ(e.endpoints[0].address->str(), "10.244.1.5");
  EXPECT_EQ(e.endpoints[0].hint_zones, std::vector<std::string>{"zone-a"});
  EXPECT_EQ(e.endpoints[0].hint_nodes, std::vector<std::string>{"node-1"});
  EXPECT_EQ(e.endpoints[0].zone, "zone-a");
  EXPECT_FALSE(e.endpoints[1].conditions.ready);
  EXPECT_TRUE(e.endpoints[1].conditions.terminating);
  EXPECT_EQ(e.endpoints[1].node_name, "node-2");
  ASSERT_EQ(e.ports.size(), 2u);
  EXPECT_EQ(e.ports[1].port, 5353);
}

TEST(ApiObjects, BadItemsAreReportedWithTheirNameAndTheRestDecodes) {
  const std::string body = padded(R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"bad","namespace":"n","resourceVersion":"7"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":70000}]}},{"metadata":{"namespace":"n"}},{"kind":"Pod","metadata":{"name":"p"}},)" + kService + "]}");
  ApiDecoder decoder;
  ListPage page;
  std::string error;
  ASSERT_TRUE(decoder.decode_list(body, Resource::Services, page, error)) << error;
  EXPECT_EQ(page.objects.size(), 1u);
  ASSERT_EQ(page.bad.size(), 3u);
  EXPECT_EQ(page.bad[0].str(), "skipped Service n/bad: spec.ports[0].port: 70000 is out of range 1..65535");
  EXPECT_EQ(page.bad[0].resource_version, "7");
  EXPECT_EQ(page.bad[1].str(), "skipped Service: metadata.name: required");
  EXPECT_EQ(page.bad[2].str(), "skipped Service: kind: expected Service, got \"Pod\"");
}

TEST(ApiObjects, WatchEvents) {
  ApiDecoder decoder;
  WatchEvent event;
  std::string error;
  ASSERT_TRUE(decoder.decode_event(R"({"type":"ADDED","object":{"kind":"Service","apiVersion":"v1",)" + kService.substr(1) + "}",
                                   Resource::Services, event, error)) << error;
  EXPECT_EQ(event.type, EventType::Added);
  EXPECT_EQ(event.resource_version, "4242");
  ASSERT_TRUE(event.object.has_value());

  ASSERT_TRUE(decoder.decode_event(R"({"type":"DELETED","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1",)" + kSlice.substr(1) + "}",
                                   Resource::EndpointSlices, event, error));
  EXPECT_EQ(event.type, EventType::Deleted);
  EXPECT_EQ(object_key(*event.object), (model::ObjectRef{"shop", "web-x7k2p"}));

  ASSERT_TRUE(decoder.decode_event(R"({"type":"BOOKMARK","object":{"kind":"Service","apiVersion":"v1","metadata":{"resourceVersion":"12345","annotations":{"k8s.io/initial-events-end":"true"}}}})",
                                   Resource::Services, event, error));
  EXPECT_EQ(event.type, EventType::Bookmark);
  EXPECT_EQ(event.resource_version, "12345");
  EXPECT_TRUE(event.initial_events_end);

  ASSERT_TRUE(decoder.decode_event(R"J({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 10000 (343914)","reason":"Expired","code":410}})J",
                                   Resource::Services, event, error));
  EXPECT_EQ(event.type, EventType::Error);
  EXPECT_EQ(event.status.code, 410);
  EXPECT_EQ(event.status.reason, "Expired");

  ASSERT_TRUE(decoder.decode_event(R"({"type":"MODIFIED","object":{"metadata":{"name":"x","namespace":"y","resourceVersion":"3"},"spec":{"clusterIP":"nope"}}})",
                                   Resource::Services, event, error));
  EXPECT_FALSE(event.object.has_value());
  ASSERT_TRUE(event.bad.has_value());
  EXPECT_EQ(event.bad->ref, (model::ObjectRef{"y", "x"}));
  EXPECT_EQ(event.resource_version, "3");

  EXPECT_FALSE(decoder.decode_event(R"({"type":"ADDED","object":{)", Resource::Services, event, error));
  EXPECT_FALSE(decoder.decode_event(R"({"type":"SURPRISE","object":{}})", Resource::Services, event, error));
  EXPECT_NE(error.find("SURPRISE"), std::string::npos);
  EXPECT_FALSE(decoder.decode_event(R"([1,2])", Resource::Services, event, error));
}

TEST(ApiObjects, StatusRepliesAndNonLists) {
  ApiDecoder decoder;
  ApiStatus status;
  const std::string forbidden = padded(R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"services is forbidden: User \"x\" cannot list resource","reason":"Forbidden","code":403})");
  ASSERT_TRUE(decoder.decode_status(forbidden, status));
  EXPECT_EQ(status.code, 403);
  ListPage page;
  std::string error;
  EXPECT_FALSE(decoder.decode_list(forbidden, Resource::Services, page, error));
  EXPECT_NE(error.find("forbidden"), std::string::npos);
  EXPECT_FALSE(decoder.decode_list(padded("<html>"), Resource::Services, page, error));
  EXPECT_FALSE(decoder.decode_status(padded("nope"), status));
}

}  // namespace
}  // namespace svcproxy::watch
