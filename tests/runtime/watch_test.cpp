// watch: the newest value for every observer, across threads and loops; skipped values,
// close, cancellation that marks nothing.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/watch.hpp>

#include <atomic>
#include <optional>
#include <thread>
#include <vector>

using corio::task;

TEST_CASE("an observer on another loop sees increasing values ending with the last one sent") {
  corio::watch<int> level(0);
  auto rx = level.subscribe();
  std::vector<int> seen;
  std::atomic<int> latest{0};
  std::thread observer([&] {
    corio::loop lp;
    lp.run([&]() -> task<void> {
      while (auto v = co_await rx.changed()) {
        seen.push_back(*v);
        latest.store(*v);
      }
    }());
  });
  for (int i = 1; i <= 10'000; ++i) {
    level.send(i);
    if (i % 1000 == 0)
      while (latest.load() != i) std::this_thread::yield();  // at least ten changes observed
  }
  level.close();
  observer.join();
  REQUIRE(seen.size() >= 10);
  CHECK(seen.back() == 10'000);
  bool increasing = true;
  for (std::size_t i = 1; i < seen.size(); ++i) increasing = increasing && seen[i - 1] < seen[i];
  CHECK(increasing);
  MESSAGE(seen.size() << " of 10000 values observed");
}

TEST_CASE("the value current at subscription is not a change; get() reads without marking") {
  corio::watch<int> w(5);
  auto rx = w.subscribe();
  CHECK_FALSE(rx.try_changed().has_value());
  CHECK(rx.get() == 5);
  w.send(6);
  w.send(7);
  CHECK(rx.get() == 7);
  CHECK(rx.try_changed() == 7);  // 6 was replaced before it was read
  CHECK_FALSE(rx.try_changed().has_value());
  w.close();
  CHECK_FALSE(rx.blocking_changed().has_value());
  CHECK_THROWS_WITH_AS(w.send(8), "watch send: the watch is closed", corio::channel_closed);
}

TEST_CASE("a plain thread blocked in blocking_changed wakes on send") {
  corio::watch<int> w(0);
  auto rx = w.subscribe();
  std::optional<int> got;
  std::thread t([&] { got = rx.blocking_changed(); });
  w.send(42);
  t.join();
  CHECK(got == 42);
}

TEST_CASE("a cancelled changed() throws and marks nothing") {
  corio::watch<int> w(0);
  auto rx = w.subscribe();
  corio::loop lp;
  lp.run([&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> { CHECK_THROWS_AS(co_await rx.changed(), corio::operation_cancelled); });
    g.request_stop();
    co_await g.wait();
    w.send(1);
    auto v = co_await rx.changed();
    CHECK(v == 1);
  }());
}
