// The shapes a manifest stream comes in: kubectl List output in YAML and
// JSON, typed lists, multi-document YAML, other kinds and API groups, and
// loading files and directories.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "tests/watch/manifests_test_util.h"

namespace svcproxy::watch {
namespace {

using testing::decode;
using testing::fixture;
using testing::ip;

TEST(ManifestsStream, KubectlListYamlAndJsonDecodeEqual) {
  const DecodeResult yaml = load_manifests(fixture("cluster.yaml"));
  const DecodeResult json = load_manifests(fixture("cluster.json"));
  ASSERT_TRUE(yaml.diagnostics.empty()) << testing::all_diagnostics(yaml);
  ASSERT_TRUE(json.diagnostics.empty()) << testing::all_diagnostics(json);
  EXPECT_EQ(yaml.state, json.state);

  ASSERT_EQ(yaml.state.services.size(), 2u);
  EXPECT_EQ(yaml.state.services[0].ref, (model::ObjectRef{"default", "kubernetes"}));
  EXPECT_EQ(yaml.state.services[1].ref, (model::ObjectRef{"shop", "web"}));
  EXPECT_EQ(yaml.state.services[1].load_balancer_ips, std::vector{ip("198.51.100.7")});
  ASSERT_EQ(yaml.state.endpoint_slices.size(), 1u);
  EXPECT_EQ(yaml.state.endpoint_slices[0].endpoints.size(), 2u);
  ASSERT_EQ(yaml.state.nodes.size(), 1u);
  EXPECT_EQ(yaml.state.nodes[0].internal_ips.size(), 2u);
}

TEST(ManifestsStream, InlineJsonObject) {
  const auto result = decode(R"({
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "api",
        "namespace": "prod"
    },
    "spec": {
        "clusterIP": "10.96.5.5",
        "clusterIPs": [
            "10.96.5.5"
        ],
        "ports": [
            {
                "name": "grpc",
                "port": 9090,
                "protocol": "TCP",
                "targetPort": "grpc"
            }
        ],
        "type": "ClusterIP"
    },
    "status": {
        "loadBalancer": {}
    }
}
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_EQ(result.state.services[0].ports[0].target_port.name, "grpc");
  EXPECT_EQ(result.state.services[0].cluster_ips, std::vector{ip("10.96.5.5")});
}

TEST(ManifestsStream, TypedListItemsWithoutKindOrApiVersion) {
  const auto result = decode(R"(apiVersion: v1
items:
- metadata:
    name: a
    namespace: ns1
  spec:
    clusterIP: 10.96.1.1
    ports:
    - port: 80
- metadata:
    name: b
    namespace: ns1
  spec:
    clusterIP: 10.96.1.2
    ports:
    - port: 81
kind: ServiceList
metadata:
  resourceVersion: "9001"
---
apiVersion: discovery.k8s.io/v1
items:
- addressType: IPv4
  endpoints:
  - addresses:
    - 10.244.0.1
  metadata:
    labels:
      kubernetes.io/service-name: a
    name: a-1
    namespace: ns1
  ports:
  - port: 80
kind: EndpointSliceList
metadata:
  resourceVersion: "9001"
---
apiVersion: v1
items:
- metadata:
    name: n1
  status:
    addresses:
    - address: 172.18.0.3
      type: InternalIP
kind: NodeList
metadata:
  resourceVersion: "9001"
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 2u);
  EXPECT_EQ(result.state.services[1].ref, (model::ObjectRef{"ns1", "b"}));
  ASSERT_EQ(result.state.endpoint_slices.size(), 1u);
  EXPECT_EQ(result.state.endpoint_slices[0].endpoints[0].address, ip("10.244.0.1"));
  ASSERT_EQ(result.state.nodes.size(), 1u);
  EXPECT_EQ(result.state.nodes[0].internal_ips, std::vector{ip("172.18.0.3")});
}

TEST(ManifestsStream, PlainListItemsMustCarryKind) {
  const auto result = decode(R"(apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: good
  spec:
    clusterIP: 10.96.1.1
    ports:
    - port: 80
- apiVersion: v1
  metadata:
    name: kindless
  spec:
    clusterIP: 10.96.1.2
kind: List
metadata:
  resourceVersion: ""
)");
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_EQ(result.state.services[0].ref.name, "good");
  ASSERT_EQ(result.diagnostics.size(), 1u) << testing::all_diagnostics(result);
  EXPECT_EQ(result.diagnostics[0].kind, "");
  EXPECT_EQ(result.diagnostics[0].object, "document 1");
  EXPECT_EQ(result.diagnostics[0].field, "items[1].kind");
}

TEST(ManifestsStream, OtherKindsAndGroupsAreIgnoredSilently) {
  const auto result = decode(R"(apiVersion: v1
data:
  key: value
kind: ConfigMap
metadata:
  name: settings
  namespace: default
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
spec:
  template:
    spec:
      containers:
      - image: ghcr.io/knative/helloworld-go:latest
---
apiVersion: v1
items:
- metadata:
    name: pod-1
kind: PodList
metadata: {}
---
apiVersion: v1
kind: Endpoints
metadata:
  name: web
subsets: []
---
apiVersion: v1
kind: Service
metadata:
  name: real
spec:
  clusterIP: 10.96.3.3
  ports:
  - port: 80
)");
  EXPECT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_EQ(result.state.services[0].ref.name, "real");
  EXPECT_TRUE(result.state.endpoint_slices.empty());
}

TEST(ManifestsStream, ServiceCIDRv1beta1IsAccepted) {
  const auto result = decode(R"(apiVersion: networking.k8s.io/v1beta1
kind: ServiceCIDR
metadata:
  name: extra
spec:
  cidrs:
  - 10.97.0.0/16
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.service_cidrs.size(), 1u);
}

TEST(ManifestsStream, UnsupportedVersionOfAKnownKindIsReported) {
  const auto result = decode(R"(addressType: IPv4
apiVersion: discovery.k8s.io/v1beta1
endpoints:
- addresses:
  - 10.244.0.1
  topology:
    kubernetes.io/hostname: node-a
kind: EndpointSlice
metadata:
  name: old-slice
  namespace: default
)");
  EXPECT_TRUE(result.state.endpoint_slices.empty());
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].kind, "EndpointSlice");
  EXPECT_EQ(result.diagnostics[0].object, "default/old-slice");
  EXPECT_EQ(result.diagnostics[0].field, "apiVersion");
}

