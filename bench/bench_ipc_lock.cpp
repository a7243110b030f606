// corio::process_mutex benchmark: lock + unlock pairs, the work of Python's
// multiprocessing.Lock acquire() + release() (peer: bench/peers/python_mp_lock.py).
//   BM_process_lock_uncontended — one thread locks and unlocks a lock nobody else touches.
//                                 items/s = pairs.
//   BM_process_lock_cas_floor   — the hardware floor of the uncontended row: the same two
//                                 CAS instructions on one word (take, release), nothing
//                                 else. items/s = pairs. No correct lock shared by
//                                 processes does less (the unlock must learn atomically
//                                 whether someone sleeps), so the uncontended ratio to
//                                 Python can at most reach the floor's.
//   BM_process_lock_contended   — a fork()ed child and the benchmark thread, pinned to
//                                 different cores when two are allowed, each lock, bump a
//                                 shared counter, and unlock, for the same run. items/s =
//                                 pairs of both processes together per second of the run;
//                                 the counter is checked (a lost update fails the run).
#include <corio/ipc/process_mutex.hpp>
#include <corio/ipc/shm_region.hpp>

#include "bench_ipc_support.hpp"

#include <benchmark/benchmark.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <new>

namespace {

constexpr std::uint64_t lock_batch = 256;  // pairs per benchmark iteration

void BM_process_lock_uncontended(benchmark::State& state) {
  corio::process_mutex m;
  for (auto _ : state) {
    for (std::uint64_t k = 0; k < lock_batch; ++k) {
      benchmark::DoNotOptimize(m.lock());
      m.unlock();
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * lock_batch));
}

void BM_process_lock_cas_floor(benchmark::State& state) {
  alignas(64) std::uint64_t word = 0;
  std::atomic_ref<std::uint64_t> w(word);
  constexpr std::uint64_t token = 1234;
  for (auto _ : state) {
    for (std::uint64_t k = 0; k < lock_batch; ++k) {
      std::uint64_t expected = 0;
      benchmark::DoNotOptimize(w.compare_exchange_strong(expected, token, std::memory_order_acquire));
      expected = token;
      benchmark::DoNotOptimize(w.compare_exchange_strong(expected, 0, std::memory_order_release));
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * lock_batch));
}

// What the two processes share: the lock, the counter it guards, the child's pair count and
// the stop flag (each on its own line).
struct contended_block {
  corio::process_mutex_state lock;
  alignas(64) std::uint64_t counter;
  alignas(64) std::uint64_t child_pairs;
  alignas(64) std::uint64_t stop;
  alignas(64) std::uint64_t child_ready;
};

std::uint64_t load(const std::uint64_t& v) {
  return std::atomic_ref(const_cast<std::uint64_t&>(v)).load(std::memory_order_acquire);
}
void store(std::uint64_t& v, std::uint64_t x) { std::atomic_ref(v).store(x, std::memory_order_release); }

void BM_process_lock_contended(benchmark::State& state) {
  auto region = corio::shm_region::create(sizeof(contended_block), "bench_process_lock");
  auto* b = new (region.data()) contended_block{};
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child < 0) {
    state.SkipWithError("fork failed");
    return;
  }
  if (child == 0) {
    corio_bench::pin_to_nth_cpu(1);
    corio::process_mutex m(b->lock);
    store(b->child_ready, 1);
    std::uint64_t pairs = 0;
    while (load(b->stop) == 0) {
      (void)m.lock();
      b->counter = b->counter + 1;
      m.unlock();
      ++pairs;
    }
    store(b->child_pairs, pairs);
    ::_exit(0);
  }
  const corio_bench::cpu_pin pin(0);
  while (load(b->child_ready) == 0) {
  }
  corio::process_mutex m(b->lock);
  std::uint64_t pairs = 0;
  for (auto _ : state) {
    for (std::uint64_t k = 0; k < lock_batch; ++k) {
      (void)m.lock();
      b->counter = b->counter + 1;
      m.unlock();
    }
    pairs += lock_batch;
  }
  store(b->stop, 1);
  int status = 0;
  ::waitpid(child, &status, 0);
  const std::uint64_t child_pairs = load(b->child_pairs);
  if (!WIFEXITED(status) || b->counter != pairs + child_pairs) state.SkipWithError("lost update under the lock");
  // Both processes' pairs: the child ran for the whole timed run (it started before and
  // stopped after), so this slightly favours nobody but counts its pairs outside the
  // timed region too; they are few (the ready wait and the stop are short).
  state.SetItemsProcessed(static_cast<std::int64_t>(pairs + child_pairs));
  state.counters["child_share"] = static_cast<double>(child_pairs) / static_cast<double>(pairs + child_pairs);
}

}  // namespace

BENCHMARK(BM_process_lock_uncontended);
BENCHMARK(BM_process_lock_cas_floor);
BENCHMARK(BM_process_lock_contended)->UseRealTime();
