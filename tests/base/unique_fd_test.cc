#include "base/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <system_error>

namespace svcproxy::base {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

int new_fd() { return ::eventfd(0, EFD_CLOEXEC); }

TEST(UniqueFdTest, ClosesWhenDestroyed) {
  const int raw = new_fd();
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    EXPECT_EQ(fd.get(), raw);
    EXPECT_TRUE(fd);
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFdTest, DefaultHoldsNothing) {
  UniqueFd fd;
  EXPECT_FALSE(fd);
  EXPECT_EQ(fd.get(), -1);
}

TEST(UniqueFdTest, MoveTransfersOwnership) {
  const int raw = new_fd();
  UniqueFd a(raw);
  UniqueFd b(std::move(a));
  EXPECT_EQ(a.get(), -1);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(b.get(), raw);
  UniqueFd c;
  c = std::move(b);
  EXPECT_EQ(c.get(), raw);
  EXPECT_TRUE(is_open(raw));
}

TEST(UniqueFdTest, MoveAssignClosesTheOldDescriptor) {
  const int first = new_fd();
  const int second = new_fd();
  UniqueFd a(first);
  a = UniqueFd(second);
  EXPECT_FALSE(is_open(first));
  EXPECT_EQ(a.get(), second);
}

TEST(UniqueFdTest, ReleaseKeepsTheDescriptorOpen) {
  const int raw = new_fd();
  int released = -1;
  {
    UniqueFd fd(raw);
    released = fd.release();
    EXPECT_FALSE(fd);
  }
  EXPECT_EQ(released, raw);
  EXPECT_TRUE(is_open(raw));
  ::close(raw);
}

TEST(UniqueFdTest, ResetClosesAndTakesTheNewOne) {
  const int first = new_fd();
  const int second = new_fd();
  UniqueFd fd(first);
  fd.reset(second);
  EXPECT_FALSE(is_open(first));
  EXPECT_EQ(fd.get(), second);
  fd.reset();
  EXPECT_FALSE(is_open(second));
  EXPECT_FALSE(fd);
}

TEST(UniqueFdTest, AdoptOrThrowNamesTheCallAndErrno) {
  errno = EMFILE;
  try {
    (void)adopt_or_throw(-1, "eventfd");
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EMFILE);
    EXPECT_NE(std::string(e.what()).find("eventfd"), std::string::npos) << e.what();
  }
  const int raw = new_fd();
  EXPECT_EQ(adopt_or_throw(raw, "eventfd").get(), raw);
  EXPECT_FALSE(is_open(raw));  // the temporary owned and closed it
}

}  // namespace
}  // namespace svcproxy::base
