#include "process.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include "../runtime/errors.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/process_ops.hpp"
#include "../runtime/runtime.hpp"
#include "detail/demangle.hpp"

namespace corio {
namespace {

using namespace std::chrono_literals;

std::atomic<bool> no_pidfd{false};

std::string describe(const char* what, pid_t pid) { return std::string(what) + " " + std::to_string(pid); }

// Children whose process object died while they still ran. Each is reaped without
// blocking by later start() calls and destructors, so a program that drops many running
// children does not pile up zombies. The mutex is rebuilt in a forked child (another
// thread may have held it at the fork); the child has no use for the list.
struct detached_children {
  std::mutex mutex;
  std::vector<pid_t> pids;

  void add(pid_t pid) {
    std::lock_guard lock(mutex);
    pids.push_back(pid);
  }
  void reap_exited() noexcept {
    std::lock_guard lock(mutex);
    std::erase_if(pids, [](pid_t pid) {
      int status = 0;
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      return r == pid || (r < 0 && errno == ECHILD);
    });
  }
};
detached_children& detached() {
  static auto* d = new detached_children;  // never destroyed: usable from static destructors
  return *d;
}

void print_escaped_exception() noexcept {
  const int pid = static_cast<int>(::getpid());
  try {
    throw;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "Process %d: %s: %s\n", pid, detail::demangled_name(typeid(e).name()).c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "Process %d: unknown exception\n", pid);
  }
}

void flush_all() noexcept {
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
  } catch (...) {
  }
  std::fflush(nullptr);
}

[[noreturn]] void run_child(detail::process_body& body, const process_options& options, pid_t parent) noexcept {
  detail::forget_loop_after_fork();
  detail::current_shard = {};
  // A parent that blocks signals for a signalfd (runtime/signal.hpp) must not pass that on:
  // terminate() would never reach the child. Handlers are inherited, as fork does.
  sigset_t none;
  sigemptyset(&none);
  ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
  new (&detached()) detached_children;  // see detached_children; the old one is leaked
  if (options.parent_death_signal != 0) {
    if (::prctl(PR_SET_PDEATHSIG, options.parent_death_signal) != 0) {
      std::fprintf(stderr, "Process %d: prctl(PR_SET_PDEATHSIG): %s\n", static_cast<int>(::getpid()),
                   std::strerror(errno));
      flush_all();
      ::_exit(1);
    }
    // The parent may have died between fork and prctl: then nobody will send the signal.
    if (::getppid() != parent) ::raise(options.parent_death_signal);
  }
  int code = 0;
  try {
    body.run();
  } catch (...) {
    print_escaped_exception();
    code = 1;
  }
  flush_all();
  ::_exit(code);
}

}  // namespace

namespace testing {
void force_no_process_pidfd(bool on) noexcept { no_pidfd.store(on, std::memory_order_relaxed); }
}  // namespace testing

process::process(process&& o) noexcept
    : options_(o.options_),
      body_(std::move(o.body_)),
      pid_(std::exchange(o.pid_, 0)),
      pidfd_(std::exchange(o.pidfd_, -1)),
      exitcode_(std::exchange(o.exitcode_, std::nullopt)),
      started_(std::exchange(o.started_, false)) {}

process& process::operator=(process&& o) noexcept {
  if (this != &o) {
    release();
    options_ = o.options_;
    body_ = std::move(o.body_);
    pid_ = std::exchange(o.pid_, 0);
    pidfd_ = std::exchange(o.pidfd_, -1);
    exitcode_ = std::exchange(o.exitcode_, std::nullopt);
    started_ = std::exchange(o.started_, false);
  }
  return *this;
}

process::~process() { release(); }

void process::release() noexcept {
  if (started_ && !exitcode_) {
    bool reaped = false;
    try {
      reaped = try_reap();
    } catch (...) {
      reaped = true;  // ECHILD: nothing left to reap
    }
    if (!reaped) {
      try {
        detached().add(pid_);
      } catch (...) {
        // Out of memory: the child stays a zombie once it exits; nothing else is safe here.
      }
    }
  }
  if (pidfd_ >= 0) ::close(std::exchange(pidfd_, -1));
  if (started_) detached().reap_exited();
  started_ = false;
}

void process::start() {
  if (started_) throw std::logic_error("corio::process::start: this process was already started");
  if (!body_) throw std::logic_error("corio::process::start: this process object was moved from");
  detached().reap_exited();
  // stdio buffers are copied into the child: flush them so output written before start()
  // is not printed twice (once by each process).
  flush_all();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) detail::throw_errno(errno, "fork");
  if (pid == 0) run_child(*body_, options_, parent);
  started_ = true;
  pid_ = pid;
  pidfd_ = detail::open_pidfd(pid, no_pidfd.load(std::memory_order_relaxed));  // safe: the pid cannot be reused before we reap it
  body_.reset();  // the parent's copies of fn and args (pipe ends!) close now
}

void process::require_started(const char* what) const {
  if (!started_) throw std::logic_error(std::string("corio::process::") + what + ": the process was not started");
}

bool process::reap(int wait_flags) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, wait_flags);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;  // WNOHANG: still running
  if (r < 0) detail::throw_errno(errno, describe("waitpid", pid_));
  exitcode_ = detail::decode_wait_status(status);
  if (pidfd_ >= 0) ::close(std::exchange(pidfd_, -1));
  return true;
}

bool process::try_reap() { return exitcode_ || reap(WNOHANG); }

void process::join() {
  require_started("join");
  if (!exitcode_) reap(0);
}

bool process::join_for(std::chrono::milliseconds timeout) {
  require_started("join_for");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  detail::exit_wait waits;
  for (;;) {
    if (try_reap()) return true;
    const std::chrono::nanoseconds left = deadline - std::chrono::steady_clock::now();
    if (left <= 0ns) return false;
    waits.block(pidfd_, pid_, left);
  }
}

task<void> process::async_join() {
  require_started("async_join");
  detail::exit_wait waits;
  while (!try_reap()) co_await waits.next(pidfd_);
}

void process::signal(int sig, const char* what) {
  require_started(what);
  if (exitcode_) return;
  const long r = detail::signal_child(pid_, pidfd_, sig);
  if (r < 0 && errno != ESRCH) detail::throw_errno(errno, describe(what, pid_));
}

void process::terminate() { signal(SIGTERM, "terminate"); }
void process::kill() { signal(SIGKILL, "kill"); }

bool process::is_alive() {
  if (!started_) return false;
  return !try_reap();
}

}  // namespace corio
