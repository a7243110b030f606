// corio::pool benchmarks (2 workers: the machine's cores).
//   BM_pool_submit    — tiny tasks (int add): submit a batch of 4096, then get() each;
//                       tasks/s is the pool's throughput for apply_async-style use
//                       (Python's Pool.apply_async: ~11 k/s on this machine kind).
//   BM_pool_map_chunk1, BM_pool_map_chunk64
//                     — map(add1, 4096 ints) at chunksize 1 and 64; compare.py sets each
//                       beside Python's Pool.map at the same chunksize (like with like:
//                       chunking is where most of either side's speed comes from).
//   BM_pool_roundtrip — one task at a time, submit then get(): the latency floor
//                       (items/s = 1 / round trip).
#include <corio/ipc/pool.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

int add(int a, int b) { return a + b; }
int add1(int a) { return a + 1; }

corio::pool& shared_pool() {
  static corio::pool p(2);
  return p;
}

void BM_pool_submit(benchmark::State& state) {
  auto& p = shared_pool();
  constexpr int batch = 4096;
  std::vector<corio::pool_future<int>> futures;
  futures.reserve(batch);
  long long sum = 0;
  for (auto _ : state) {
    futures.clear();
    for (int i = 0; i < batch; ++i) futures.push_back(p.submit(add, i, 1));
    for (auto& f : futures) sum += f.get();
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_pool_submit)->UseRealTime();

void pool_map(benchmark::State& state, std::size_t chunksize) {
  auto& p = shared_pool();
  std::vector<int> items(4096);
  for (int i = 0; i < 4096; ++i) items[static_cast<std::size_t>(i)] = i;
  long long sum = 0;
  for (auto _ : state) {
    auto out = p.map(add1, items, chunksize);
    sum += out.back();
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * 4096);
}

void BM_pool_map_chunk1(benchmark::State& state) { pool_map(state, 1); }
void BM_pool_map_chunk64(benchmark::State& state) { pool_map(state, 64); }
BENCHMARK(BM_pool_map_chunk1)->UseRealTime();
BENCHMARK(BM_pool_map_chunk64)->UseRealTime();

void BM_pool_roundtrip(benchmark::State& state) {
  auto& p = shared_pool();
  long long sum = 0;
  for (auto _ : state) sum += p.submit(add, 1, 2).get();
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_pool_roundtrip)->UseRealTime();

}  // namespace
