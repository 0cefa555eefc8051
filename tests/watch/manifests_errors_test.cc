// Bad input: every object that cannot be used is skipped with exactly one
// diagnostic naming its kind, object and field, and every other object in
// the stream survives.
#include <gtest/gtest.h>

#include "tests/watch/manifests_test_util.h"

namespace svcproxy::watch {
namespace {

using testing::decode;

struct BadCase {
  const char* name;      // test name suffix
  const char* document;  // the bad object, one YAML document
  const char* kind;
  const char* object;
  const char* field;
  const char* message;   // a substring of the message
};

std::ostream& operator<<(std::ostream& os, const BadCase& c) { return os << c.name; }

constexpr const char* kBefore = R"(apiVersion: v1
kind: Service
metadata:
  name: before
  namespace: default
spec:
  clusterIP: 10.96.0.100
  ports:
  - port: 80
    protocol: TCP
    targetPort: 8080
)";

constexpr const char* kAfter = R"(apiVersion: v1
kind: Node
metadata:
  name: after
spec:
  podCIDR: 10.244.9.0/24
)";

class ManifestsBadInput : public ::testing::TestWithParam<BadCase> {};

TEST_P(ManifestsBadInput, SkipsOnlyTheBadObjectWithOneDiagnostic) {
  const BadCase& c = GetParam();
  const std::string text = std::string(kBefore) + "---\n" + c.document + "---\n" + kAfter;
  const DecodeResult result = decode(text);

  ASSERT_EQ(result.diagnostics.size(), 1u) << testing::all_diagnostics(result);
  const Diagnostic& d = result.diagnostics[0];
  EXPECT_EQ(d.file, testing::kOrigin);
  EXPECT_EQ(d.kind, c.kind);
  EXPECT_EQ(d.object, c.object);
  EXPECT_EQ(d.field, c.field);
  EXPECT_NE(d.message.find(c.message), std::string::npos) << d.message;
  EXPECT_EQ(d.str().find('\n'), std::string::npos);

  // The neighbours survive, and nothing of the bad object leaks through.
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_EQ(result.state.services[0].ref.name, "before");
  ASSERT_EQ(result.state.nodes.size(), 1u);
  EXPECT_EQ(result.state.nodes[0].name, "after");
  EXPECT_TRUE(result.state.endpoint_slices.empty());
  EXPECT_TRUE(result.state.service_cidrs.empty());
}

// A Service document whose spec is `spec` (indented two spaces) and whose
// status is `status`.
#define SERVICE(spec) "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n  namespace: shop\nspec:\n" spec
#define SLICE(body)                                                                              \
  "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  labels:\n"               \
  "    kubernetes.io/service-name: web\n  name: web-abc\n  namespace: shop\n" body
#define NODE(body) "apiVersion: v1\nkind: Node\nmetadata:\n  name: bad-node\n" body

