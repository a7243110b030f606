#pragma once
// process: run a callable in a forked child (Python's multiprocessing.Process with the
// fork start method).
//
//     void run_proc(std::string name) { std::printf("Run child process %s (%d)...\n", name.c_str(), getpid()); }
//
//     corio::process p(run_proc, std::string("test"));
//     p.start();                 // fork: the child runs run_proc("test"), then _exit()s
//     p.join();                  // blocks until it ends and reaps it
//     int rc = *p.exitcode();    // 0
//
// The model
// - The constructor copies (or moves) the callable and its arguments into the object;
//   start() forks, and the child calls fn(args...) on its copy of them. Arguments are
//   passed as lvalues when fn accepts that (so `connection<T>&` parameters work), else as
//   rvalues (move-only by-value parameters). Right after the fork the parent destroys its
//   copy of fn and args (Python's start() does the same): a pipe end moved into a process
//   is then open only in that child, which is what end-of-stream detection needs.
// - The child: forgets the parent's thread-local corio loop and shard (it may build its
//   own corio::loop; it never touches the parent's io_uring, whose rings are MAP_SHARED
//   with the parent), sets PR_SET_PDEATHSIG (below), runs fn, flushes std::cout,
//   std::cerr, std::clog and every stdio stream, and leaves with _exit(): the parent's
//   static destructors and atexit handlers never run a second time. Exit status 0, or 1
//   after an exception escaped fn; it is then reported on stderr as one line
//       Process <pid>: <demangled exception type>: <what()>
//   ("Process <pid>: unknown exception" for a type not derived from std::exception).
//   fn calling std::exit() itself runs the parent's atexit handlers in the child: don't.
// - exitcode() follows Python: nullopt until reaped, the exit status, or -N when signal N
//   killed the child (-9 after kill(), -15 after terminate()).
// - Waiting: join() blocks in waitpid; join_for() polls a pidfd (pidfd_open, Linux 5.3+)
//   with a timeout, async_join() polls it through the awaiting loop's io_uring. Without
//   pidfd both fall back to waitpid(WNOHANG) with a growing sleep (1 ms up to 50 ms), as
//   runtime/subprocess does. async_join honours the ambient stop token and op_options-style
//   cancellation of the coroutine (operation_cancelled; the child keeps running); with a
//   deadline: with_timeout(p.async_join(), d) (timed_out; the child keeps running).
// - Dying with the parent (default): the child asks for process_options::
//   parent_death_signal (SIGKILL unless changed) when its parent dies
//   (prctl(PR_SET_PDEATHSIG)), then re-checks getppid() so a parent that died during the
//   fork is not missed (the signal is then raised at once). So a SIGKILLed or crashed
//   parent leaves no orphan behind. Linux sends the signal when the *thread* that called
//   start() exits, not only the process: a child started from a short-lived std::thread
//   dies with that thread. Start children from a thread that lives as long as they
//   should (corio::pool and corio::executor fork from such a thread of their own).
//   A daemon-like child that must outlive its parent opts out: parent_death_signal = 0.
//
// Fork safety (a child of a multi-threaded parent)
// - Only the thread that called start() exists in the child. glibc resets the malloc and
//   stdio locks across fork, so new/delete, printf and iostreams are safe. Any other lock
//   another thread held at the fork (a std::mutex, a corio thread_pool or runtime's
//   queues, a loop running on another thread) stays locked forever in the child: fn must
//   not touch objects other threads were using. Build fresh state (a new corio::loop,
//   new rings) in the child; never use the parent's loops, runtime, thread pools.
// - Starting from inside a running loop is fine: the child's fn runs on the forked copy
//   of the caller's stack, with no current loop; it may construct and run its own loop.
//
// Errors: start() twice, or join/join_for/async_join/terminate/kill before start(),
// throw std::logic_error. System failures throw std::system_error naming the call and
// the errno text ("fork: Resource temporarily unavailable", "waitpid 1234: No child
// processes" — the latter when SIGCHLD is set to SIG_IGN, which makes the kernel reap).
//
// Who may touch it: one thread at a time (the object is not synchronised). async_join
// keeps a pointer to the object: it must not be moved or destroyed while that runs.
// Destruction: a child that already exited is reaped (no zombie). One still running is
// neither killed nor waited for (Python leaves it running too): it is detached and
// reaped later, without blocking, by the next process start() or destruction in this
// program. To be sure it is gone, kill() then join() before the object dies.

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <concepts>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../coro/task.hpp"

