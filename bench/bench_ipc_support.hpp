// CPU pinning for the ipc benchmarks (bench_ipc.cpp, bench_ipc_queue.cpp): the producer and
// the consumer sit on different cores, the cross-core case the ipc targets are about (two
// sides time-slicing one core measure something else).
#pragma once

#include <corio/runtime/detail/cpu_affinity.hpp>

#include <pthread.h>
#include <sched.h>

#include <cstddef>

namespace corio_bench {

// Pins the calling thread to the n-th CPU it may run on. No-op with a single allowed CPU.
// (In a fork()ed child, its only thread: the whole process.)
inline void pin_to_nth_cpu(int n) {
  const auto cpus = corio::detail::allowed_cpus();
  const auto k = static_cast<std::size_t>(n);
  if (cpus.size() >= 2 && k < cpus.size()) (void)corio::detail::pin_this_thread(cpus[k]);
}

// Pins the calling thread to the n-th CPU it may run on for a scope, and gives it back its
// old mask after: the benchmark thread goes on to run the next benchmarks, which must not
// inherit the pin.
class cpu_pin {
 public:
  explicit cpu_pin(int n) : saved_ok_(::sched_getaffinity(0, sizeof saved_, &saved_) == 0) {
    pin_to_nth_cpu(n);
  }
  ~cpu_pin() {
    if (saved_ok_)
      ::pthread_setaffinity_np(::pthread_self(), sizeof saved_, &saved_);
  }
  cpu_pin(const cpu_pin&) = delete;
  cpu_pin& operator=(const cpu_pin&) = delete;

 private:
  cpu_set_t saved_;
  bool saved_ok_;
};

}  // namespace corio_bench
