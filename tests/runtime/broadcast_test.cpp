// broadcast: every value to every subscriber in order, across threads and loops; a slow
// subscriber gets broadcast_lagged with the exact count and continues at the oldest kept.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/broadcast.hpp>
#include <corio/runtime/loop.hpp>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using corio::task;

TEST_CASE("every subscriber receives every value in order, on loops of two threads and a plain thread") {
  constexpr int count = 20'000;
  corio::broadcast<int> b(count);  // large enough that nobody lags
  std::atomic<int> ready{0};
  std::vector<int> got[3];
  auto read_all = [&](int k) {
    return [&, k, sub = b.subscribe()]() mutable {
      ready.fetch_add(1);
      corio::loop lp;
      lp.run([&]() -> task<void> {
        while (auto v = co_await sub.receive()) got[k].push_back(*v);
      }());
    };
  };
  std::thread one(read_all(0)), two(read_all(1));
  std::thread plain([&, sub = b.subscribe()]() mutable {
    while (auto v = sub.blocking_receive()) got[2].push_back(*v);
  });
  for (int i = 0; i < count; ++i) b.send(i);
  b.close();
  one.join();
  two.join();
  plain.join();
  for (const auto& g : got) {
    REQUIRE(g.size() == count);
    bool in_order = true;
    for (int i = 0; i < count; ++i) in_order = in_order && g[i] == i;
    CHECK(in_order);
  }
}

TEST_CASE("a subscriber that fell behind gets broadcast_lagged with the count lost, then the oldest kept") {
  corio::broadcast<int> b(4);
  auto slow = b.subscribe();
  auto fast = b.subscribe();
  for (int i = 0; i < 10; ++i) {
    b.send(i);  // never waits, although `slow` reads nothing
    CHECK(fast.try_receive() == i);
  }
  try {
    slow.try_receive();
    FAIL("no lag reported");
  } catch (const corio::broadcast_lagged& e) {
    CHECK(e.missed() == 6);
    CHECK(std::string(e.what()) == "broadcast receive: lagged behind, 6 values lost");
  }
  for (int i = 6; i < 10; ++i) CHECK(slow.try_receive() == i);
  CHECK_FALSE(slow.try_receive().has_value());
}

TEST_CASE("a subscriber sees only values sent after it subscribed, and the rest after close") {
  corio::broadcast<int> b(8);
  b.send(1);
  auto sub = b.subscribe();
  b.send(2);
  b.send(3);
  b.close();
  CHECK_THROWS_WITH_AS(b.send(4), "broadcast send: the broadcast is closed", corio::channel_closed);
  CHECK(sub.try_receive() == 2);
  CHECK(sub.blocking_receive() == 3);
  CHECK_FALSE(sub.blocking_receive().has_value());
}

TEST_CASE("a waiting subscriber lapped before it resumes gets the lag, and a cancelled receive keeps its place") {
  corio::broadcast<int> b(2);
  corio::loop lp;
  lp.run([&]() -> task<void> {
    auto sub = b.subscribe();
    corio::task_group g;
    std::uint64_t missed = 0;
    g.spawn([&]() -> task<void> {
      try {
        co_await sub.receive();
      } catch (const corio::broadcast_lagged& e) {
        missed = e.missed();
      }
    });
    for (int i = 0; i < 5; ++i) b.send(i);  // all before the woken subscriber runs
    co_await g.wait();
    CHECK(missed == 3);
    CHECK(sub.try_receive() == 3);
    CHECK(sub.try_receive() == 4);

    corio::task_group cancelled;
    cancelled.spawn([&]() -> task<void> {
      CHECK_THROWS_AS(co_await sub.receive(), corio::operation_cancelled);  // waits: nothing new
    });
    cancelled.request_stop();
    co_await cancelled.wait();
    b.send(5);
    CHECK(sub.try_receive() == 5);
  }());
}

TEST_CASE("broadcast capacity 0 is refused") {
  CHECK_THROWS_AS(corio::broadcast<int>(0), std::invalid_argument);
}
