// The manifests source's change stream: files edited in place, created,
// deleted and replaced by rename become add/update/delete changes.
#include "watch/manifests_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>

namespace svcproxy::watch {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

std::string service(const std::string& name, const std::string& ip, int port) {
  return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\n  namespace: d\nspec:\n  clusterIP: " + ip +
         "\n  ports:\n  - port: " + std::to_string(port) + "\n";
}

class ManifestsSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("svcproxy-source-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }

  // Polls (each poll waits on inotify) until `n` changes arrived or 10 s.
  bool until(ManifestsSource& source, size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(10);
    while (changes_.size() < n && std::chrono::steady_clock::now() < deadline) source.poll(seconds(1));
    return changes_.size() >= n;
  }

  fs::path dir_;
  std::vector<Change> changes_;
  std::vector<std::string> logs_;
};

TEST_F(ManifestsSourceTest, DirectoryEditsCreatesDeletesAndRenames) {
  write("a.yaml", service("a", "10.96.0.1", 80));
  ManifestsSource source(dir_.string(), [&](const std::string& l) { logs_.push_back(l); },
                         [&](const Change& c) { changes_.push_back(c); });
  source.load();
  ASSERT_TRUE(source.has_synced());
  ASSERT_EQ(changes_.size(), 1u);
  EXPECT_EQ(changes_[0].type, ChangeType::Added);

  write("a.yaml", service("a", "10.96.0.1", 81));  // in place
  ASSERT_TRUE(until(source, 2));
  EXPECT_EQ(changes_[1].type, ChangeType::Updated);

  write("b.yaml", service("b", "10.96.0.2", 80));  // created
  ASSERT_TRUE(until(source, 3));
  EXPECT_EQ(changes_[2].type, ChangeType::Added);
  EXPECT_EQ(changes_[2].key.name, "b");

  write(".b.yaml.swp", service("b", "10.96.0.2", 90));  // an editor's temp file: not a manifest
  fs::rename(dir_ / ".b.yaml.swp", dir_ / "b.yaml");     // replaced by rename
  ASSERT_TRUE(until(source, 4));
  EXPECT_EQ(changes_[3].type, ChangeType::Updated);
  EXPECT_EQ(std::get<model::Service>(changes_[3].object).ports[0].port, 90);

  fs::remove(dir_ / "a.yaml");  // deleted
  ASSERT_TRUE(until(source, 5));
  EXPECT_EQ(changes_[4].type, ChangeType::Deleted);
  EXPECT_EQ(changes_[4].key.name, "a");

  write("c.yaml", "kind: Service\nmetadata: {name: [\n");  // broken: logged once, nothing else changes
  EXPECT_TRUE(source.poll(seconds(10)));
  EXPECT_TRUE(source.poll(seconds(0)) == false);
  EXPECT_EQ(changes_.size(), 5u);
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_NE(logs_[0].find("c.yaml"), std::string::npos);
  EXPECT_EQ(source.store().size(Resource::Services), 1u);
}

TEST_F(ManifestsSourceTest, OneFileReplacedByRename) {
  write("cluster.json", R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"x","namespace":"d"},"spec":{"clusterIP":"10.96.0.9","ports":[{"port":53,"protocol":"UDP"}]}})");
  write("other.yaml", service("ignored", "10.96.0.3", 80));
  ManifestsSource source((dir_ / "cluster.json").string(), [&](const std::string& l) { logs_.push_back(l); },
                         [&](const Change& c) { changes_.push_back(c); });
  source.load();
  ASSERT_EQ(changes_.size(), 1u);
  write("other.yaml", service("ignored", "10.96.0.3", 81));  // not our file: no reload
  EXPECT_FALSE(source.poll(std::chrono::milliseconds(300)));
  write("cluster.json.tmp", R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"x","namespace":"d"},"spec":{"clusterIP":"10.96.0.9","ports":[{"port":54,"protocol":"UDP"}]}})");
  fs::rename(dir_ / "cluster.json.tmp", dir_ / "cluster.json");
  ASSERT_TRUE(until(source, 2));
  EXPECT_EQ(changes_[1].type, ChangeType::Updated);
}

}  // namespace
}  // namespace svcproxy::watch
