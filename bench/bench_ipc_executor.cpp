// corio::executor benchmarks: calls of a tiny fn (x -> 2x + 1) on worker processes.
//   BM_executor_submit    — throughput: 256 submitters on the parent's loop, each awaiting
//                           its call and submitting the next, keys spread over the workers;
//                           items/s = completed round trips. Arg: number of workers.
//   BM_executor_roundtrip — latency: one call at a time to one worker (time per iteration
//                           is the round trip: encode, ring, wake, run, reply, resume).
//                           Arg: the executor's spin time in microseconds before sleeping
//                           (0 = sleep at once: the futex path every time).
#include <corio/coro/task_group.hpp>
#include <corio/ipc/executor.hpp>
#include <corio/runtime/loop.hpp>

#include <benchmark/benchmark.h>

namespace {

long tiny(long x) { return 2 * x + 1; }

void BM_executor_submit(benchmark::State& state) {
  constexpr long window = 256;
  constexpr long per_iteration = 4096;
  corio::executor ex({.workers = static_cast<unsigned>(state.range(0))});
  corio::loop lp;
  long checksum = 0;
  auto body = [&]() -> corio::task<void> {
    for (auto _ : state) {
      corio::task_group g;
      for (long s = 0; s < window; ++s)
        g.spawn([&, s]() -> corio::task<void> {
          for (long i = s; i < per_iteration; i += window) checksum += co_await ex.submit(i, &tiny, i);
        });
      co_await g.wait();
    }
    co_await ex.shutdown();
  };
  lp.run(body());
  if (checksum != static_cast<long>(state.iterations()) * per_iteration * per_iteration)
    state.SkipWithError("wrong results");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * per_iteration);
}

void BM_executor_roundtrip(benchmark::State& state) {
  corio::executor ex({.workers = 1, .spin = std::chrono::microseconds(state.range(0))});
  corio::loop lp;
  long checksum = 0;
  auto body = [&]() -> corio::task<void> {
    long i = 0;
    for (auto _ : state) {
      checksum += co_await ex.submit(0, &tiny, i);
      ++i;
    }
    co_await ex.shutdown();
  };
  lp.run(body());
  benchmark::DoNotOptimize(checksum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

}  // namespace

BENCHMARK(BM_executor_submit)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_executor_roundtrip)->Arg(0)->Arg(5)->Arg(20)->UseRealTime()->Unit(benchmark::kMicrosecond);
