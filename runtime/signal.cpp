#include "signal.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <utility>

#include "errors.hpp"
#include "file_ops.hpp"

namespace corio {

signal_set::signal_set(std::initializer_list<int> signals) {
  if (signals.size() == 0) throw std::invalid_argument("corio::signal_set: no signals given");
  sigemptyset(&set_);
  for (int sig : signals) {
    if (sig == SIGKILL || sig == SIGSTOP)
      throw std::invalid_argument("corio::signal_set: signal " + std::to_string(sig) +
                                  " (SIGKILL/SIGSTOP) cannot be blocked or waited for");
    if (sig <= 0 || sigaddset(&set_, sig) != 0)
      throw std::invalid_argument("corio::signal_set: invalid signal number " + std::to_string(sig));
  }
  sigset_t before;
  if (const int e = ::pthread_sigmask(SIG_BLOCK, &set_, &before); e != 0)
    detail::throw_errno(e, "pthread_sigmask");
  sigemptyset(&added_);
  for (int sig : signals)
    if (sigismember(&before, sig) == 0) sigaddset(&added_, sig);
  // Non-blocking: wait() reads first and only then polls through the ring.
  fd_ = ::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd_ < 0) {
    const int e = errno;
    ::pthread_sigmask(SIG_UNBLOCK, &added_, nullptr);
    detail::throw_errno(e, "signalfd");
  }
}

signal_set::signal_set(signal_set&& o) noexcept
    : set_(o.set_), added_(o.added_), fd_(std::exchange(o.fd_, -1)) {
  sigemptyset(&o.added_);
}

signal_set::~signal_set() {
  if (fd_ >= 0) ::close(fd_);
  ::pthread_sigmask(SIG_UNBLOCK, &added_, nullptr);
}

task<int> signal_set::wait(op_options options) {
  for (;;) {
    // read(2) on this thread, not through the ring: a signalfd dequeues the signals of the
    // task that reads it, and an io_uring worker thread would see its own (none).
    signalfd_siginfo info{};
    const ssize_t n = ::read(fd_, &info, sizeof info);
    if (n == static_cast<ssize_t>(sizeof info)) co_return static_cast<int>(info.ssi_signo);
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      detail::throw_errno(errno, "read signalfd " + std::to_string(fd_));
    co_await corio::poll(fd_, POLLIN, options);
  }
}

namespace {
task<int> wait_owned(signal_set set, op_options options) { co_return co_await set.wait(options); }
}  // namespace

task<int> wait_for_signal(std::initializer_list<int> signals, op_options options) {
  return wait_owned(signal_set(signals), options);
}

}  // namespace corio
