// bench_runtime: the io_uring loop next to bare liburing.
//
// BM_raw_uring_nop is the floor, written here with liburing alone: queue 128 NOPs, one
// io_uring_submit_and_wait, reap 128 CQEs. BM_loop_nop runs the same work through corio:
// 128 coroutines each awaiting NOPs, batched by the loop. Target (issue 3): BM_loop_nop
// >= 0.7x BM_raw_uring_nop. Peers for BM_spawn (Boost.Asio co_spawn, Go goroutines) run
// as separate programs from bench/peers/.
#include <benchmark/benchmark.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/file_ops.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/runtime.hpp>
#include <corio/runtime/timer.hpp>

#include <liburing.h>

#include <stdexcept>

namespace {

constexpr unsigned batch = 128;

void BM_raw_uring_nop(benchmark::State& state) {
  io_uring ring;
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(256, &ring, &p) < 0) {
    p.flags = 0;
    if (io_uring_queue_init_params(256, &ring, &p) < 0) throw std::runtime_error("io_uring_queue_init");
  }
  for (auto _ : state) {
    for (unsigned i = 0; i < batch; ++i) io_uring_prep_nop(io_uring_get_sqe(&ring));
    io_uring_submit_and_wait(&ring, batch);
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) ++seen;
    io_uring_cq_advance(&ring, seen);
  }
  io_uring_queue_exit(&ring);
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_raw_uring_nop);

void BM_loop_nop(benchmark::State& state) {
  corio::loop lp;
  // One benchmark iteration: 128 coroutines, each awaiting `rounds` NOPs one after the
  // other, so 128 NOPs are in flight at a time as in the raw batch.
  constexpr int rounds = 64;
  auto worker = []() -> corio::task<void> {
    for (int i = 0; i < rounds; ++i) co_await corio::nop();
  };
  auto main = [&]() -> corio::task<void> {
    for (auto _ : state) {
      corio::task_group g;
      for (unsigned i = 0; i < batch; ++i) g.spawn(worker());
      co_await g.wait();
    }
  };
  lp.run(main());
  state.SetItemsProcessed(state.iterations() * batch * rounds);
}
BENCHMARK(BM_loop_nop);

corio::task<void> empty() { co_return; }

void BM_spawn(benchmark::State& state) {
  corio::loop lp;
  auto main = [&]() -> corio::task<void> {
    for (auto _ : state) lp.spawn(empty());
    co_return;
  };
  lp.run(main());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_spawn);

void BM_timer(benchmark::State& state) {
  corio::loop lp;
  auto main = [&]() -> corio::task<void> {
    for (auto _ : state) co_await corio::sleep_for(std::chrono::nanoseconds{0});
  };
  lp.run(main());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_timer);

// Cross-shard round trips: shard 0 awaits submit_to(1, [] { return 1; }). One submitter
// measures latency (each round trip waits for the previous; shard 1 may fall asleep in
// between and must be woken); the pipelined variant keeps 64 submitters in flight, which
// is what a server does, and measures throughput. Two shards, pinned where allowed.
void BM_cross_shard_submit(benchmark::State& state) {
  corio::runtime rt({.shards = 2, .pin = true});
  auto main = [&]() -> corio::task<void> {
    for (auto _ : state) benchmark::DoNotOptimize(co_await corio::submit_to(1, [] { return 1; }));
  };
  rt.run(main());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_cross_shard_submit)->UseRealTime();

void BM_cross_shard_submit_pipelined(benchmark::State& state) {
  constexpr int submitters = 64;
  constexpr int rounds = 16;
  corio::runtime rt({.shards = 2, .pin = true});
  auto worker = []() -> corio::task<void> {
    for (int i = 0; i < rounds; ++i) benchmark::DoNotOptimize(co_await corio::submit_to(1, [] { return 1; }));
  };
  auto main = [&]() -> corio::task<void> {
    for (auto _ : state) {
      corio::task_group g;
      for (int i = 0; i < submitters; ++i) g.spawn(worker());
      co_await g.wait();
    }
  };
  rt.run(main());
  state.SetItemsProcessed(state.iterations() * submitters * rounds);
}
BENCHMARK(BM_cross_shard_submit_pipelined)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
