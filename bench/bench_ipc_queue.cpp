// corio::queue benchmarks: values from one process to another.
//   BM_queue_8B  — 8-byte values (std::uint64_t): a fork()ed child puts 1, 2, 3, ... with
//                  blocking put; the benchmark thread gets them with blocking get and
//                  checks the sequence. items/s = values delivered.
//   BM_queue_1MB — 1 MiB std::string values at the default options (so through the value
//                  arena, ipc/detail/value_arena.hpp): the child stamps a sequence number
//                  into the first 8 bytes of each and puts it; the benchmark thread gets
//                  and checks the number and the size. items/s and bytes/s.
// Both sides pinned to different cores when two are allowed. The child stops when the
// parent closes the queue (its put throws queue_closed).
// Compare with BM_zmq_* (bench_ipc_zmq.cpp) and bench/peers/python_mp.py
// (python_mp_queue, python_mp_queue_1MB).
#include <corio/ipc/queue.hpp>

#include "bench_ipc_support.hpp"

#include <benchmark/benchmark.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr std::uint64_t queue_batch = 1024;  // values per benchmark iteration

// Forks the producer: a child pinned to the second CPU that puts value_of(1),
// value_of(2), ... until the parent closes the queue. -1 (the benchmark skipped) when
// fork fails.
template <class T, class ValueOf>
pid_t fork_producer(benchmark::State& state, corio::queue<T>& q, ValueOf value_of) {
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child < 0)
    state.SkipWithError("fork failed");
  if (child != 0)
    return child;
  corio_bench::pin_to_nth_cpu(1);
  try {
    for (std::uint64_t i = 1;; ++i) q.put(value_of(i));
  } catch (const corio::queue_closed&) {
  }
  ::_exit(0);
}

// Stops the producer (its put throws queue_closed) and reaps it.
template <class T>
void stop_producer(corio::queue<T>& q, pid_t child) {
  q.close();
  int status = 0;
  ::waitpid(child, &status, 0);
}

void BM_queue_8B(benchmark::State& state) {
  corio::queue<std::uint64_t> q(static_cast<std::size_t>(state.range(0)), {.slot_bytes = 8});
  const pid_t child = fork_producer(state, q, [](std::uint64_t i) { return i; });
  if (child < 0)
    return;
  const corio_bench::cpu_pin pin(0);
  std::uint64_t expect = 1;
  bool in_order = true;
  for (auto _ : state) {
    for (std::uint64_t k = 0; k < queue_batch; ++k) in_order &= q.get() == expect++;
  }
  stop_producer(q, child);
  if (!in_order)
    state.SkipWithError("values arrived out of order");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * queue_batch));
}

constexpr std::size_t value_1mb = std::size_t{1} << 20;
constexpr std::uint64_t queue_1mb_batch = 16;  // values per benchmark iteration

void BM_queue_1MB(benchmark::State& state) {
  corio::queue<std::string> q(static_cast<std::size_t>(state.range(0)));
  std::string v(value_1mb, 'x');  // the child's copy: stamped with each sequence number
  const pid_t child = fork_producer(state, q, [&](std::uint64_t i) -> const std::string& {
    std::memcpy(v.data(), &i, sizeof i);
    return v;
  });
  if (child < 0)
    return;
  const corio_bench::cpu_pin pin(0);
  std::uint64_t expect = 1;
  bool intact = true;
  for (auto _ : state) {
    for (std::uint64_t k = 0; k < queue_1mb_batch; ++k) {
      const std::string got = q.get();
      std::uint64_t seq = 0;
      std::memcpy(&seq, got.data(), sizeof seq);
      intact &= got.size() == value_1mb && seq == expect++;
    }
  }
  stop_producer(q, child);
  if (!intact)
    state.SkipWithError("values arrived out of order or resized");
  const auto items = static_cast<std::int64_t>(state.iterations() * queue_1mb_batch);
  state.SetItemsProcessed(items);
  state.SetBytesProcessed(items * static_cast<std::int64_t>(value_1mb));
}

}  // namespace

// Capacities: the default (1024), and 65536, about the buffering ZeroMQ gets in its peer
// (high-water marks of 100,000 messages): on a loaded machine the producer and consumer are
// often not running at the same time, and the buffer decides how much each time slice moves.
BENCHMARK(BM_queue_8B)->Arg(1024)->Arg(65536)->UseRealTime();
// Capacity 16: up to 16 MiB in flight in the arena (the default 1024 would let the
// producer run a GiB ahead).
BENCHMARK(BM_queue_1MB)->Arg(16)->UseRealTime();
