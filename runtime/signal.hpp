#pragma once
// Signals as awaitable events, read from a signalfd through the ring (graceful shutdown).
//
//     corio::signal_set stop_signals{SIGINT, SIGTERM};   // in main(), before any thread
//     ...
//     int sig = co_await stop_signals.wait();           // SIGINT or SIGTERM
//
//     int sig = co_await corio::wait_for_signal({SIGINT, SIGTERM});  // one-shot form
//
// The model: a signalfd only sees signals that are blocked, and a blocked signal stays
// pending until someone reads it. A signal_set blocks its signals in the calling thread
// (pthread_sigmask) and opens a CLOEXEC signalfd for them; wait() reads one from it.
// - The mask is per thread and inherited by threads created later. A process-directed
//   signal (kill(1), Ctrl-C) goes to any thread that does not block it, and its default
//   action ends the process. So create the signal_set in main() before starting other
//   threads (thread pools, other loops): they inherit the mask and the signal waits in
//   the signalfd. A thread-directed signal (raise() or pthread_kill on the loop's thread)
//   is also seen, because wait() reads the signalfd on the loop's thread.
// - Children started by corio::subprocess get an empty mask, not this one.
// - Destruction (on the creating thread) closes the signalfd and unblocks the signals this
//   set blocked (those already blocked before stay blocked). A signal still pending then
//   is delivered with its usual disposition.
// - wait_for_signal() builds a signal_set when called (not when awaited), waits for one
//   signal, and destroys the set. Signals that arrive between two calls get their default
//   action: keep a signal_set alive for repeated waits.
// - wait() is an ordinary ring operation: it honours the ambient stop token (or
//   op_options::token) with operation_cancelled and a deadline with timed_out.
//
// Who may touch it: the thread that created it (the mask is that thread's), through the
// loop running on that thread.

#include <signal.h>

#include <initializer_list>

#include "../coro/task.hpp"
#include "detail/uring_awaiter.hpp"

namespace corio {

class signal_set {
 public:
  // Throws std::invalid_argument for an empty list, an invalid number, or SIGKILL/SIGSTOP
  // (which can be neither blocked nor read); std::system_error if signalfd fails.
  explicit signal_set(std::initializer_list<int> signals);
  signal_set(signal_set&& o) noexcept;
  signal_set& operator=(signal_set&&) = delete;
  signal_set(const signal_set&) = delete;
  signal_set& operator=(const signal_set&) = delete;
  ~signal_set();

  // The next signal of the set that arrived (or is already pending): its number.
  [[nodiscard]] task<int> wait(op_options options = {});

  bool contains(int sig) const noexcept { return sigismember(&set_, sig) == 1; }
  int fd() const noexcept { return fd_; }

 private:
  sigset_t set_{};
  sigset_t added_{};  // the signals this object blocked; unblocked on destruction
  int fd_ = -1;
};

// One-shot: blocks `signals` now, waits for one of them, restores the mask.
[[nodiscard]] task<int> wait_for_signal(std::initializer_list<int> signals, op_options options = {});

}  // namespace corio
