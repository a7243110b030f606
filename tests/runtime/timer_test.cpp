// Timers: sleep_for / sleep_until order and accuracy, with_timeout, cancellation.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <algorithm>
#include <chrono>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio::task;
using steady = std::chrono::steady_clock;

TEST_CASE("sleep_for waits at least the requested time") {
  corio::loop lp;
  auto main = []() -> task<steady::duration> {
    const auto start = steady::now();
    co_await corio::sleep_for(30ms);
    co_return steady::now() - start;
  };
  CHECK(lp.run(main()) >= 30ms);
}

TEST_CASE("sleep_until an instant in the past completes at once") {
  corio::loop lp;
  auto main = []() -> task<int> { co_return co_await corio::sleep_until(steady::now() - 1s); };
  CHECK(lp.run(main()) == 0);
}

TEST_CASE("ten thousand concurrent sleepers wake in deadline order") {
  corio::loop lp;
  constexpr int n = 10'000;
  std::vector<int> delays_ms(n);
  std::mt19937 rng(7);
  for (int i = 0; i < n; ++i) delays_ms[static_cast<std::size_t>(i)] = static_cast<int>(rng() % 400);
  std::vector<int> woke;  // the delay of each sleeper, in wake order
  woke.reserve(n);
  // Absolute deadlines, far enough ahead that every sleeper is submitted before the first
  // one is due even in a sanitizer build (a timer submitted late fires at once, in
  // submission order, and proves nothing about ordering).
  const auto base = steady::now() + 2s;
  auto sleeper = [&](int ms) -> task<void> {
    co_await corio::sleep_until(base + std::chrono::milliseconds(ms));
    woke.push_back(ms);
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int ms : delays_ms) g.spawn(sleeper(ms));
    REQUIRE_MESSAGE(steady::now() < base, "submitting 10,000 sleepers took over 2 s");
    co_await g.wait();
  };
  lp.run(main());
  REQUIRE(woke.size() == n);
  CHECK(std::is_sorted(woke.begin(), woke.end()));
}

TEST_CASE("with_timeout returns the value of a task that finishes in time") {
  corio::loop lp;
  auto quick = []() -> task<int> {
    co_await corio::sleep_for(1ms);
    co_return 5;
  };
  auto main = [&]() -> task<int> { co_return co_await corio::with_timeout(quick(), 5s); };
  CHECK(lp.run(main()) == 5);
}

TEST_CASE("with_timeout stops a late task and throws timed_out") {
  corio::loop lp;
  bool stopped_early = false;
  auto slow = [&]() -> task<int> {
    try {
      co_await corio::sleep_for(1h);
    } catch (const corio::operation_cancelled&) {
      stopped_early = true;
      throw;
    }
    co_return 1;
  };
  auto main = [&]() -> task<int> { co_return co_await corio::with_timeout(slow(), 20ms); };
  CHECK_THROWS_AS(lp.run(main()), corio::timed_out);
  CHECK(stopped_early);
}

// Both bounds are one-sided (a timer fires no earlier than asked; a busy machine only
// makes it later), so these cannot flake: a timeout that fires early, at half its
// duration say, fails both.
TEST_CASE("with_timeout does not fire before its duration") {
  corio::loop lp;
  auto slow = []() -> task<int> {
    co_await corio::sleep_for(1h);
    co_return 1;
  };
  auto main = [&]() -> task<steady::duration> {
    const auto start = steady::now();
    try {
      (void)co_await corio::with_timeout(slow(), 400ms);
    } catch (const corio::timed_out&) {
      co_return steady::now() - start;
    }
    throw std::logic_error("with_timeout returned the value of a task that sleeps for an hour");
  };
  CHECK(lp.run(main()) >= 400ms);
}

TEST_CASE("with_timeout returns the value of a task that finishes at 60 percent of the duration") {
  corio::loop lp;
  auto on_time = []() -> task<int> {
    co_await corio::sleep_for(240ms);
    co_return 7;
  };
  auto main = [&]() -> task<int> { co_return co_await corio::with_timeout(on_time(), 400ms); };
  CHECK(lp.run(main()) == 7);
}

TEST_CASE("a stop request cancels a sleep with operation_cancelled") {
  corio::loop lp;
  std::stop_source src;
  const std::stop_token token = src.get_token();
  auto main = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await corio::sleep_for(10ms);
      src.request_stop();
    });
    co_await corio::sleep_for(1h, {.token = &token, .deadline = std::nullopt});
    co_await g.wait();
  };
  CHECK_THROWS_AS(lp.run(main()), corio::operation_cancelled);
}

TEST_CASE("a stop requested from another thread cancels a sleep on the loop") {
  corio::loop lp;
  std::stop_source src;
  std::thread stopper([&] {
    std::this_thread::sleep_for(30ms);
    src.request_stop();
  });
  auto main = []() -> task<void> { co_await corio::sleep_for(1h); };
  const auto start = steady::now();
  CHECK_THROWS_AS(lp.run(main(), src.get_token()), corio::operation_cancelled);
  stopper.join();
  CHECK(steady::now() - start < 30s);
}

TEST_CASE("a sleep whose token is already stopped fails without being submitted") {
  corio::loop lp;
  std::stop_source src;
  src.request_stop();
  auto main = []() -> task<void> { co_await corio::sleep_for(1h); };
  CHECK_THROWS_AS(lp.run(main(), src.get_token()), corio::operation_cancelled);
  CHECK(lp.in_flight() <= 1);  // at most the loop's own wake-up read
}

TEST_CASE("a deadline on a sleep longer than the deadline throws timed_out") {
  corio::loop lp;
  auto main = []() -> task<void> { co_await corio::sleep_for(1h, corio::within(20ms)); };
  CHECK_THROWS_AS(lp.run(main()), corio::timed_out);
}
