// bench_coro: the cost of corio's coroutine types next to their floors.
//
// Floors are written here, in the benchmark, so they measure the machine and not corio:
// BM_raw_resume is a bare std::coroutine_handle generator; BM_raw_fcontext_switch (in
// bench_coro_fiber.cpp) a bare Boost.Context round trip. Targets (issue 2): generator send
// >= 0.67x raw resume, fiber switch >= 0.8x raw fcontext, generator send >= 20x Python.
#include <benchmark/benchmark.h>

#include <corio/coro/generator.hpp>
#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>

#include <coroutine>
#include <exception>
#include <optional>

namespace {

// The smallest possible generator: one int in the promise, no checks.
struct raw_generator {
  struct promise_type {
    int value = 0;
    raw_generator get_return_object() {
      return raw_generator{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(int v) noexcept {
      value = v;
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
  ~raw_generator() { h.destroy(); }
};

raw_generator raw_counter() {
  for (int i = 0;; ++i) co_yield i;
}

corio::generator<int> counter() {
  for (int i = 0;; ++i) co_yield i;
}

// Receives every sent value (stores it where the benchmark can see it) and yields a
// counter. The yielded value deliberately does not depend on the sent one: a
// yield-what-you-were-sent body would add a store-to-load forwarding chain through
// memory (consumer -> frame -> consumer) that BM_raw_resume does not have.
corio::generator<int, int> receiver(int& last_received) {
  for (int i = 0;; ++i) {
    std::optional<int> v = co_yield i;
    last_received = *v;
  }
}

corio::task<int> ready_child(int v) { co_return v; }

corio::task<void> await_loop(benchmark::State& state) {
  int sum = 0;
  for (auto _ : state) sum += co_await ready_child(1);
  benchmark::DoNotOptimize(sum);
}

void BM_raw_resume(benchmark::State& state) {
  auto g = raw_counter();
  for (auto _ : state) {
    g.h.resume();
    benchmark::DoNotOptimize(g.h.promise().value);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_raw_resume);

void BM_generator_next(benchmark::State& state) {
  auto g = counter();
  for (auto _ : state) benchmark::DoNotOptimize(g.next());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_generator_next);

void BM_generator_send(benchmark::State& state) {
  int last_received = 0;
  auto g = receiver(last_received);
  (void)g.next();
  int i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(g.send(++i));
  benchmark::DoNotOptimize(last_received);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_generator_send);

void BM_task_await(benchmark::State& state) {
  corio::sync_wait(await_loop(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_task_await);

}  // namespace

BENCHMARK_MAIN();
