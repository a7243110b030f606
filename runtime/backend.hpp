#pragma once
// backend: the kernel interface a corio::loop runs on, and how it is chosen.
//
//     corio::loop lp({.backend = corio::backend_kind::epoll});
//     std::printf("%s\n", corio::to_string(lp.backend()).data());   // "epoll"
//
// io_uring is corio's own interface and the fast one. Where it is refused (Docker's
// default seccomp profile, `sysctl kernel.io_uring_disabled`, a kernel built without it)
// a loop can run on epoll instead: the same operations, the same errors, through
// readiness and non-blocking system calls (docs/backends.md says what it costs and what
// differs).
//
// The choice, made by each loop at construction:
// - loop_options::backend: io_uring or epoll, exactly that; `automatic` (the default)
//   defers to the environment.
// - The environment variable CORIO_BACKEND: `epoll` forces the epoll backend, `io_uring`
//   forces io_uring and refuses to fall back (the loop's constructor throws if it is
//   refused), unset or empty means automatic: io_uring unless io_uring_setup fails with
//   EPERM, ENOSYS or EINVAL, then epoll. Any other value makes every loop constructor (and
//   backend_from_environment) throw std::invalid_argument naming the valid values.
//
// Thread-safety: every function here may be called from any thread.

#include <string_view>

namespace corio {

enum class backend_kind : unsigned char {
  automatic,  // io_uring where the kernel allows it, else epoll
  io_uring,
  epoll,
};

// "automatic", "io_uring", "epoll": the spellings CORIO_BACKEND accepts.
[[nodiscard]] std::string_view to_string(backend_kind k) noexcept;

// CORIO_BACKEND, read once per process: `automatic` when unset or empty. Throws
// std::invalid_argument (at every call) when the value is not a valid name.
[[nodiscard]] backend_kind backend_from_environment();

namespace detail {
// Parses a value of CORIO_BACKEND ("" is automatic). Throws std::invalid_argument naming
// the valid values.
[[nodiscard]] backend_kind parse_backend(std::string_view value);
// The environment's choice for code that cannot throw: an invalid value counts as
// automatic here (the loop's constructor reports it).
[[nodiscard]] backend_kind backend_from_environment_noexcept() noexcept;
}  // namespace detail

}  // namespace corio
