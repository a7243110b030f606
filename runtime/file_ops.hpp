#pragma once
// File and fd operations, one io_uring request each. Every function takes optional
// op_options (stop token override, deadline) and returns an awaitable; errors name the
// operation and its fd or path: "openat /no/such: No such file or directory".
//
//     int fd = co_await corio::openat(AT_FDCWD, "/tmp/x", O_RDWR | O_CREAT, 0600);
//     std::size_t n = co_await corio::write(fd, buf, 0);    // offset 0
//     co_await corio::close(fd);
//
// `offset` is a byte position in the file; corio::at_current_position (the default)
// reads or writes at the file's current position, as read(2)/write(2) do, and is the
// only choice for pipes and sockets.

#include <fcntl.h>
#include <linux/stat.h>
#include <poll.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "../coro/task.hpp"
#include "detail/uring_awaiter.hpp"
#include "kernel_features.hpp"

namespace corio {

inline constexpr std::uint64_t at_current_position = static_cast<std::uint64_t>(-1);

namespace detail {
inline auto describe_fd(const char* op, int fd) {
  return [op, fd] { return std::string(op) + " fd " + std::to_string(fd); };
}
}  // namespace detail

// A request that does nothing: measures the loop itself.
inline auto nop(op_options options = {}) {
  return detail::uring_awaiter([](io_uring_sqe* sqe) { io_uring_prep_nop(sqe); },
                               [] { return std::string("nop"); }, std::move(options));
}

inline auto read(int fd, std::span<std::byte> buffer, std::uint64_t offset = at_current_position,
                 op_options options = {}) {
  return detail::uring_awaiter(
      [=](io_uring_sqe* sqe) {
        io_uring_prep_read(sqe, fd, buffer.data(), static_cast<unsigned>(buffer.size()), offset);
      },
      detail::describe_fd("read", fd), std::move(options));
}

inline auto write(int fd, std::span<const std::byte> data, std::uint64_t offset = at_current_position,
                  op_options options = {}) {
  return detail::uring_awaiter(
      [=](io_uring_sqe* sqe) {
        io_uring_prep_write(sqe, fd, data.data(), static_cast<unsigned>(data.size()), offset);
      },
      detail::describe_fd("write", fd), std::move(options));
}

// The iovec array must stay valid until the operation completes (it is read at submission).
inline auto readv(int fd, std::span<const iovec> buffers, std::uint64_t offset = at_current_position,
                  op_options options = {}) {
  return detail::uring_awaiter(
      [=](io_uring_sqe* sqe) {
        io_uring_prep_readv(sqe, fd, buffers.data(), static_cast<unsigned>(buffers.size()), offset);
      },
      detail::describe_fd("readv", fd), std::move(options));
}

inline auto writev(int fd, std::span<const iovec> buffers, std::uint64_t offset = at_current_position,
                   op_options options = {}) {
  return detail::uring_awaiter(
      [=](io_uring_sqe* sqe) {
        io_uring_prep_writev(sqe, fd, buffers.data(), static_cast<unsigned>(buffers.size()), offset);
      },
      detail::describe_fd("writev", fd), std::move(options));
}

// Returns the new fd. O_CLOEXEC is always added: corio never leaks fds into children.
inline auto openat(int dirfd, std::string path, int flags, mode_t mode = 0, op_options options = {}) {
  auto describe = [path] { return "openat " + path; };
  return detail::uring_awaiter(
      [dirfd, path = std::move(path), flags, mode](io_uring_sqe* sqe) {
        io_uring_prep_openat(sqe, dirfd, path.c_str(), flags | O_CLOEXEC, mode);
      },
      std::move(describe), std::move(options));
}

inline auto close(int fd, op_options options = {}) {
  return detail::uring_awaiter([fd](io_uring_sqe* sqe) { io_uring_prep_close(sqe, fd); },
                               detail::describe_fd("close", fd), std::move(options));
}

inline auto fsync(int fd, op_options options = {}) {
  return detail::uring_awaiter([fd](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, fd, 0); },
                               detail::describe_fd("fsync", fd), std::move(options));
}

inline auto unlinkat(int dirfd, std::string path, int flags = 0, op_options options = {}) {
  auto describe = [path] { return "unlink " + path; };
  return detail::uring_awaiter(
      [dirfd, path = std::move(path), flags](io_uring_sqe* sqe) {
        io_uring_prep_unlinkat(sqe, dirfd, path.c_str(), flags);
      },
      std::move(describe), std::move(options));
}

// Waits until fd is ready for `events` (POLLIN, POLLOUT...); returns the ready events.
inline auto poll(int fd, unsigned events, op_options options = {}) {
  return detail::uring_awaiter([fd, events](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, events); },
                               detail::describe_fd("poll", fd), std::move(options));
}

// Cancels every request in flight on `fd` (IORING_OP_ASYNC_CANCEL with
// IORING_ASYNC_CANCEL_FD | _ALL, Linux 5.19+); returns how many were found. Their awaiters
// throw operation_cancelled (or return their result if they completed first). On an older
// kernel (or with the cancel_any feature disabled, kernel_features.hpp) this fails with
// "cancel fd N: Invalid argument": cancel through stop tokens there.
inline auto cancel_fd(int fd, op_options options = {}) {
  return detail::uring_awaiter(
      [fd](io_uring_sqe* sqe) {
        // Disabled: a flag no kernel knows, which the kernel refuses with -EINVAL exactly as
        // one before 5.19 refuses CANCEL_FD.
        const unsigned unknown_flag = detail::kernel_feature_disabled_noexcept(kernel_feature::cancel_any) ? 1u << 31 : 0;
        io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL | unknown_flag);
      },
      detail::describe_fd("cancel", fd), std::move(options));
}

// statx(2) of `path` (relative to dirfd), with the given mask (STATX_BASIC_STATS by default).
task<struct statx> statx(int dirfd, std::string path, unsigned mask = STATX_BASIC_STATS, int flags = 0,
                         op_options options = {});

}  // namespace corio