TEST(ManifestsStream, MultiDocumentWithOneBrokenDocument) {
  const std::string text = R"(# services exported for the lab
---
apiVersion: v1
kind: Service
metadata:
  name: first
spec:
  clusterIP: 10.96.0.11
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: broken
spec:
  ports: [ {port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: third
spec:
  clusterIP: 10.96.0.13
  ports:
  - port: 80
...
---
apiVersion: v1
kind: Node
metadata:
  name: node-z
)";
  const auto result = decode(text);
  ASSERT_EQ(result.diagnostics.size(), 1u) << testing::all_diagnostics(result);
  const Diagnostic& d = result.diagnostics[0];
  EXPECT_EQ(d.file, testing::kOrigin);
  EXPECT_EQ(d.kind, "");
  EXPECT_EQ(d.object, "document 2");
  EXPECT_EQ(d.field, "");
  // yaml-cpp notices at the end of the document; the line is the stream's.
  EXPECT_NE(d.message.find("malformed YAML at line 17"), std::string::npos) << d.message;
  ASSERT_EQ(result.state.services.size(), 2u);
  EXPECT_EQ(result.state.services[0].ref.name, "first");
  EXPECT_EQ(result.state.services[1].ref.name, "third");
  ASSERT_EQ(result.state.nodes.size(), 1u);
}

TEST(ManifestsStream, CRLFLineEndingsAndByteOrderMark) {
  const auto result = decode(
      "\xEF\xBB\xBF"
      "apiVersion: v1\r\nkind: Service\r\nmetadata:\r\n  name: win\r\nspec:\r\n  clusterIP: 10.96.0.20\r\n"
      "  ports:\r\n  - port: 80\r\n---\r\napiVersion: v1\r\nkind: Node\r\nmetadata:\r\n  name: w1\r\n");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_EQ(result.state.services[0].cluster_ips, std::vector{ip("10.96.0.20")});
  EXPECT_EQ(result.state.nodes.size(), 1u);
}

TEST(ManifestsStream, DocumentMarkerWithContentOnTheSameLine) {
  const auto result = decode(
      "--- {apiVersion: v1, kind: Node, metadata: {name: inline-a}}\n"
      "--- {apiVersion: v1, kind: Node, metadata: {name: inline-b}}\n");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  EXPECT_EQ(result.state.nodes.size(), 2u);
}

TEST(ManifestsStream, EmptyAndCommentOnlyStreams) {
  for (const char* text : {"", "\n\n", "---\n", "---\n---\n...\n", "# nothing here\n", "null\n"}) {
    const auto result = decode(text);
    EXPECT_TRUE(result.diagnostics.empty()) << text << testing::all_diagnostics(result);
    EXPECT_EQ(result.state, model::ClusterState{}) << text;
  }
}

TEST(ManifestsStream, StateIsSorted) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: zeta
  namespace: b
spec:
  ports:
  - port: 1
---
apiVersion: v1
kind: Service
metadata:
  name: alpha
  namespace: b
spec:
  ports:
  - port: 1
---
apiVersion: v1
kind: Service
metadata:
  name: zeta
  namespace: a
spec:
  ports:
  - port: 1
---
apiVersion: v1
kind: Node
metadata:
  name: n2
---
apiVersion: v1
kind: Node
metadata:
  name: n1
)");
  ASSERT_EQ(result.state.services.size(), 3u);
  EXPECT_EQ(result.state.services[0].ref, (model::ObjectRef{"a", "zeta"}));
  EXPECT_EQ(result.state.services[1].ref, (model::ObjectRef{"b", "alpha"}));
  EXPECT_EQ(result.state.services[2].ref, (model::ObjectRef{"b", "zeta"}));
  ASSERT_EQ(result.state.nodes.size(), 2u);
  EXPECT_EQ(result.state.nodes[0].name, "n1");
}