const BadCase kBadCases[] = {
    // ---- Service
    {"ClusterIPsInvalid",
     SERVICE("  clusterIPs:\n  - 10.96.0.1\n  - 10.96.0.256\n  ports:\n  - port: 80\n"),
     "Service", "shop/bad", "spec.clusterIPs[1]", "invalid IP address \"10.96.0.256\""},
    {"ClusterIPInvalid", SERVICE("  clusterIP: 10.96.0.x\n  ports:\n  - port: 80\n"), "Service",
     "shop/bad", "spec.clusterIP", "invalid IP address"},
    {"PortZero", SERVICE("  ports:\n  - name: a\n    port: 80\n  - name: b\n    port: 0\n"), "Service",
     "shop/bad", "spec.ports[1].port", "0 is out of range 1..65535"},
    {"PortTooLarge", SERVICE("  ports:\n  - port: 65536\n"), "Service", "shop/bad", "spec.ports[0].port",
     "65536 is out of range 1..65535"},
    {"PortHuge", SERVICE("  ports:\n  - port: 99999999999999999999999\n"), "Service", "shop/bad",
     "spec.ports[0].port", "out of range"},
    {"PortMissing", SERVICE("  ports:\n  - name: http\n    protocol: TCP\n"), "Service", "shop/bad",
     "spec.ports[0].port", "required"},
    {"PortNotANumber", SERVICE("  ports:\n  - port: eighty\n"), "Service", "shop/bad",
     "spec.ports[0].port", "expected an integer"},
    {"PortFraction", SERVICE("  ports:\n  - port: 80.5\n"), "Service", "shop/bad", "spec.ports[0].port",
     "expected an integer"},
    {"ProtocolUnknown", SERVICE("  ports:\n  - port: 80\n    protocol: ICMP\n"), "Service", "shop/bad",
     "spec.ports[0].protocol", "unknown protocol \"ICMP\""},
    {"TargetPortZero", SERVICE("  ports:\n  - port: 80\n    targetPort: 0\n"), "Service", "shop/bad",
     "spec.ports[0].targetPort", "out of range 1..65535"},
    {"TargetPortTooLarge", SERVICE("  ports:\n  - port: 80\n    targetPort: 70000\n"), "Service",
     "shop/bad", "spec.ports[0].targetPort", "70000 is out of range"},
    {"TargetPortNegative", SERVICE("  ports:\n  - port: 80\n    targetPort: -8080\n"), "Service",
     "shop/bad", "spec.ports[0].targetPort", "out of range"},
    {"NodePortTooLarge", SERVICE("  ports:\n  - port: 80\n    nodePort: 65536\n  type: NodePort\n"),
     "Service", "shop/bad", "spec.ports[0].nodePort", "65536 is out of range 0..65535"},
    {"NodePortNegative", SERVICE("  ports:\n  - port: 80\n    nodePort: -1\n  type: NodePort\n"),
     "Service", "shop/bad", "spec.ports[0].nodePort", "-1 is out of range 0..65535"},
    {"TypeUnknown", SERVICE("  ports:\n  - port: 80\n  type: Internal\n"), "Service", "shop/bad",
     "spec.type", "unknown service type \"Internal\""},
    {"NameMissing",
     "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: shop\nspec:\n  ports:\n  - port: 80\n",
     "Service", "document 2", "metadata.name", "required"},
    {"NameEmpty", "apiVersion: v1\nkind: Service\nmetadata:\n  name: \"\"\nspec: {}\n", "Service",
     "document 2", "metadata.name", "required"},
    {"NameNotAString", "apiVersion: v1\nkind: Service\nmetadata:\n  name:\n  - a\n  - b\n", "Service",
     "document 2", "metadata.name", "expected a string, got a list"},
    {"MetadataNotAMapping", "apiVersion: v1\nkind: Service\nmetadata: web\n", "Service", "document 2",
     "metadata", "expected a mapping, got a scalar"},
    {"LabelsNotAMapping",
     "apiVersion: v1\nkind: Service\nmetadata:\n  labels:\n  - app\n  name: bad\n  namespace: shop\n",
     "Service", "shop/bad", "metadata.labels", "expected a mapping, got a list"},
    {"SpecIsAList", "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n  namespace: shop\nspec:\n- port: 80\n",
     "Service", "shop/bad", "spec", "expected a mapping, got a list"},
    {"PortsIsAMapping", SERVICE("  ports:\n    port: 80\n"), "Service", "shop/bad", "spec.ports",
     "expected a list, got a mapping"},
    {"PortEntryIsAScalar", SERVICE("  ports:\n  - 80\n"), "Service", "shop/bad", "spec.ports[0]",
     "expected a mapping, got a scalar"},
    {"PortIsAMapping", SERVICE("  ports:\n  - port:\n      number: 80\n"), "Service", "shop/bad",
     "spec.ports[0].port", "expected a string, got a mapping"},
    {"ExternalIPInvalid", SERVICE("  externalIPs:\n  - 192.0.2.1\n  - example.com\n  ports:\n  - port: 80\n"),
     "Service", "shop/bad", "spec.externalIPs[1]", "invalid IP address \"example.com\""},
    {"LoadBalancerIngressIPInvalid",
     SERVICE("  ports:\n  - port: 80\n  type: LoadBalancer\nstatus:\n  loadBalancer:\n    ingress:\n"
             "    - ip: 198.51.100.300\n"),
     "Service", "shop/bad", "status.loadBalancer.ingress[0].ip", "invalid IP address"},
    {"LoadBalancerSourceRangeInvalid",
     SERVICE("  loadBalancerSourceRanges:\n  - 10.0.0.0/8\n  - 10.0.0.0/33\n  ports:\n  - port: 80\n"
             "  type: LoadBalancer\n"),
     "Service", "shop/bad", "spec.loadBalancerSourceRanges[1]", "invalid CIDR \"10.0.0.0/33\""},
    {"ExternalTrafficPolicyUnknown", SERVICE("  externalTrafficPolicy: Nearby\n  ports:\n  - port: 80\n"),
     "Service", "shop/bad", "spec.externalTrafficPolicy", "unknown traffic policy \"Nearby\""},
    {"InternalTrafficPolicyUnknown", SERVICE("  internalTrafficPolicy: local\n  ports:\n  - port: 80\n"),
     "Service", "shop/bad", "spec.internalTrafficPolicy", "unknown traffic policy \"local\""},
    {"SessionAffinityUnknown", SERVICE("  ports:\n  - port: 80\n  sessionAffinity: Cookie\n"), "Service",
     "shop/bad", "spec.sessionAffinity", "unknown session affinity \"Cookie\""},
    {"AffinityTimeoutZero",
     SERVICE("  ports:\n  - port: 80\n  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n"
             "      timeoutSeconds: 0\n"),
     "Service", "shop/bad", "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "0 is out of range 1..86400"},
    {"AffinityTimeoutTooLong",
     SERVICE("  ports:\n  - port: 80\n  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n"
             "      timeoutSeconds: 86401\n"),
     "Service", "shop/bad", "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
     "86401 is out of range 1..86400"},
    {"HealthCheckNodePortTooLarge",
     SERVICE("  externalTrafficPolicy: Local\n  healthCheckNodePort: 70000\n  ports:\n  - port: 80\n"
             "  type: LoadBalancer\n"),
     "Service", "shop/bad", "spec.healthCheckNodePort", "70000 is out of range 0..65535"},

    // ---- EndpointSlice
    {"AddressTypeUnknown", SLICE("addressType: IPv5\nendpoints: []\n"), "EndpointSlice", "shop/web-abc",
     "addressType", "unknown address type \"IPv5\""},
    {"AddressTypeMissing", SLICE("endpoints: []\n"), "EndpointSlice", "shop/web-abc", "addressType",
     "required"},
    {"EndpointAddressInvalid",
     SLICE("addressType: IPv4\nendpoints:\n- addresses:\n  - 10.244.1.5\n- addresses:\n  - 10.244.1.500\n"),
     "EndpointSlice", "shop/web-abc", "endpoints[1].addresses[0]", "invalid IP address \"10.244.1.500\""},
    {"EndpointAddressWrongFamily",
     SLICE("addressType: IPv4\nendpoints:\n- addresses:\n  - fd00::5\n"), "EndpointSlice", "shop/web-abc",
     "endpoints[0].addresses[0]", "is not an IPv4 address"},
    {"EndpointAddressWrongFamilyV6",
     SLICE("addressType: IPv6\nendpoints:\n- addresses:\n  - 10.244.1.5\n"), "EndpointSlice",
     "shop/web-abc", "endpoints[0].addresses[0]", "is not an IPv6 address"},
    {"EndpointWithoutAddresses", SLICE("addressType: IPv4\nendpoints:\n- addresses: []\n  nodeName: n1\n"),
     "EndpointSlice", "shop/web-abc", "endpoints[0].addresses", "at least one address"},
    {"EndpointsNotAList", SLICE("addressType: IPv4\nendpoints:\n  addresses:\n  - 10.0.0.1\n"),
     "EndpointSlice", "shop/web-abc", "endpoints", "expected a list, got a mapping"},
    {"ConditionNotABoolean",
     SLICE("addressType: IPv4\nendpoints:\n- addresses:\n  - 10.244.1.5\n  conditions:\n    ready: maybe\n"),
     "EndpointSlice", "shop/web-abc", "endpoints[0].conditions.ready", "expected true or false, got \"maybe\""},
    {"SlicePortZero", SLICE("addressType: IPv4\nendpoints: []\nports:\n- name: http\n  port: 0\n"),
     "EndpointSlice", "shop/web-abc", "ports[0].port", "0 is out of range 1..65535"},
    {"SlicePortTooLarge",
     SLICE("addressType: IPv4\nendpoints: []\nports:\n- name: a\n  port: 80\n- name: b\n  port: 65536\n"),
     "EndpointSlice", "shop/web-abc", "ports[1].port", "65536 is out of range 1..65535"},
    {"SlicePortProtocolUnknown",
     SLICE("addressType: IPv4\nendpoints: []\nports:\n- port: 80\n  protocol: HTTP\n"), "EndpointSlice",
     "shop/web-abc", "ports[0].protocol", "unknown protocol \"HTTP\""},
    {"SliceNameMissing",
     "addressType: IPv4\napiVersion: discovery.k8s.io/v1\nendpoints: []\nkind: EndpointSlice\nmetadata:\n"
     "  generateName: web-\n  namespace: shop\n",
     "EndpointSlice", "document 2", "metadata.name", "required"},

    // ---- Node
    {"PodCIDRsInvalid", NODE("spec:\n  podCIDRs:\n  - 10.244.1.0/24\n  - fd00::/129\n"), "Node", "bad-node",
     "spec.podCIDRs[1]", "invalid CIDR \"fd00::/129\""},
    {"PodCIDRInvalid", NODE("spec:\n  podCIDR: 10.244.1.0/xx\n"), "Node", "bad-node", "spec.podCIDR",
     "invalid CIDR"},
    {"InternalIPInvalid",
     NODE("status:\n  addresses:\n  - address: node-a\n    type: Hostname\n  - address: 172.18.0.300\n"
          "    type: InternalIP\n"),
     "Node", "bad-node", "status.addresses[1].address", "invalid IP address \"172.18.0.300\""},
    {"NodeNameMissing", "apiVersion: v1\nkind: Node\nmetadata:\n  labels:\n    a: b\n", "Node", "document 2",
     "metadata.name", "required"},
    {"TaintsNotAList", NODE("spec:\n  taints: NoSchedule\n"), "Node", "bad-node", "spec.taints",
     "expected a list, got a scalar"},

    // ---- ServiceCIDR
    {"ServiceCIDRInvalid",
     "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata:\n  name: extra\nspec:\n  cidrs:\n"
     "  - 10.96.0.0/12x\n",
     "ServiceCIDR", "extra", "spec.cidrs[0]", "invalid CIDR"},

    // ---- whole documents
    {"MalformedYaml", "apiVersion: v1\nkind: Service\nmetadata:\n  labels: {app: web\n  name: web\n", "", "document 2",
     "", "malformed YAML"},
    {"DocumentIsAList", "- apiVersion: v1\n  kind: Service\n", "", "document 2", "",
     "expected a mapping, got a list"},
    {"KindMissing", "apiVersion: v1\nmetadata:\n  name: what\n", "", "document 2", "kind", "missing; not a Kubernetes object"},
};

#undef SERVICE
#undef SLICE
#undef NODE

INSTANTIATE_TEST_SUITE_P(Cases, ManifestsBadInput, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& bad_case) {
                           return std::string(bad_case.param.name);
                         });

