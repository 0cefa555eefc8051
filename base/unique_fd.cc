#include "base/unique_fd.h"

#include <cerrno>
#include <system_error>

namespace svcproxy::base {

UniqueFd adopt_or_throw(int fd, const char* what) {
  if (fd < 0) throw std::system_error(errno, std::generic_category(), what);
  return UniqueFd(fd);
}

}  // namespace svcproxy::base
