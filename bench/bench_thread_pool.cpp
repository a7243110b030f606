// bench_thread_pool: corio::thread_pool used from plain code, as Python's
// concurrent.futures.ThreadPoolExecutor is (the peer: bench/peers/python_threadpool.py,
// same shapes, same 2 workers).
//
//   BM_thread_pool_submit_batch — submit 1024 tiny tasks (int add), then get() each:
//                                 throughput when submissions overlap.
//   BM_thread_pool_submit_one   — one task at a time, submit then get(): the round trip
//                                 to a pool thread and back (items/s = 1 / latency).
#include <benchmark/benchmark.h>

#include <corio/runtime/thread_pool.hpp>

#include <vector>

namespace {

constexpr std::size_t workers = 2;
constexpr int batch = 1024;

int add(int a, int b) { return a + b; }

void BM_thread_pool_submit_batch(benchmark::State& state) {
  corio::thread_pool pool(workers);
  std::vector<corio::thread_future<int>> futures;
  futures.reserve(batch);
  long long sum = 0;
  for (auto _ : state) {
    futures.clear();
    for (int i = 0; i < batch; ++i) futures.push_back(pool.submit(add, i, 1));
    for (auto& f : futures) sum += f.get();
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_thread_pool_submit_batch)->UseRealTime();

void BM_thread_pool_submit_one(benchmark::State& state) {
  corio::thread_pool pool(workers);
  long long sum = 0;
  for (auto _ : state) sum += pool.submit(add, 1, 1).get();
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_thread_pool_submit_one)->UseRealTime();

}  // namespace