TEST(ManifestsDiagnostic, StrIsOneLineNamingFileKindObjectFieldAndLine) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  ports:
  - name: http
    port: 80
  - name: admin
    port: 0
)");
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].str(),
            "test.yaml: skipped Service shop/web: spec.ports[1].port: 0 is out of range 1..65535 (line 11)");
}

TEST(ManifestsDiagnostic, StrOmitsEmptyPartsAndFlattensNewlines) {
  const Diagnostic whole{.file = "a.yaml", .kind = "", .object = "document 3", .field = "", .message = "bad"};
  EXPECT_EQ(whole.str(), "a.yaml: skipped document 3: bad");
  const Diagnostic file{.file = "/x", .kind = "", .object = "", .field = "", .message = "cannot open"};
  EXPECT_EQ(file.str(), "/x: skipped: cannot open");
  const Diagnostic multi{.file = "f", .kind = "Node", .object = "n", .field = "x", .message = "a\nb\r\nc"};
  EXPECT_EQ(multi.str(), "f: skipped Node n: x: a b  c");
}

TEST(ManifestsDiagnostic, UnnamedListItemIsLocatedByItsIndex) {
  const auto result = decode(R"(apiVersion: v1
items:
- metadata:
    name: ok
  spec:
    ports:
    - port: 80
- metadata:
    namespace: shop
  spec:
    ports:
    - port: 80
- metadata:
    name: also-ok
  spec:
    ports:
    - port: 443
kind: ServiceList
metadata:
  resourceVersion: "1"
)");
  ASSERT_EQ(result.state.services.size(), 2u);
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].kind, "Service");
  EXPECT_EQ(result.diagnostics[0].object, "document 1");
  EXPECT_EQ(result.diagnostics[0].field, "items[1].metadata.name");
}

