#pragma once
// Helpers shared by the ipc tests: children that run a lambda and exit with its value,
// ring memory outside shared memory, and how hard a stress test may push in this build.
#include <doctest/doctest.h>

#include <corio/coro/detail/sanitizers.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <span>
#include <string>

namespace corio_test {

// Sanitizer builds run stress loops with fewer rounds: they are 5-20x slower. Some fork
// tests cannot run under ThreadSanitizer alone.
inline constexpr bool thread_sanitized = CORIO_DETAIL_TSAN != 0;
inline constexpr bool sanitized = CORIO_DETAIL_ASAN != 0 || thread_sanitized;

// Runs fn() in a fork()ed child that _exit()s with fn's return value (3 if it threw);
// returns the child's pid. Flushes first, so the child cannot repeat buffered output.
template <class F>
pid_t fork_child(F fn) {
  std::fflush(nullptr);
  std::cout.flush();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 3;
    try {
      rc = fn();
    } catch (...) {
    }
    ::_exit(rc);
  }
  return pid;
}

// Reaps pid and returns its exit status; fails the test if it was killed by a signal.
inline int exit_status(pid_t pid) {
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

// 64-byte aligned heap memory, filled with 0xAB, for rings that stay inside one process.
struct aligned_block {
  explicit aligned_block(std::size_t n)
      : size(n), ptr(static_cast<std::byte*>(std::aligned_alloc(64, (n + 63) & ~std::size_t{63}))) {
    std::memset(ptr.get(), 0xAB, n);
  }
  std::span<std::byte> span() { return {ptr.get(), size}; }
  struct freer {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::size_t size;
  std::unique_ptr<std::byte, freer> ptr;
};

inline std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

}  // namespace corio_test