TEST(ManifestsStream, DuplicateObjectKeepsTheFirst) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  clusterIP: 10.96.0.30
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.96.0.31
  ports:
  - port: 80
)");
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_EQ(result.state.services[0].cluster_ips, std::vector{ip("10.96.0.30")});
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].object, "default/web");
  EXPECT_EQ(result.diagnostics[0].field, "");
}

TEST(ManifestsStream, DecodeAppendsToAnExistingResult) {
  DecodeResult result;
  decode_manifests("apiVersion: v1\nkind: Node\nmetadata:\n  name: b\n", "one.yaml", result);
  decode_manifests("apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n", "two.yaml", result);
  decode_manifests("apiVersion: v1\nkind: Node\nmetadata:\n  name: b\n", "three.yaml", result);
  ASSERT_EQ(result.state.nodes.size(), 2u);
  EXPECT_EQ(result.state.nodes[0].name, "a");
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].file, "three.yaml");
}

TEST(ManifestsStream, GarbageNeverThrows) {
  const std::string deep(5000, '[');
  const std::string nul("apiVersion: v1\0kind: Node\n", 26);
  for (const std::string& text :
       {deep, nul, std::string("\x01\x02\xff\xfe garbage"), std::string("- just\n- a list\n"),
        std::string("plain scalar"), std::string("{\"kind\": \"Service\", \"metadata\": [1, 2]}"),
        std::string("kind: [Service]\n"), std::string("\t- tab: indented\n"),
        std::string("kind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}]}\n---\n%YAML 1.2\n")}) {
    DecodeResult result;
    EXPECT_NO_THROW(decode_manifests(text, "garbage.yaml", result));
    for (const Diagnostic& d : result.diagnostics) {
      EXPECT_EQ(d.str().find('\n'), std::string::npos) << d.str();
    }
  }
}