namespace corio {

struct process_options {
  // PR_SET_PDEATHSIG in the child: the signal it gets when its parent (the thread that
  // called start()) dies. 0 = none: the child outlives its parent (a daemon-like child).
  int parent_death_signal = SIGKILL;
};

namespace detail {

// The callable and its arguments, type-erased; run() is called once, in the child.
struct process_body {
  virtual ~process_body() = default;
  virtual void run() = 0;
};

template <class F, class... Args>
struct process_body_of final : process_body {
  template <class G, class... As>
  explicit process_body_of(G&& g, As&&... as) : fn(std::forward<G>(g)), args(std::forward<As>(as)...) {}

  void run() override {
    if constexpr (std::is_invocable_v<F&, Args&...>)
      std::apply(fn, args);
    else
      std::apply(std::move(fn), std::move(args));
  }

  F fn;
  std::tuple<Args...> args;
};

}  // namespace detail

class process {
 public:
  template <class F, class... Args>
    requires(!std::same_as<std::decay_t<F>, process_options> && !std::same_as<std::decay_t<F>, process> &&
             (std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...> ||
              std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>))
  explicit process(F&& fn, Args&&... args) : process(process_options{}, std::forward<F>(fn), std::forward<Args>(args)...) {}

  template <class F, class... Args>
    requires(std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...> ||
             std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>)
  process(process_options opts, F&& fn, Args&&... args)
      : options_(opts),
        body_(std::make_unique<detail::process_body_of<std::decay_t<F>, std::decay_t<Args>...>>(
            std::forward<F>(fn), std::forward<Args>(args)...)) {}

  process(process&& o) noexcept;
  // Treats the old child of *this as the destructor does, then takes o's.
  process& operator=(process&& o) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  ~process();

  // Forks; the child runs fn and _exit()s (see above). Throws std::logic_error when
  // called twice, std::system_error when fork fails.
  void start();
  // Blocks until the child ends, and reaps it. Returns at once when already reaped.
  void join();
  // The same with a limit: false if the child still runs after `timeout`.
  bool join_for(std::chrono::milliseconds timeout);
  // Inside a corio loop: suspends until the child ends (pidfd polled by the ring), reaps.
  [[nodiscard]] task<void> async_join();

  void terminate();  // SIGTERM; nothing once reaped
  void kill();       // SIGKILL; nothing once reaped

  [[nodiscard]] std::optional<int> exitcode() const noexcept { return exitcode_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  // Started and not ended; reaps the child (non-blocking) when it has ended.
  [[nodiscard]] bool is_alive();
  // -1 before start, after reaping, or when the kernel lacks pidfd_open.
  [[nodiscard]] int pidfd() const noexcept { return pidfd_; }

 private:
  void require_started(const char* what) const;
  bool try_reap();  // waitpid(WNOHANG); true once reaped
  bool reap(int wait_flags);  // waitpid with these flags; true once reaped
  void signal(int sig, const char* what);
  void release() noexcept;  // the destructor's policy

  process_options options_;
  std::unique_ptr<detail::process_body> body_;
  pid_t pid_ = 0;
  int pidfd_ = -1;
  std::optional<int> exitcode_;
  bool started_ = false;
};

namespace testing {
// Makes later process::start() calls act as if pidfd_open were missing (the fallback).
void force_no_process_pidfd(bool on) noexcept;
}  // namespace testing

}  // namespace corio
