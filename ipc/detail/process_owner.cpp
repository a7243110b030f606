#include "process_owner.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>

namespace corio::detail {
namespace {

struct thread_stat {
  char state;
  std::uint64_t start_ticks;
};

// Parses /proc/<tid>/stat: "tid (comm) S ppid ... starttime(22) ...". The command name may
// hold spaces and parentheses, so fields are counted from the last ')'.
std::optional<thread_stat> read_thread_stat(const char* path, bool& missing) noexcept {
  missing = false;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    missing = errno == ENOENT || errno == ESRCH;
    return std::nullopt;
  }
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) {
    missing = n == 0 || errno == ESRCH;  // the task exited between open and read
    return std::nullopt;
  }
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return std::nullopt;
  p += 2;  // field 3, the state
  thread_stat st{.state = *p, .start_ticks = 0};
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return std::nullopt;
    ++p;
  }
  const char* end = buf + n;
  if (std::from_chars(p, end, st.start_ticks).ec != std::errc{}) return std::nullopt;
  return st;
}

std::uint64_t make_token(std::uint64_t tid, std::uint64_t start_ticks) noexcept {
  return ((start_ticks & 0x7fffffffu) << 32) | (tid & 0xffffffffu);
}

// The child of fork() runs on one new thread: its inherited cache names the parent thread.
[[maybe_unused]] const bool atfork_registered = [] {
  ::pthread_atfork(nullptr, nullptr, [] { cached_owner_token = 0; });
  return true;
}();

}  // namespace

std::uint64_t compute_owner_token() noexcept {
  const auto tid = static_cast<std::uint64_t>(::gettid());
  bool missing = false;
  const auto st = read_thread_stat("/proc/thread-self/stat", missing);
  cached_owner_token = make_token(tid, st ? st->start_ticks : 0);
  return cached_owner_token;
}

bool owner_alive(std::uint64_t token) noexcept {
  const auto tid = static_cast<pid_t>(token & 0xffffffffu);
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(tid));
  bool missing = false;
  const auto st = read_thread_stat(path, missing);
  if (st) {
    if (st->state == 'Z' || st->state == 'X' || st->state == 'x') return false;  // exited, not reaped
    return make_token(static_cast<std::uint64_t>(tid), st->start_ticks) == token;
  }
  if (missing) return false;
  // No readable /proc (not mounted, hidepid): existence only, no pid-reuse check.
  return !(::kill(tid, 0) == -1 && errno == ESRCH);
}

}  // namespace corio::detail
