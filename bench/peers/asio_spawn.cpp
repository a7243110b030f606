// Peer for BM_spawn: Boost.Asio 1.81's co_spawn of an empty C++20 coroutine onto an
// io_context, run to completion. Built as bench_peer_asio; same items_per_second unit.
#include <benchmark/benchmark.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace {

boost::asio::awaitable<void> empty() { co_return; }

void BM_asio_co_spawn(benchmark::State& state) {
  boost::asio::io_context ctx(1);
  // Spawn in batches and run them, so the io_context's queue stays as short as corio's
  // (spawn + complete, not a growing backlog).
  constexpr int batch = 1024;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) boost::asio::co_spawn(ctx, empty(), boost::asio::detached);
    ctx.run();
    ctx.restart();
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_asio_co_spawn);

}  // namespace

BENCHMARK_MAIN();
