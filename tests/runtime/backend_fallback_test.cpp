// The automatic fallback: in a process whose seccomp filter refuses io_uring_setup with
// EPERM (as Docker's default profile does), a default loop chooses the epoll backend and
// real work runs on it: a TCP echo round trip, a timer, a subprocess wait, a cross-thread
// post, a multishot accept. Each case runs in a forked child (the filter cannot be taken
// back) that reports failures on stderr and in its exit status; the parent gives it a
// deadline, so a hang fails in seconds.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/subprocess.hpp>
#include <corio/runtime/timer.hpp>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <system_error>
#include <thread>

#include "../ipc/ipc_test_support.hpp"

using namespace std::chrono_literals;
using corio::task;

namespace {

#if defined(__x86_64__)
constexpr std::uint32_t this_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t this_arch = AUDIT_ARCH_AARCH64;
#else
#error "backend_fallback_test: add this architecture's AUDIT_ARCH_ value"
#endif

// Installs a filter that answers io_uring_setup with EPERM and allows everything else.
bool refuse_io_uring_setup() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, this_arch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

// Runs `body` in a child behind the filter; returns its failures ("" when it passed).
// `body` returns a description of what went wrong, or "".
std::string in_filtered_child(const std::function<std::string()>& body) {
  corio_test::raw_pipe out;
  const pid_t pid = corio_test::fork_child([&] {
    std::string failure;
    try {
      if (!refuse_io_uring_setup())
        failure = "installing the seccomp filter failed: " + std::string(std::strerror(errno));
      else if (::syscall(__NR_io_uring_setup, 2, nullptr) != -1 || errno != EPERM)
        failure = "the filter does not refuse io_uring_setup with EPERM";
      else
        failure = body();
    } catch (const std::exception& e) {
      failure = std::string("exception: ") + e.what();
    }
    [[maybe_unused]] const ssize_t n = ::write(out.write_end(), failure.data(), failure.size());
    return failure.empty() ? 0 : 1;
  });
  out.close_write();
  // A deadline of its own: a hang fails here in seconds, not at meson's timeout.
  const int status = corio_test::reap_or_kill_within(pid, 60s, "the filtered child");
  const std::string failure = out.read_all();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return failure.empty() ? "the child ended with status " + std::to_string(status) : failure;
  return failure;
}

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

}  // namespace

TEST_CASE("io_uring refused by seccomp: a default loop chooses epoll and runs a TCP echo, a timer, a subprocess and a post") {
  const std::string failure = in_filtered_child([]() -> std::string {
    corio::loop lp;
    if (lp.backend() != corio::backend_kind::epoll)
      return "the loop chose " + std::string(corio::to_string(lp.backend()));
    return lp.run([]() -> task<std::string> {
      // TCP echo round trip, the accept multishot.
      auto listener = corio::tcp_listener::bind(corio::address::parse("127.0.0.1:0"));
      auto echo = [&]() -> task<void> {
        auto incoming = listener.incoming();
        corio::tcp_stream s = co_await incoming.next();
        std::string buf(16, '\0');
        const std::size_t n = co_await s.read_some(std::as_writable_bytes(std::span(buf)));
        co_await s.write_all(bytes(std::string_view(buf).substr(0, n)));
      };
      corio::task_group g;
      g.spawn(echo());
      corio::tcp_stream c = co_await corio::tcp_stream::connect(listener.local_address());
      co_await c.write_all(bytes("ping"));
      std::string got(16, '\0');
      const std::size_t n = co_await c.read_some(std::as_writable_bytes(std::span(got)));
      co_await g.wait();
      if (got.substr(0, n) != "ping") co_return "echo returned \"" + got.substr(0, n) + "\"";

      // A timer.
      const auto start = std::chrono::steady_clock::now();
      co_await corio::sleep_for(20ms);
      if (std::chrono::steady_clock::now() - start < 20ms) co_return "sleep_for(20ms) ended early";

      // A subprocess and its exit status (pidfd readiness, or the waitpid timer).
      std::vector<std::string> exit3{"sh", "-c", "exit 3"};
      if (const int rc = co_await corio::subprocess::call(exit3); rc != 3)
        co_return "subprocess exit status " + std::to_string(rc);

      // A post from another thread wakes the sleeping loop.
      corio::loop& self = corio::loop::this_loop();
      std::stop_source stop;
      const std::stop_token token = stop.get_token();
      std::thread t([&] {
        std::this_thread::sleep_for(5ms);
        self.post([&] { stop.request_stop(); });
      });
      bool woken = false;
      try {
        co_await corio::sleep_for(20s, {.token = &token, .deadline = {}});
      } catch (const corio::operation_cancelled&) {
        woken = true;
      }
      t.join();
      if (!woken) co_return "the post did not wake the loop";
      co_return std::string();
    }());
  });
  CHECK_MESSAGE(failure.empty(), failure);
}

TEST_CASE("io_uring refused by seccomp: a loop that asks for io_uring throws, naming the cause and the epoll way out") {
  const std::string failure = in_filtered_child([]() -> std::string {
    try {
      corio::loop lp({.backend = corio::backend_kind::io_uring});
      return "no exception";
    } catch (const std::system_error& e) {
      if (e.code().value() != EPERM) return "errno " + std::to_string(e.code().value());
      const std::string what = e.what();
      if (what.find("seccomp") == std::string::npos || what.find("CORIO_BACKEND") == std::string::npos)
        return "message does not name the cause and the fix: " + what;
    }
    return "";
  });
  CHECK_MESSAGE(failure.empty(), failure);
}
