#pragma once
// run_beside_ticker: runs an awaiting coroutine on a fresh loop beside a 5 ms ticker, to
// prove the awaited wait sleeps inside the loop (the ticker keeps running) rather than
// blocking its thread. Used by the process_* synchronisation tests.
#include <corio/coro/task.hpp>
#include <corio/coro/when_all.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <chrono>
#include <functional>
#include <utility>

namespace corio_test {

// Returns what `awaited` returned and how many 5 ms ticks ran meanwhile.
template <class T>
std::pair<T, int> run_beside_ticker(std::function<corio::task<T>()> awaited) {
  using namespace std::chrono_literals;
  int ticks = 0;
  bool done = false;
  corio::loop lp;
  auto ticker = [&]() -> corio::task<void> {
    while (!done) {
      co_await corio::sleep_for(5ms);
      ++ticks;
    }
  };
  auto waiter = [&]() -> corio::task<T> {
    T v = co_await awaited();
    done = true;
    co_return v;
  };
  auto main = [&]() -> corio::task<T> {
    auto [v, unused] = co_await corio::when_all(waiter(), ticker());
    co_return v;
  };
  T v = lp.run(main());
  return {v, ticks};
}

}  // namespace corio_test
