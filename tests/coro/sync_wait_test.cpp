// sync_wait: drive an awaitable from ordinary code, on this thread or completed by another.
#include <doctest/doctest.h>

#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>

#include <stdexcept>
#include <string>
#include <thread>

#include "test_event.hpp"

using corio::task;

TEST_CASE("sync_wait returns the value of a task that completes synchronously") {
  auto t = []() -> task<std::string> { co_return "done"; };
  CHECK(corio::sync_wait(t()) == "done");
}

TEST_CASE("sync_wait blocks until another thread completes the task") {
  corio_test::test_event ev;
  std::thread::id resumed_on;
  auto t = [&]() -> task<int> {
    co_await ev;
    resumed_on = std::this_thread::get_id();
    co_return 17;
  };
  std::thread setter([&] {
    while (ev.waiting() == 0) std::this_thread::yield();
    ev.set();
  });
  const std::thread::id setter_id = setter.get_id();
  CHECK(corio::sync_wait(t()) == 17);
  setter.join();
  CHECK(resumed_on == setter_id);
}

TEST_CASE("sync_wait rethrows the task's exception with its type") {
  auto t = []() -> task<void> {
    throw std::invalid_argument("bad port");
    co_return;
  };
  CHECK_THROWS_WITH_AS(corio::sync_wait(t()), "bad port", std::invalid_argument);
}

TEST_CASE("sync_wait on an lvalue task leaves the task owned by the caller") {
  auto make = []() -> task<int> { co_return 4; };
  auto t = make();
  CHECK(corio::sync_wait(t) == 4);
  CHECK(t.done());
  CHECK(t.valid());
}

TEST_CASE("sync_wait makes its stop token the task's ambient stop token") {
  std::stop_source src;
  auto t = []() -> task<bool> {
    std::stop_token st = co_await corio::this_coro::stop_token;
    co_return st.stop_requested();
  };
  CHECK(corio::sync_wait(t(), src.get_token()) == false);
  src.request_stop();
  CHECK(corio::sync_wait(t(), src.get_token()) == true);
  CHECK(corio::sync_wait(t()) == false);  // no token: never stopped
}

TEST_CASE("the ambient stop token flows through nested tasks") {
  std::stop_source src;
  auto leaf = []() -> task<bool> { co_return (co_await corio::this_coro::stop_token).stop_possible(); };
  auto mid = [&]() -> task<bool> { co_return co_await leaf(); };
  CHECK(corio::sync_wait(mid(), src.get_token()) == true);
  CHECK(corio::sync_wait(mid()) == false);
}
