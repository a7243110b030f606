#include "prefork.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <stop_token>
#include <vector>

#include "../coro/task_group.hpp"
#include "../runtime/errors.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/signal.hpp"
#include "../runtime/timer.hpp"
#include "process.hpp"

namespace corio {
namespace {

constexpr std::chrono::milliseconds resend_interval{100};

sigset_t stop_signals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

// Why workers do not simply share the parent's listening socket: with io_uring, the
// accepts of several processes waiting on one socket are not served in turn (measured:
// one worker received every connection while the others never woke). So worker 0 keeps
// the parent's socket (connections already in its backlog are served) and every other
// worker replaces its inherited copy, at the same descriptor number the server holds,
// with its own SO_REUSEPORT listener on the same address; the kernel then spreads new
// connections across the workers' sockets. The parent drops its reference after the
// forks, so the sockets belong to the workers alone (and close with them).

// The descriptor of srv's bound listener; std::logic_error once srv has been served.
int find_listener(const server& srv) {
  const int fd = srv.listener_fd();
  if (fd < 0)
    throw std::logic_error("corio::serve_in_processes: the server on " + srv.local_address().to_string() +
                           " was already served (serve a server that was never served)");
  return fd;
}

// In worker k > 0: a listener of its own in place of the inherited one at `fd`, with the
// same address, blocking mode, IPV6_V6ONLY and backlog. Throws std::system_error (the
// worker then exits 1 and the parent stops everything).
void replace_listener(int fd, const address& at) {
  const std::string where = at.to_string();
  const int own = ::socket(at.domain(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (own < 0) detail::throw_errno(errno, "socket for listen on " + where);
  try {
    const int one = 1;
    detail::check_errno(::setsockopt(own, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one),
                        "setsockopt SO_REUSEADDR " + where);
    detail::check_errno(::setsockopt(own, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one),
                        "setsockopt SO_REUSEPORT " + where);
    if (at.domain() == AF_INET6) {
      int v6only = 0;
      socklen_t len = sizeof v6only;
      detail::check_errno(::getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len), "getsockopt IPV6_V6ONLY " + where);
      detail::check_errno(::setsockopt(own, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only),
                          "setsockopt IPV6_V6ONLY " + where);
    }
    const int flags = detail::check_errno(::fcntl(fd, F_GETFL), "fcntl F_GETFL " + where);
    if ((flags & O_NONBLOCK) != 0) detail::check_errno(::fcntl(own, F_SETFL, O_NONBLOCK), "fcntl F_SETFL " + where);
    // For a listening socket, tcpi_sacked is its backlog limit (sk_max_ack_backlog).
    tcp_info info{};
    socklen_t len = sizeof info;
    const int backlog = ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 && info.tcpi_sacked > 0
                            ? static_cast<int>(info.tcpi_sacked)
                            : SOMAXCONN;
    detail::check_errno(::bind(own, at.data(), at.size()), "bind " + where);
    detail::check_errno(::listen(own, backlog), "listen " + where);
    detail::check_errno(::dup3(own, fd, O_CLOEXEC), "dup3 listener " + where);
  } catch (...) {
    ::close(own);
    throw;
  }
  ::close(own);
}

// In the parent after the forks: `fd` stays open (srv's listener closes it later) but no
// longer refers to the listening socket.
void drop_listener(int fd) noexcept {
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0) return;  // keep the socket: connections then also queue in the parent's copy
  ::dup3(null, fd, O_CLOEXEC);
  ::close(null);
}

// Ends the workers still running and reaps them all, blocking. Used when the parent
// cannot supervise (a later fork or the loop failed): SIGTERM still drains gracefully,
// resent as supervise() does for workers that were still starting.
void stop_and_join(std::vector<process>& workers) noexcept {
  for (;;) {
    bool any = false;
    for (process& w : workers) {
      if (w.pid() == 0 || w.exitcode()) continue;  // never started, or reaped
      try {
        w.terminate();
        any = true;
      } catch (...) {
      }
    }
    if (!any) return;
    for (process& w : workers) {
      if (w.pid() == 0 || w.exitcode()) continue;
      try {
        (void)w.join_for(resend_interval);
      } catch (...) {
        return;  // waitpid failed (SIGCHLD ignored): nothing more to wait for
      }
    }
  }
}

// The parent's side: wait for a stop signal or a worker's end, then stop every worker
// and wait for them all.
task<int> supervise(signal_set& signals, std::vector<process>& workers) {
  std::stop_source worker_ended;
  std::stop_source all_ended;
  std::size_t running = workers.size();
  task_group joins;
  for (process& w : workers) {
    joins.spawn([&w, &worker_ended, &all_ended, &running]() -> task<void> {
      struct on_exit {  // also when async_join throws: never leave the parent waiting
        std::stop_source& one;
        std::stop_source& all;
        std::size_t& left;
        ~on_exit() {
          one.request_stop();
          if (--left == 0) all.request_stop();
        }
      } guard{worker_ended, all_ended, running};
      co_await w.async_join();
    });
  }

  int result = -1;
  const std::stop_token ended = worker_ended.get_token();
  try {
    result = co_await signals.wait({.token = &ended, .deadline = std::nullopt});
  } catch (const operation_cancelled&) {
    // A worker ended first. A process-group signal may have ended it and be pending here
    // too: then it is a stop, not a failure.
    const sigset_t set = stop_signals();
    const timespec now{};
    if (const int sig = ::sigtimedwait(&set, nullptr, &now); sig > 0) result = sig;
  }

  // SIGTERM to every worker still running, again every resend_interval: a worker still
  // starting (between process::start clearing its mask and re-blocking) ignores it (see
  // serve_in_processes), the next one finds it blocked and queued for srv.run(). A
  // draining worker just leaves the extra ones pending. terminate() is a no-op for a
  // reaped worker; an exited, unreaped one ignores the signal.
  const std::stop_token all = all_ended.get_token();
  for (;;) {
    for (process& w : workers)
      if (!w.exitcode()) w.terminate();
    try {
      co_await sleep_for(resend_interval, {.token = &all, .deadline = std::nullopt});
    } catch (const operation_cancelled&) {
      break;
    }
  }
  co_await joins.wait();
  co_return result;
}

}  // namespace

int serve_in_processes(server& srv, unsigned processes, runtime_options per_process) {
  if (processes == 0) throw std::invalid_argument("corio::serve_in_processes: processes must be > 0");

  // Blocked from here on in this thread, so no SIGINT/SIGTERM is lost (or kills us)
  // while the workers start; unblocked again when `signals` is destroyed.
  signal_set signals{SIGINT, SIGTERM};
  const int listener = find_listener(srv);

  // A worker's mask is empty from process::start until it re-blocks SIGINT/SIGTERM. The
  // caller's handlers (inherited through fork) must not run there: while forking, both
  // signals are ignored (this thread blocks them, so for it they still queue: the kernel
  // never discards a blocked signal); a worker restores the handlers once it has blocked
  // them again. A SIGTERM hitting a worker in that window is lost, so supervise() resends.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  struct sigaction old_int {}, old_term {};
  detail::check_errno(::sigaction(SIGINT, &ignore, &old_int), "sigaction SIGINT");
  detail::check_errno(::sigaction(SIGTERM, &ignore, &old_term), "sigaction SIGTERM");
  auto restore = [&]() noexcept {
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
  };

  std::vector<process> workers;
  workers.reserve(processes);
  try {
    for (unsigned i = 0; i < processes; ++i) {
      workers.emplace_back(process_options{.parent_death_signal = SIGKILL},
                           [&srv, per_process, listener, i, old_int, old_term] {
                             // First thing: process::start cleared the mask.
                             const sigset_t set = stop_signals();
                             ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
                             ::sigaction(SIGINT, &old_int, nullptr);
                             ::sigaction(SIGTERM, &old_term, nullptr);
                             if (i > 0) replace_listener(listener, srv.local_address());
                             (void)srv.run(per_process);
                           });
      workers.back().start();
    }
  } catch (...) {
    restore();
    stop_and_join(workers);  // skips the one whose start() failed (pid 0)
    throw;
  }
  restore();
  drop_listener(listener);

  try {
    loop lp;
    return lp.run(supervise(signals, workers));
  } catch (...) {
    stop_and_join(workers);
    throw;
  }
}

}  // namespace corio
