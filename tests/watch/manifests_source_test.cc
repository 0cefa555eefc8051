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

// Polls until a reload happened (10 s at most).
bool reloaded(ManifestsSource& source) {
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (std::chrono::steady_clock::now() < deadline)
    if (source.poll(seconds(1))) return true;
  return false;
}

std::vector<std::string> services(ManifestsSource& source) {
  std::vector<std::string> out;
  for (const auto& s : source.store().snapshot().services)
    out.push_back(s.ref.name + ":" + std::to_string(s.ports.at(0).port));
  return out;
}

TEST_F(ManifestsSourceTest, PathThatDisappearsKeepsEveryObjectUntilItIsBack) {
  const fs::path manifests = dir_ / "manifests";
  fs::create_directory(manifests);
  std::ofstream(manifests / "a.yaml") << service("a", "10.96.0.1", 80);
  std::ofstream(manifests / "b.yaml") << service("b", "10.96.0.2", 80);
  ManifestsSource source(manifests.string(), [&](const std::string& l) { logs_.push_back(l); },
                         [&](const Change& c) { changes_.push_back(c); });
  source.load();
  ASSERT_EQ(changes_.size(), 2u);
  EXPECT_TRUE(source.problems().empty());

  fs::rename(manifests, dir_ / "moved-away");  // renamed (an unmounted volume looks the same)
  ASSERT_TRUE(reloaded(source));
  while (source.poll(std::chrono::milliseconds(200))) {
  }
  EXPECT_EQ(changes_.size(), 2u) << "an unreadable path deleted objects";
  EXPECT_EQ(services(source), (std::vector<std::string>{"a:80", "b:80"}));
  ASSERT_EQ(source.problems().size(), 1u);
  EXPECT_EQ(source.problems()[0].file, manifests.string());
  EXPECT_TRUE(source.unreadable());
  EXPECT_EQ(source.stats().read_errors, 1u);
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_EQ(logs_[0].rfind(manifests.string() + ": cannot read: ", 0), 0u) << logs_[0];
  EXPECT_NE(logs_[0].find("keeping the 2 objects"), std::string::npos) << logs_[0];

  // Back, with one file changed: the difference only, and healthy again.
  std::ofstream(dir_ / "moved-away" / "b.yaml") << service("b", "10.96.0.2", 81);
  fs::rename(dir_ / "moved-away", manifests);
  ASSERT_TRUE(until(source, 3));
  EXPECT_EQ(changes_[2].type, ChangeType::Updated);
  EXPECT_TRUE(source.problems().empty());
  EXPECT_FALSE(source.unreadable());
  EXPECT_EQ(source.stats().read_errors, 1u);
  ASSERT_EQ(logs_.size(), 2u);
  EXPECT_NE(logs_[1].find("read completely again"), std::string::npos) << logs_[1];

  // Removed, then created again (a new inode): the same.
  fs::remove_all(manifests);
  ASSERT_TRUE(reloaded(source));
  EXPECT_EQ(services(source), (std::vector<std::string>{"a:80", "b:81"}));
  EXPECT_EQ(source.stats().read_errors, 2u);
  fs::create_directory(dir_ / "new");
  std::ofstream(dir_ / "new" / "a.yaml") << service("a", "10.96.0.1", 82);
  fs::rename(dir_ / "new", manifests);
  ASSERT_TRUE(until(source, 5));  // b deleted (its file is not in the new directory), a updated
  EXPECT_EQ(services(source), (std::vector<std::string>{"a:82"}));
  EXPECT_TRUE(source.problems().empty());
  // Its files are watched again.
  std::ofstream(manifests / "c.yaml") << service("c", "10.96.0.3", 80);
  ASSERT_TRUE(until(source, 6));
  EXPECT_EQ(services(source), (std::vector<std::string>{"a:82", "c:80"}));
}

