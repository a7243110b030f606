// oneshot: one value or one error, across threads and loops; a dropped sender, a dropped
// receiver, a second send, cancellation that leaves the value for the next receive.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/oneshot.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

using corio::task;

TEST_CASE("a value sent from a plain thread resumes the receiving coroutine on its own loop") {
  auto [tx, rx] = corio::oneshot<std::string>();
  corio::loop lp;
  const auto loop_thread = std::this_thread::get_id();
  std::string got;
  bool same_thread = false;
  lp.run([&]() -> task<void> {
    std::thread sender([tx = std::move(tx)]() mutable { CHECK(tx.send("forty-two")); });
    got = co_await rx.receive();
    same_thread = std::this_thread::get_id() == loop_thread;
    sender.join();
  }());
  CHECK(got == "forty-two");
  CHECK(same_thread);
}

TEST_CASE("a sender destroyed without sending makes the receive throw oneshot_dropped") {
  auto [tx, rx] = corio::oneshot<int>();
  corio::loop lp;
  lp.run([&]() -> task<void> {
    std::thread dropper([tx = std::move(tx)] {});
    CHECK_THROWS_WITH_AS(co_await rx.receive(), "oneshot receive: the sender was dropped without sending",
                         corio::oneshot_dropped);
    dropper.join();
  }());
}

TEST_CASE("a dropped sender is seen by blocking_receive and try_receive too") {
  {
    auto [tx, rx] = corio::oneshot<int>();
    std::thread dropper([tx = std::move(tx)] {});
    CHECK_THROWS_AS(rx.blocking_receive(), corio::oneshot_dropped);
    dropper.join();
  }
  {
    auto [tx, rx] = corio::oneshot<int>();
    CHECK_FALSE(rx.try_receive().has_value());
    { auto gone = std::move(tx); }
    CHECK_THROWS_AS(rx.try_receive(), corio::oneshot_dropped);
  }
}

TEST_CASE("send_error rethrows the exception at the receiver") {
  auto [tx, rx] = corio::oneshot<int>();
  CHECK(tx.send_error(std::make_exception_ptr(std::runtime_error("disk on fire"))));
  CHECK_THROWS_WITH_AS(rx.blocking_receive(), "disk on fire", std::runtime_error);
}

TEST_CASE("sending twice throws std::logic_error and receiving twice too") {
  auto [tx, rx] = corio::oneshot<int>();
  CHECK(tx.send(1));
  CHECK_THROWS_AS(tx.send(2), std::logic_error);
  CHECK(rx.try_receive() == 1);
  CHECK_THROWS_AS(rx.try_receive(), std::logic_error);
}

TEST_CASE("a send after the receiver is gone returns false and is_closed says so") {
  auto [tx, rx] = corio::oneshot<std::unique_ptr<int>>();
  CHECK_FALSE(tx.is_closed());
  { auto gone = std::move(rx); }
  CHECK(tx.is_closed());
  CHECK_FALSE(tx.send(std::make_unique<int>(7)));
}

TEST_CASE("a cancelled receive takes nothing: the value waits for the next receive") {
  constexpr int rounds = 500;
  int received_first = 0, received_second = 0;
  corio::loop lp;
  lp.run([&]() -> task<void> {
    for (int round = 0; round < rounds; ++round) {
      auto [tx, rx] = corio::oneshot<int>();
      corio::task_group g;
      bool first = false;
      g.spawn([&]() -> task<void> {
        try {
          const int v = co_await rx.receive();  // outside REQUIRE, which would catch the cancellation
          REQUIRE(v == round);
          first = true;
        } catch (const corio::operation_cancelled&) {
        }
      });
      std::thread sender([&] { tx.send(round); });
      std::thread stopper([&] { g.request_stop(); });
      sender.join();
      stopper.join();
      co_await g.wait();
      if (first) {
        ++received_first;
      } else {
        const int v = co_await rx.receive();
        REQUIRE(v == round);
        ++received_second;
      }
    }
  }());
  CHECK(received_first + received_second == rounds);
  MESSAGE("won by the hand-over: " << received_first << ", by the cancellation: " << received_second);
}