TEST(ManifestsStream, UTF16IsReportedOnce) {
  const std::string text("\xFF\xFE" "a\0p\0i\0", 8);
  const auto result = decode(text);
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_NE(result.diagnostics[0].message.find("UTF-16"), std::string::npos);
}

// ---- files and directories --------------------------------------------------

class ManifestsLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("svcproxy-manifests-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }

  std::filesystem::path dir_;
};

TEST_F(ManifestsLoad, DirectoryReadsManifestFilesSortedByName) {
  write("b-services.yml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.2\n  ports:\n  - port: 80\n");
  write("a-services.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.1\n  ports:\n  - port: 80\n");
  write("c-nodes.json", R"({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})");
  write("notes.txt", "kind: Node\nmetadata:\n  name: not-a-manifest\n");
  write("d-broken.yaml", "kind: Service\nmetadata:\n  name: [\n");
  std::filesystem::create_directory(dir_ / "nested.yaml");  // a directory: skipped
  std::filesystem::create_directory(dir_ / "sub");
  std::ofstream(dir_ / "sub" / "deep.yaml") << "apiVersion: v1\nkind: Node\nmetadata:\n  name: deep\n";

  const DecodeResult result = load_manifests(dir_.string());
  ASSERT_EQ(result.state.services.size(), 1u);
  // a-services.yaml is read first, so its copy wins and b's is the duplicate.
  EXPECT_EQ(result.state.services[0].cluster_ips, std::vector{ip("10.96.0.1")});
  ASSERT_EQ(result.state.nodes.size(), 1u);
  EXPECT_EQ(result.state.nodes[0].name, "n1");
  ASSERT_EQ(result.diagnostics.size(), 2u) << testing::all_diagnostics(result);
  EXPECT_EQ(result.diagnostics[0].file, (dir_ / "b-services.yml").string());
  EXPECT_EQ(result.diagnostics[0].object, "default/web");
  EXPECT_EQ(result.diagnostics[1].file, (dir_ / "d-broken.yaml").string());
  EXPECT_EQ(result.diagnostics[1].object, "document 1");
  EXPECT_EQ(result.diagnostics[0].scope, Diagnostic::Scope::SingleObject);
  EXPECT_EQ(result.diagnostics[1].scope, Diagnostic::Scope::File);
}

TEST_F(ManifestsLoad, SingleFile) {
  write("one.txt", "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n");
  const DecodeResult result = load_manifests((dir_ / "one.txt").string());
  EXPECT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  EXPECT_EQ(result.state.nodes.size(), 1u);
}

TEST_F(ManifestsLoad, MissingPathIsOneDiagnostic) {
  const std::string path = (dir_ / "does-not-exist.yaml").string();
  const DecodeResult result = load_manifests(path);
  EXPECT_EQ(result.state, model::ClusterState{});
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].file, path);
  EXPECT_EQ(result.diagnostics[0].kind, "");
  EXPECT_EQ(result.diagnostics[0].str().rfind(path + ": skipped: ", 0), 0u) << result.diagnostics[0].str();
  EXPECT_EQ(result.diagnostics[0].scope, Diagnostic::Scope::Unreadable);
}

TEST_F(ManifestsLoad, MissingDirectoryIsUnreadableNotEmpty) {
  const std::string path = (dir_ / "manfests").string() + "/";
  const DecodeResult result = load_manifests(path);
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].scope, Diagnostic::Scope::Unreadable);
  EXPECT_EQ(result.diagnostics[0].message, "cannot read: No such file or directory");
}

TEST_F(ManifestsLoad, EmptyDirectory) {
  const DecodeResult result = load_manifests(dir_.string());
  EXPECT_TRUE(result.diagnostics.empty());
  EXPECT_EQ(result.state, model::ClusterState{});
}

}  // namespace
}  // namespace svcproxy::watch