TEST_F(ManifestsSourceTest, HalfWrittenFileKeepsItsObjectsAndOnlyItsOwn) {
  write("a.yaml", service("a", "10.96.0.1", 80));
  write("b.json", R"({"apiVersion":"v1","kind":"List","items":[)"
                  R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"b","namespace":"d"},"spec":{"clusterIP":"10.96.0.2","ports":[{"port":80}]}},)"
                  R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"c","namespace":"d"},"spec":{"clusterIP":"10.96.0.3","ports":[{"port":80}]}}]})");
  ManifestsSource source(dir_.string(), [&](const std::string& l) { logs_.push_back(l); },
                         [&](const Change& c) { changes_.push_back(c); });
  source.load();
  ASSERT_EQ(services(source), (std::vector<std::string>{"a:80", "b:80", "c:80"}));

  // Caught half written: b's first item is whole, the rest is cut off.
  write("b.json", R"({"apiVersion":"v1","kind":"List","items":[)"
                  R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"b","namespace":"d"},"spec":{"clusterIP":"10.96.0.2","ports":[{"port":90}]}},)"
                  R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"c")");
  ASSERT_TRUE(reloaded(source));
  EXPECT_EQ(changes_.size(), 3u) << "a half-written file changed or deleted objects";
  EXPECT_EQ(services(source), (std::vector<std::string>{"a:80", "b:80", "c:80"}));
  ASSERT_EQ(source.problems().size(), 1u);
  EXPECT_EQ(source.problems()[0].file, (dir_ / "b.json").string());
  EXPECT_EQ(source.problems()[0].scope, Diagnostic::Scope::File);
  EXPECT_FALSE(source.unreadable());
  EXPECT_EQ(source.stats().read_errors, 1u);
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_NE(logs_[0].find("b.json"), std::string::npos) << logs_[0];
  EXPECT_NE(logs_[0].find("keeping the 2 objects it held before until it parses"), std::string::npos) << logs_[0];

  // Another file's edits go through meanwhile; b's objects stay; nothing is
  // logged or counted again.
  write("a.yaml", service("a", "10.96.0.1", 81));
  ASSERT_TRUE(until(source, 4));
  EXPECT_EQ(services(source), (std::vector<std::string>{"a:81", "b:80", "c:80"}));
  EXPECT_EQ(source.stats().read_errors, 1u);
  EXPECT_EQ(logs_.size(), 1u);

  // An object that is invalid in a well-formed document is still skipped
  // (deleted): that is not a read problem.
  write("a.yaml", service("a", "10.96.0.1", 99999));
  ASSERT_TRUE(until(source, 5));
  EXPECT_EQ(changes_[4].type, ChangeType::Deleted);
  EXPECT_EQ(source.stats().read_errors, 1u);
  EXPECT_EQ(source.stats().skipped_objects, 1u);

  // b written whole: its new content, c gone, healthy again.
  write("b.json", R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"b","namespace":"d"},"spec":{"clusterIP":"10.96.0.2","ports":[{"port":91}]}})");
  ASSERT_TRUE(until(source, 7));
  EXPECT_EQ(services(source), (std::vector<std::string>{"b:91"}));
  EXPECT_TRUE(source.problems().empty());
}

TEST_F(ManifestsSourceTest, EmptyDirectoryIsAnEmptyClusterWarnedOnce) {
  ManifestsSource source(dir_.string(), [&](const std::string& l) { logs_.push_back(l); },
                         [&](const Change& c) { changes_.push_back(c); });
  source.load();
  EXPECT_TRUE(source.has_synced());
  EXPECT_TRUE(source.problems().empty());
  ASSERT_EQ(logs_.size(), 1u);
  EXPECT_NE(logs_[0].find("the cluster is empty"), std::string::npos) << logs_[0];
  source.load();
  write("notes.txt", "not a manifest");
  source.load();
  EXPECT_EQ(logs_.size(), 1u);
}

TEST_F(ManifestsSourceTest, UnreadableAtTheFirstLoadIsLeftToTheCaller) {
  ManifestsSource source((dir_ / "manfests").string(), [&](const std::string& l) { logs_.push_back(l); },
                         [&](const Change& c) { changes_.push_back(c); });
  source.load();
  EXPECT_TRUE(source.unreadable());
  EXPECT_FALSE(source.has_synced());
  ASSERT_EQ(source.problems().size(), 1u);
  EXPECT_EQ(source.problems()[0].file, (dir_ / "manfests").string());
  EXPECT_EQ(source.problems()[0].message, "cannot read: No such file or directory");
  EXPECT_TRUE(logs_.empty());
  EXPECT_TRUE(changes_.empty());
}

}  // namespace
}  // namespace svcproxy::watch
