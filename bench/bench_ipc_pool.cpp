// corio::pool benchmarks (2 workers: the machine's cores).
//   BM_pool_submit    — tiny tasks (int add): submit a batch of 4096, then get() each;
//                       tasks/s is the pool's throughput for apply_async-style use
//                       (Python's Pool.apply_async: ~11 k/s on this machine kind).
//   BM_pool_map_chunk1, BM_pool_map_chunk64
//                     — map(add1, 4096 ints) at chunksize 1 and 64; compare.py sets each
//                       beside Python's Pool.map at the same chunksize (like with like:
//                       chunking is where most of either side's speed comes from).
//   BM_pool_imap_chunk1, BM_pool_imap_chunk64
//                     — imap(add1, iota(0, 4096)) consumed in order, at chunksize 1 and 64
//                       with the default window (32 chunks per worker); compare.py sets
//                       each beside Python's Pool.imap(noop, range(N), chunksize) (both
//                       read a lazy range).
//   BM_pool_roundtrip — one task at a time, submit then get(): the latency floor
//                       (items/s = 1 / round trip).
#include <corio/ipc/pool.hpp>

#include <benchmark/benchmark.h>

#include <ranges>
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

// One run of map (the whole vector at once) or imap (yielded in order, from a lazy range)
// over 4096 ints: the sum of the results.
long long map_once(corio::pool& p, const std::vector<int>& items, std::size_t chunksize) {
  return p.map(add1, items, chunksize).back();
}
long long imap_once(corio::pool& p, const std::vector<int>&, std::size_t chunksize) {
  long long sum = 0;
  for (int v : p.imap(add1, std::views::iota(0, 4096), chunksize)) sum += v;
  return sum;
}

void pool_chunked(benchmark::State& state, std::size_t chunksize,
                  long long (*run)(corio::pool&, const std::vector<int>&, std::size_t)) {
  auto& p = shared_pool();
  std::vector<int> items(4096);
  for (int i = 0; i < 4096; ++i) items[static_cast<std::size_t>(i)] = i;
  long long sum = 0;
  for (auto _ : state) sum += run(p, items, chunksize);
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * 4096);
}

void BM_pool_map_chunk1(benchmark::State& state) { pool_chunked(state, 1, map_once); }
void BM_pool_map_chunk64(benchmark::State& state) { pool_chunked(state, 64, map_once); }
void BM_pool_imap_chunk1(benchmark::State& state) { pool_chunked(state, 1, imap_once); }
void BM_pool_imap_chunk64(benchmark::State& state) { pool_chunked(state, 64, imap_once); }
BENCHMARK(BM_pool_map_chunk1)->UseRealTime();
BENCHMARK(BM_pool_map_chunk64)->UseRealTime();
BENCHMARK(BM_pool_imap_chunk1)->UseRealTime();
BENCHMARK(BM_pool_imap_chunk64)->UseRealTime();

void BM_pool_roundtrip(benchmark::State& state) {
  auto& p = shared_pool();
  long long sum = 0;
  for (auto _ : state) sum += p.submit(add, 1, 2).get();
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_pool_roundtrip)->UseRealTime();

}  // namespace