TEST(ManifestsDiagnostic, BadItemInKubectlJsonList) {
  const auto result = decode(R"({
    "apiVersion": "v1",
    "items": [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "good",
                "namespace": "default"
            },
            "spec": {
                "clusterIP": "10.96.0.1",
                "ports": [
                    {
                        "port": 80,
                        "protocol": "TCP",
                        "targetPort": 80
                    }
                ]
            }
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "bad",
                "namespace": "default"
            },
            "spec": {
                "clusterIP": "10.96.0.2",
                "ports": [
                    {
                        "port": 80,
                        "protocol": "TCP",
                        "targetPort": 123456
                    }
                ]
            }
        }
    ],
    "kind": "List",
    "metadata": {
        "resourceVersion": ""
    }
}
)");
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_EQ(result.state.services[0].ref.name, "good");
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].str(),
            "test.yaml: skipped Service default/bad: spec.ports[0].targetPort: 123456 is out of range 1..65535 "
            "(line 35)");
}

TEST(ManifestsDiagnostic, ListWhoseItemsAreNotAList) {
  const auto result = decode("apiVersion: v1\nitems:\n  name: x\nkind: ServiceList\nmetadata: {}\n");
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].kind, "ServiceList");
  EXPECT_EQ(result.diagnostics[0].object, "document 1");
  EXPECT_EQ(result.diagnostics[0].field, "items");
}

}  // namespace
}  // namespace svcproxy::watch
