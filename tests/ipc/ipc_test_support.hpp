#pragma once
// Helpers shared by the ipc tests: children that run a lambda and exit with its value,
// pipes to read what a child wrote, socket pairs, ring memory outside shared memory, and
// how hard a stress test may push in this build.
#include <doctest/doctest.h>

#include <corio/coro/detail/sanitizers.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <utility>

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

// True once no process has this pid any more (reaped). A zombie still counts as present.
inline bool process_gone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

// Reaps pid (a child, or an orphan reparented to this subreaper) within `timeout`: its
// wait status, or -1 when it still runs then. The short deadline makes a regression
// fail in seconds with a message instead of hanging until meson's timeout.
inline int reap_within(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    REQUIRE(r >= 0);
    if (r == pid) return status;
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    ::usleep(2000);
  }
}

// Reaps pid within `timeout` and returns its wait status; one still running then is
// killed and reaped so nothing is left behind, and the test fails naming `what`.
inline int reap_or_kill_within(pid_t pid, std::chrono::milliseconds timeout, const std::string& what) {
  const int status = reap_within(pid, timeout);
  if (status == -1) {
    ::kill(pid, SIGKILL);
    reap_within(pid, std::chrono::seconds(5));
  }
  REQUIRE_MESSAGE(status != -1, what << " still runs after " << timeout.count() << " ms");
  return status;
}

// Checks that pid ends by SIGKILL within `timeout` (reap_or_kill_within).
inline void check_sigkilled_within(pid_t pid, std::chrono::milliseconds timeout, const char* what) {
  const int status = reap_or_kill_within(pid, timeout, what);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}

// SIGKILLs and reaps each of `pids`: a test's helper processes at its end, however it ends.
inline void kill_and_reap_all(std::span<const pid_t> pids) noexcept {
  for (pid_t p : pids) {
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
  }
}

// A test process that adopts its orphaned grandchildren (PR_SET_CHILD_SUBREAPER) for the
// scope, so it can reap them and read how they ended.
struct subreaper_scope {
  subreaper_scope() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0); }
  ~subreaper_scope() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  subreaper_scope(const subreaper_scope&) = delete;
  subreaper_scope& operator=(const subreaper_scope&) = delete;
};

// A raw pipe the test reads what a child wrote; both ends closed on destruction.
struct raw_pipe {
  int fds[2] = {-1, -1};
  raw_pipe() { REQUIRE(::pipe2(fds, O_CLOEXEC) == 0); }
  ~raw_pipe() {
    for (int fd : fds)
      if (fd >= 0) ::close(fd);
  }
  raw_pipe(const raw_pipe&) = delete;
  raw_pipe& operator=(const raw_pipe&) = delete;
  int read_end() const { return fds[0]; }
  int write_end() const { return fds[1]; }
  void close_write() { ::close(std::exchange(fds[1], -1)); }
  // Everything up to end of file: every copy of the write end must be closed.
  std::string read_all() {
    std::string s;
    char buf[512];
    for (;;) {
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      s.append(buf, static_cast<std::size_t>(n));
    }
    return s;
  }
};

// A connected AF_UNIX stream socket pair; both ends closed on destruction.
struct socket_pair {
  int fd[2] = {-1, -1};
  socket_pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0); }
  ~socket_pair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  socket_pair(const socket_pair&) = delete;
  socket_pair& operator=(const socket_pair&) = delete;
  void close(int i) { ::close(std::exchange(fd[i], -1)); }
};

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
