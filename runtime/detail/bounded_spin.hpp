#pragma once
// spin_until(ready, budget): poll `ready` for a bounded time before the caller sleeps.
//
// Why: a futex sleep and wake-up cost a few microseconds each (more in a VM, where
// waking an idle vCPU is an IPI to the host), so a round trip between two threads that
// both sleep costs ~10 us even when the work takes nanoseconds. Polling for a few tens
// of microseconds first catches the common case (the other side answers soon) without
// the sleep and the wake-up (the yields below are system calls too, but cheap ones that
// need no other CPU).
//
// Policy (why these numbers): the budget bounds the CPU burnt per wait that ends in a
// sleep anyway; the caller picks it (a few tens of microseconds, comparable to one
// sleep-and-wake, so a spin that fails at most doubles the cost of that wait). Each poll
// is a PAUSE (cpu_relax); every 32nd poll yields the core instead, because the threads
// that spin usually outnumber the cores (2 on the reference machine) and the thread the
// spinner waits for may be the one waiting for that core. The clock is read every 32
// polls only, and first at the 32nd.
//
// `ready` is called from the spinning thread only; it must be cheap (an atomic load) and
// carry its own memory ordering (acquire where the caller reads what the other side
// published).

#include <chrono>
#include <thread>

#include "cpu_relax.hpp"

namespace corio::detail {

// One poll's wait in a spin: a pause, except every 32nd poll (i counts from 0), which
// yields the core. Also the step of the ipc pool's spins (ipc/detail/pool_core.hpp), whose
// parent, collector and workers likewise outnumber the cores.
inline void spin_pause(unsigned i) noexcept {
  if (i % 32 == 31)
    std::this_thread::yield();
  else
    cpu_relax();
}

// True as soon as ready() is; false when the budget passed without it.
template <class Ready>
[[nodiscard]] bool spin_until(Ready&& ready, std::chrono::nanoseconds budget) {
  using clock = std::chrono::steady_clock;
  // The budget starts at the first clock read (poll 31), not at the call: a wait that
  // ends within 31 polls, the common case of a short hand-off, reads no clock at all
  // (clock_gettime was 5% of a thread pool batch's submitter). The budget so grows by 31
  // pauses, about a microsecond.
  clock::time_point end{};
  for (unsigned i = 0;; ++i) {
    if (ready()) return true;
    if (i % 32 == 31) {  // only before a yield
      const clock::time_point now = clock::now();
      if (i == 31)
        end = now + budget;
      else if (now >= end)
        return false;
    }
    spin_pause(i);
  }
}

}  // namespace corio::detail
