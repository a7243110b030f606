// corio::fiber and fiber_generator against their floor, a bare Boost.Context round trip
// (design.md target: a fiber switch within 1.2x of raw). main() is in bench_coro.cpp.
//
// Every benchmark counts one item per round trip (resume + suspend, or one next()), so
// items_per_second compares directly across the three.

#include <benchmark/benchmark.h>

#include <boost/context/detail/fcontext.hpp>

#include <corio/coro/fiber.hpp>
#include <corio/coro/fiber_generator.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace {

namespace fctx = boost::context::detail;

// Bounces straight back to whoever jumped in, forever. The context is abandoned when the
// benchmark ends: nothing on its stack needs destroying.
void bounce(fctx::transfer_t from) {
  for (;;) from = fctx::jump_fcontext(from.fctx, nullptr);
}

// The floor: two jump_fcontext calls per item and nothing else (no guard page, no pool,
// no bookkeeping).
void BM_raw_fcontext_switch(benchmark::State& state) {
  constexpr std::size_t stack_size = 64 * 1024;
  const auto stack = std::make_unique<std::byte[]>(stack_size);
  // make_fcontext aligns the top itself.
  fctx::fcontext_t ctx = fctx::make_fcontext(stack.get() + stack_size, stack_size, &bounce);
  for (auto _ : state) ctx = fctx::jump_fcontext(ctx, nullptr).fctx;
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_raw_fcontext_switch);

void BM_fiber_switch(benchmark::State& state) {
  corio::fiber f([] {
    for (;;) corio::fiber::suspend();
  });
  for (auto _ : state) benchmark::DoNotOptimize(f.resume());
  state.SetItemsProcessed(state.iterations());
  // f is destroyed suspended: its stack is unwound outside the timed loop.
}
BENCHMARK(BM_fiber_switch);

void BM_fiber_generator_next(benchmark::State& state) {
  corio::fiber_generator<std::uint64_t> g([](corio::yielder<std::uint64_t>& out) {
    for (std::uint64_t i = 0;; ++i) out.yield(i);
  });
  for (auto _ : state) benchmark::DoNotOptimize(g.next());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_fiber_generator_next);

// Creation cost with a warm stack cache: no mmap, just the control block and one run.
void BM_fiber_create_and_finish(benchmark::State& state) {
  std::uint64_t runs = 0;
  for (auto _ : state) {
    corio::fiber f([&runs] { ++runs; });
    f.resume();
  }
  benchmark::DoNotOptimize(runs);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_fiber_create_and_finish);

}  // namespace
