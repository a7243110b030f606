// thread_pool / offload: values and exceptions come back, the coroutine resumes on its
// loop's thread, jobs run concurrently, and blocking work does not block the loop.
#include <doctest/doctest.h>

#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task_group.hpp>
#include <corio/coro/when_all.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/thread_pool.hpp>
#include <corio/runtime/timer.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio::task;
using steady = std::chrono::steady_clock;

TEST_CASE("offload returns the function's value and resumes on the loop's thread") {
  corio::loop lp;
  const auto loop_thread = std::this_thread::get_id();
  std::thread::id ran_on, resumed_on;
  auto main = [&]() -> task<std::string> {
    std::string s = co_await corio::offload([&] {
      ran_on = std::this_thread::get_id();
      return std::string("computed");
    });
    resumed_on = std::this_thread::get_id();
    co_return s;
  };
  CHECK(lp.run(main()) == "computed");
  CHECK(ran_on != loop_thread);
  CHECK(resumed_on == loop_thread);
}

TEST_CASE("offload rethrows the function's exception in the awaiting coroutine") {
  corio::loop lp;
  auto main = []() -> task<std::string> {
    try {
      co_await corio::offload([]() -> int { throw std::runtime_error("disk on fire"); });
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "no exception";
  };
  CHECK(lp.run(main()) == "disk on fire");
}

TEST_CASE("submit handles void, move-only results and functions taking a stop token") {
  corio::loop lp;
  corio::thread_pool pool(2);
  CHECK(pool.size() == 2);
  auto main = [&]() -> task<int> {
    int side = 0;
    co_await pool.submit([&] { side = 3; });
    std::unique_ptr<int> p = co_await pool.submit([] { return std::make_unique<int>(4); });
    bool stoppable = co_await pool.submit([](std::stop_token st) { return st.stop_possible(); });
    CHECK_FALSE(stoppable);  // lp.run() was given no token
    co_return side + *p;
  };
  CHECK(lp.run(main()) == 7);
}

TEST_CASE("four sleeping jobs on four threads run concurrently") {
  corio::loop lp;
  corio::thread_pool pool(4);
  auto job = [&]() -> task<void> { co_await pool.submit([] { std::this_thread::sleep_for(200ms); }); };
  auto main = [&]() -> task<steady::duration> {
    const auto start = steady::now();
    co_await corio::when_all(job(), job(), job(), job());
    co_return steady::now() - start;
  };
  const auto took = lp.run(main());
  CHECK(took >= 200ms);
  CHECK(took < 700ms);  // serial would be 800 ms
}

TEST_CASE("a timer keeps firing on the loop while offloaded work blocks") {
  corio::loop lp;
  corio::thread_pool pool(1);
  std::atomic<bool> blocking_done{false};
  int ticks_during = 0;
  auto main = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await pool.submit([&] {
        std::this_thread::sleep_for(300ms);
        blocking_done = true;
      });
    });
    while (!blocking_done) {
      co_await corio::sleep_for(10ms);
      if (!blocking_done) ++ticks_during;
    }
    co_await g.wait();
  };
  lp.run(main());
  CHECK(ticks_during >= 5);  // 30 if the loop were never late; a loaded machine gets fewer
}

TEST_CASE("many offloads from many coroutines all complete with their own values") {
  corio::loop lp;
  corio::thread_pool pool(3);
  std::vector<int> results(200, -1);
  auto one = [&](int i) -> task<void> {
    results[static_cast<std::size_t>(i)] = co_await pool.submit([i] { return i * i; });
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int i = 0; i < 200; ++i) g.spawn(one(i));
    co_await g.wait();
  };
  lp.run(main());
  for (int i = 0; i < 200; ++i) CHECK(results[static_cast<std::size_t>(i)] == i * i);
}

TEST_CASE("shutdown finishes queued work, then submit throws std::logic_error") {
  corio::loop lp;
  corio::thread_pool pool(1);
  std::atomic<int> ran{0};
  auto job = [&]() -> task<void> {
    co_await pool.submit([&] {
      std::this_thread::sleep_for(5ms);
      ++ran;
    });
  };
  auto main = [&]() -> task<std::string> {
    co_await corio::when_all(job(), job(), job());
    pool.shutdown();
    pool.shutdown();  // idempotent
    try {
      co_await pool.submit([] {});
    } catch (const std::logic_error& e) {
      co_return e.what();
    }
    co_return "no exception";
  };
  CHECK(lp.run(main()) == "corio::thread_pool: submit after shutdown()");
  CHECK(ran == 3);
}

TEST_CASE("the destructor runs every queued job before joining") {
  std::atomic<int> ran{0};
  {
    corio::thread_pool pool(1);
    // Jobs queued from outside a loop through an awaiter are not possible; use a loop
    // that hands the pool work and ends while it is still queued behind a slow job.
    corio::loop lp;
    auto main = [&]() -> task<void> {
      co_await corio::when_all(
          [&]() -> task<void> {
            co_await pool.submit([&] {
              std::this_thread::sleep_for(20ms);
              ++ran;
            });
          }(),
          [&]() -> task<void> { co_await pool.submit([&] { ++ran; }); }());
    };
    lp.run(main());
  }
  CHECK(ran == 2);
}

TEST_CASE("offload outside a running loop throws std::logic_error") {
  auto outside = []() -> task<int> { co_return co_await corio::offload([] { return 1; }); };
  auto t = outside();
  try {
    corio::sync_wait(std::move(t));
    FAIL("no exception");
  } catch (const std::logic_error& e) {
    CHECK(std::string(e.what()).starts_with("corio::offload: awaited outside a running loop"));
  }
}
