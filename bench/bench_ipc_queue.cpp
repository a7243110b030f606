// corio::queue benchmark: 8-byte values (std::uint64_t) from one process to another.
//   BM_queue_8B — a fork()ed child puts 1, 2, 3, ... with blocking put; the benchmark thread
//                 gets them with blocking get and checks the sequence. Both sides pinned to
//                 different cores when two are allowed. items/s = values delivered.
// The child stops when the parent closes the queue (its put throws queue_closed).
// Compare with BM_zmq_* (bench_ipc_zmq.cpp) and bench/peers/python_mp.py.
#include <corio/ipc/queue.hpp>

#include "bench_ipc_support.hpp"

#include <benchmark/benchmark.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

constexpr std::uint64_t queue_batch = 1024;  // values per benchmark iteration

void BM_queue_8B(benchmark::State& state) {
  corio::queue<std::uint64_t> q(static_cast<std::size_t>(state.range(0)), {.max_message_bytes = 8});
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child < 0) {
    state.SkipWithError("fork failed");
    return;
  }
  if (child == 0) {
    corio_bench::pin_to_nth_cpu(1);
    try {
      for (std::uint64_t i = 1;; ++i) q.put(i);
    } catch (const corio::queue_closed&) {
    }
    ::_exit(0);
  }
  const corio_bench::cpu_pin pin(0);
  std::uint64_t expect = 1;
  bool in_order = true;
  for (auto _ : state) {
    for (std::uint64_t k = 0; k < queue_batch; ++k) in_order &= q.get() == expect++;
  }
  q.close();
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!in_order)
    state.SkipWithError("values arrived out of order");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * queue_batch));
}

}  // namespace

// Capacities: the default (1024), and 65536, about the buffering ZeroMQ gets in its peer
// (high-water marks of 100,000 messages): on a loaded machine the producer and consumer are
// often not running at the same time, and the buffer decides how much each time slice moves.
BENCHMARK(BM_queue_8B)->Arg(1024)->Arg(65536)->UseRealTime();
