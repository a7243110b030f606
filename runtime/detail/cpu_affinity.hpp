#pragma once
// CPU affinity for pinning loops to cores: corio::runtime pins its shard threads,
// corio::executor its worker processes (one thread each), both to the k-th allowed CPU.

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <thread>
#include <vector>

namespace corio::detail {

// The CPUs this process may run on, in order; empty when the mask cannot be read.
inline std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

// How many CPUs this process may run on (its affinity mask); hardware_concurrency() when
// the mask cannot be read; at least 1. A runtime's default shard count.
inline unsigned usable_cpu_count() {
  const auto n = static_cast<unsigned>(allowed_cpus().size());
  return n != 0 ? n : std::max(1u, std::thread::hardware_concurrency());
}

// Restricts the calling thread to `cpu`; false when the kernel refused (the caller decides
// whether that matters).
inline bool pin_this_thread(int cpu) noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

}  // namespace corio::detail
