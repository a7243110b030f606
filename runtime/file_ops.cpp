#include "file_ops.hpp"

namespace corio {

task<struct statx> statx(int dirfd, std::string path, unsigned mask, int flags, op_options options) {
  struct statx result {};
  co_await detail::uring_awaiter(
      [&](io_uring_sqe* sqe) { io_uring_prep_statx(sqe, dirfd, path.c_str(), flags, mask, &result); },
      [&] { return "statx " + path; }, std::move(options));
  co_return result;
}

}  // namespace corio
