// when_any: the first child to finish wins; the others are asked to stop and awaited.
#include <doctest/doctest.h>

#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>
#include <corio/coro/when_any.hpp>

#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "test_event.hpp"

using corio::task;

namespace {

// Parks until `gate` opens, then reports whether it was asked to stop meanwhile.
task<std::string> loser(corio_test::test_event& gate, std::vector<std::string>& log) {
  co_await gate;
  const bool stopped = (co_await corio::this_coro::stop_token).stop_requested();
  log.push_back(stopped ? "loser saw stop" : "loser ran on");
  co_return "loser";
}

}  // namespace

TEST_CASE("when_any returns the first child to finish, as a variant indexed by position") {
  corio_test::test_event gate;
  std::vector<std::string> log;
  auto fast = []() -> task<int> { co_return 7; };
  // fast() goes first, so the stop is requested before the loser even parks.
  auto body = [&]() -> task<std::variant<int, std::string>> {
    co_return co_await corio::when_any(fast(), loser(gate, log));
  };
  std::thread opener([&] {
    while (gate.waiting() == 0) std::this_thread::yield();
    gate.set();
  });
  auto r = corio::sync_wait(body());
  opener.join();
  REQUIRE(r.index() == 0);
  CHECK(std::get<0>(r) == 7);
  // The loser was awaited before when_any returned, and saw the stop request.
  CHECK(log == std::vector<std::string>{"loser saw stop"});
}

TEST_CASE("when_any over a vector reports the winning index and value") {
  corio_test::test_event never;
  std::vector<std::string> log;
  std::vector<task<std::string>> tasks;
  tasks.push_back(loser(never, log));
  tasks.push_back([]() -> task<std::string> { co_return "winner"; }());
  tasks.push_back(loser(never, log));
  std::thread opener([&] {
    while (never.waiting() < 2) std::this_thread::yield();
    never.set();
  });
  auto body = [&]() -> task<corio::when_any_result<std::string>> {
    co_return co_await corio::when_any(std::move(tasks));
  };
  auto r = corio::sync_wait(body());
  opener.join();
  CHECK(r.index == 1);
  CHECK(r.value == "winner");
  CHECK(log == std::vector<std::string>{"loser saw stop", "loser saw stop"});
}

TEST_CASE("when_any rethrows when the winner failed") {
  auto boom = []() -> task<int> {
    throw std::range_error("first to fail");
    co_return 0;
  };
  auto ok = []() -> task<int> { co_return 1; };
  auto body = [&]() -> task<void> { (void)co_await corio::when_any(boom(), ok()); };
  CHECK_THROWS_WITH_AS(corio::sync_wait(body()), "first to fail", std::range_error);
}

TEST_CASE("when_any over an empty vector throws invalid_argument") {
  CHECK_THROWS_AS((void)corio::when_any(std::vector<task<int>>{}), std::invalid_argument);
}

TEST_CASE("when_any with void children reports only the index") {
  auto v = []() -> task<void> { co_return; };
  std::vector<task<void>> tasks;
  tasks.push_back(v());
  tasks.push_back(v());
  auto body = [&]() -> task<std::size_t> { co_return (co_await corio::when_any(std::move(tasks))).index; };
  CHECK(corio::sync_wait(body()) == 0);
}

TEST_CASE("a stop request on the awaiter reaches when_any's children") {
  std::stop_source outer;
  corio_test::test_event a_gate, b_gate;
  std::vector<std::string> log;
  auto body = [&]() -> task<void> { (void)co_await corio::when_any(loser(a_gate, log), loser(b_gate, log)); };
  std::thread opener([&] {
    while (a_gate.waiting() == 0 || b_gate.waiting() == 0) std::this_thread::yield();
    outer.request_stop();
    a_gate.set();
    b_gate.set();
  });
  corio::sync_wait(body(), outer.get_token());
  opener.join();
  CHECK(log == std::vector<std::string>{"loser saw stop", "loser saw stop"});
}
