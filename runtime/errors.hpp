#pragma once
// The runtime's error convention (style.md, habit 7): a failed operation throws
// std::system_error whose what() names the operation and its object, then the errno
// text: "connect 127.0.0.1:1: Connection refused". Two outcomes a caller usually handles
// apart get their own types: operation_cancelled (a stop request reached the operation)
// and timed_out (its deadline passed).
//
// Negative-errno results from io_uring become exceptions in exactly one place,
// detail::throw_errno, so every message has the same shape.

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>

namespace corio {

// A stop request (std::stop_token) ended the operation before it completed.
class operation_cancelled : public std::system_error {
 public:
  explicit operation_cancelled(const std::string& what)
      : std::system_error(std::make_error_code(std::errc::operation_canceled), what) {}
};

// The operation's deadline passed before it completed.
class timed_out : public std::system_error {
 public:
  explicit timed_out(const std::string& what)
      : std::system_error(std::make_error_code(std::errc::timed_out), what) {}
};

namespace detail {

// `error` is a positive errno value; `what` says what was being done, to what.
[[noreturn]] void throw_errno(int error, std::string_view what);

// For io_uring results and raw syscalls returning -errno: returns res when res >= 0.
inline int check(int res, std::string_view what) {
  if (res < 0) [[unlikely]]
    throw_errno(-res, what);
  return res;
}

// For libc calls that return -1 and set errno.
inline int check_errno(int res, std::string_view what) {
  if (res < 0) [[unlikely]]
    throw_errno(errno, what);
  return res;
}

}  // namespace detail
}  // namespace corio
