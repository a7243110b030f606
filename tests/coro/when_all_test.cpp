// when_all: run children concurrently and collect every result.
#include <doctest/doctest.h>

#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>
#include <corio/coro/when_all.hpp>

#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include "test_event.hpp"

using corio::task;

namespace {
task<int> number(int v) { co_return v; }
task<std::string> text(std::string s) { co_return s; }
task<void> nothing() { co_return; }
task<int> fail(const char* what) {
  throw std::runtime_error(what);
  co_return 0;
}
}  // namespace

TEST_CASE("when_all over a pack returns a tuple in argument order") {
  auto body = []() -> task<std::tuple<int, std::string, std::monostate>> {
    co_return co_await corio::when_all(number(1), text("two"), nothing());
  };
  auto [a, b, c] = corio::sync_wait(body());
  CHECK(a == 1);
  CHECK(b == "two");
  CHECK(c == std::monostate{});
}

TEST_CASE("when_all over a vector returns the results in index order") {
  std::vector<task<int>> tasks;
  for (int i = 0; i < 100; ++i) tasks.push_back(number(i * i));
  auto body = [&]() -> task<std::vector<int>> { co_return co_await corio::when_all(std::move(tasks)); };
  const auto got = corio::sync_wait(body());
  REQUIRE(got.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(got[static_cast<std::size_t>(i)] == i * i);
}

TEST_CASE("when_all over an empty vector completes at once") {
  auto body = []() -> task<std::size_t> {
    auto v = co_await corio::when_all(std::vector<task<int>>{});
    co_return v.size();
  };
  CHECK(corio::sync_wait(body()) == 0);
}

TEST_CASE("when_all over void tasks returns void after all ran") {
  int ran = 0;
  auto bump = [&]() -> task<void> {
    ++ran;
    co_return;
  };
  std::vector<task<void>> tasks;
  for (int i = 0; i < 5; ++i) tasks.push_back(bump());
  auto body = [&]() -> task<void> { co_await corio::when_all(std::move(tasks)); };
  corio::sync_wait(body());
  CHECK(ran == 5);
}

TEST_CASE("when_all runs children concurrently: each starts before any finishes") {
  corio_test::test_event gate;
  std::vector<std::string> log;
  auto child = [&](std::string name) -> task<void> {
    log.push_back("start " + name);
    co_await gate;
    log.push_back("end " + name);
  };
  std::thread opener([&] {
    while (gate.waiting() < 2) std::this_thread::yield();
    gate.set();
  });
  auto body = [&]() -> task<void> { co_await corio::when_all(child("a"), child("b")); };
  corio::sync_wait(body());
  opener.join();
  CHECK(log == std::vector<std::string>{"start a", "start b", "end a", "end b"});
}

TEST_CASE("when_all waits for every child, then rethrows the first failure in argument order") {
  corio_test::test_event slow_done;
  bool slow_finished = false;
  auto slow = [&]() -> task<int> {
    co_await slow_done;
    slow_finished = true;
    co_return 3;
  };
  std::thread opener([&] {
    while (slow_done.waiting() < 1) std::this_thread::yield();
    slow_done.set();
  });
  auto body = [&]() -> task<void> { (void)co_await corio::when_all(fail("first"), slow(), fail("second")); };
  CHECK_THROWS_WITH_AS(corio::sync_wait(body()), "first", std::runtime_error);
  opener.join();
  CHECK(slow_finished);
}

TEST_CASE("children completed on many threads all report to the awaiter") {
  constexpr int n = 64;
  std::vector<corio_test::test_event> gates(n);
  auto child = [&](int i) -> task<int> {
    co_await gates[static_cast<std::size_t>(i)];
    co_return i;
  };
  std::vector<task<int>> tasks;
  for (int i = 0; i < n; ++i) tasks.push_back(child(i));
  std::vector<std::thread> setters;
  for (int t = 0; t < 4; ++t)
    setters.emplace_back([&, t] {
      for (int i = t; i < n; i += 4) {
        auto& g = gates[static_cast<std::size_t>(i)];
        while (g.waiting() == 0) std::this_thread::yield();
        g.set();
      }
    });
  auto body = [&]() -> task<int> {
    int sum = 0;
    for (int v : co_await corio::when_all(std::move(tasks))) sum += v;
    co_return sum;
  };
  CHECK(corio::sync_wait(body()) == n * (n - 1) / 2);
  for (auto& s : setters) s.join();
}

TEST_CASE("when_all children borrow the awaiter's stop token") {
  std::stop_source src;
  auto probe = []() -> task<bool> { co_return (co_await corio::this_coro::stop_token).stop_requested(); };
  auto body = [&]() -> task<std::tuple<bool, bool>> { co_return co_await corio::when_all(probe(), probe()); };
  src.request_stop();
  CHECK(corio::sync_wait(body(), src.get_token()) == std::tuple{true, true});
}
