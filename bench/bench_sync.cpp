// bench_sync: the async primitives' cost, on one loop (the fast path every loop-local
// user pays) and across two loops on two threads (the cross-thread hand-over).
//
// BM_channel_one_loop: a producer and a consumer coroutine on one loop, a channel of
// capacity 16; items/s counts values through. BM_mutex_uncontended: co_await lock() and
// unlock on a free mutex. BM_channel_two_loops: the producer on one loop, the consumer on
// another loop on its own thread.
#include <benchmark/benchmark.h>

#include <corio/runtime/channel.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/mutex.hpp>

#include <cstdint>
#include <thread>

namespace {

corio::task<void> produce(corio::channel<std::int64_t>& ch, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) co_await ch.send(i);
  ch.close();
}

corio::task<std::int64_t> consume(corio::channel<std::int64_t>& ch) {
  std::int64_t sum = 0;
  while (auto v = co_await ch.receive()) sum += *v;
  co_return sum;
}

constexpr std::int64_t per_iteration = 100'000;

void BM_channel_one_loop(benchmark::State& state) {
  corio::loop lp;
  auto body = [&]() -> corio::task<std::int64_t> {
    corio::channel<std::int64_t> ch(16);
    corio::loop::this_loop().spawn(produce(ch, per_iteration));
    co_return co_await consume(ch);
  };
  for (auto _ : state) benchmark::DoNotOptimize(lp.run(body()));
  state.SetItemsProcessed(state.iterations() * per_iteration);
}
BENCHMARK(BM_channel_one_loop);

void BM_mutex_uncontended(benchmark::State& state) {
  corio::loop lp;
  corio::mutex m;
  auto body = [&]() -> corio::task<void> {
    for (std::int64_t i = 0; i < per_iteration; ++i) {
      auto guard = co_await m.lock();
      benchmark::ClobberMemory();
    }
  };
  for (auto _ : state) lp.run(body());
  state.SetItemsProcessed(state.iterations() * per_iteration);
}
BENCHMARK(BM_mutex_uncontended);

void BM_channel_two_loops(benchmark::State& state) {
  for (auto _ : state) {
    corio::channel<std::int64_t> ch(16);
    std::thread producer([&] {
      corio::loop lp;
      lp.run(produce(ch, per_iteration));
    });
    corio::loop lp;
    benchmark::DoNotOptimize(lp.run(consume(ch)));
    producer.join();
  }
  state.SetItemsProcessed(state.iterations() * per_iteration);
}
BENCHMARK(BM_channel_two_loops)->UseRealTime();

}  // namespace
