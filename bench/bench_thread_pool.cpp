// bench_thread_pool: corio::thread_pool used from plain code, as Python's
// concurrent.futures.ThreadPoolExecutor is (the peer: bench/peers/python_threadpool.py,
// same shapes, same 2 workers).
//
//   BM_thread_pool_submit_batch — submit 1024 tiny tasks (int add), then get() each:
//                                 throughput when submissions overlap.
//   BM_thread_pool_submit_one   — one task at a time, submit then get(): the round trip
//                                 to a pool thread and back (items/s = 1 / latency).
// Both report process_cpu_ns: the CPU time of the whole process (the submitting thread
// and the pool's, polling included) per task, over the timed loop.
#include <benchmark/benchmark.h>

#include <corio/runtime/thread_pool.hpp>

#include <sys/resource.h>

#include <chrono>
#include <vector>

namespace {

constexpr std::size_t workers = 2;
constexpr int batch = 1024;

int add(int a, int b) { return a + b; }

// CPU time of every thread of the process so far (getrusage(RUSAGE_SELF)).
std::chrono::nanoseconds process_cpu() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  using std::chrono::microseconds, std::chrono::seconds;
  return seconds(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + microseconds(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void report_process_cpu(benchmark::State& state, std::chrono::nanoseconds used, std::int64_t tasks) {
  state.counters["process_cpu_ns"] = static_cast<double>(used.count()) / static_cast<double>(tasks);
}

void BM_thread_pool_submit_batch(benchmark::State& state) {
  corio::thread_pool pool(workers);
  std::vector<corio::thread_future<int>> futures;
  futures.reserve(batch);
  long long sum = 0;
  const auto cpu_start = process_cpu();
  for (auto _ : state) {
    futures.clear();
    for (int i = 0; i < batch; ++i) futures.push_back(pool.submit(add, i, 1));
    for (auto& f : futures) sum += f.get();
  }
  report_process_cpu(state, process_cpu() - cpu_start, static_cast<std::int64_t>(state.iterations()) * batch);
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_thread_pool_submit_batch)->UseRealTime();

void BM_thread_pool_submit_one(benchmark::State& state) {
  corio::thread_pool pool(workers);
  long long sum = 0;
  const auto cpu_start = process_cpu();
  for (auto _ : state) sum += pool.submit(add, 1, 1).get();
  report_process_cpu(state, process_cpu() - cpu_start, static_cast<std::int64_t>(state.iterations()));
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_thread_pool_submit_one)->UseRealTime();

}  // namespace
