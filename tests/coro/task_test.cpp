// task<T>: laziness, results, references, exceptions, symmetric transfer depth, frames.
#include <doctest/doctest.h>

#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "lifetime.hpp"

using corio_test::lifetime;

namespace {

corio::task<int> constant(int v) { co_return v; }

corio::task<int> add_children(int a, int b) {
  const int x = co_await constant(a);
  const int y = co_await constant(b);
  co_return x + y;
}

corio::task<int> nested(int depth) {
  if (depth == 0) co_return 0;
  co_return 1 + co_await nested(depth - 1);
}

corio::task<void> throws_runtime_error(const char* what) {
  throw std::runtime_error(what);
  co_return;
}

}  // namespace

TEST_CASE("a task does not start until it is awaited") {
  std::vector<std::string> log;
  auto make = [&]() -> corio::task<void> {
    log.push_back("body");
    co_return;
  };
  auto t = make();
  log.push_back("created");
  CHECK(!t.done());
  corio::sync_wait(t);
  log.push_back("awaited");
  CHECK(t.done());
  CHECK(log == std::vector<std::string>{"created", "body", "awaited"});
}

TEST_CASE("awaiting child tasks returns their values in order") {
  CHECK(corio::sync_wait(add_children(40, 2)) == 42);
}

TEST_CASE("a task can return a move-only value") {
  auto make = []() -> corio::task<std::unique_ptr<int>> { co_return std::make_unique<int>(7); };
  auto outer = [&]() -> corio::task<int> {
    std::unique_ptr<int> p = co_await make();
    co_return *p;
  };
  CHECK(corio::sync_wait(outer()) == 7);
}

TEST_CASE("task<T&> returns a reference to the same object") {
  int target = 1;
  auto ref = [&]() -> corio::task<int&> { co_return target; };
  auto outer = [&]() -> corio::task<void> {
    int& r = co_await ref();
    r = 99;
  };
  corio::sync_wait(outer());
  CHECK(target == 99);
}

TEST_CASE("an exception thrown in a child reaches the awaiting parent with its type and message") {
  auto parent = []() -> corio::task<std::string> {
    try {
      co_await throws_runtime_error("disk on fire");
    } catch (const std::runtime_error& e) {
      co_return std::string("caught: ") + e.what();
    }
    co_return "not caught";
  };
  CHECK(corio::sync_wait(parent()) == "caught: disk on fire");
}

TEST_CASE("an uncaught exception propagates through every level to sync_wait") {
  auto middle = []() -> corio::task<int> {
    co_await throws_runtime_error("deep failure");
    co_return 1;
  };
  auto top = [&]() -> corio::task<int> { co_return co_await middle() + 1; };
  CHECK_THROWS_WITH_AS(corio::sync_wait(top()), "deep failure", std::runtime_error);
}

TEST_CASE("a chain of 1,000,000 nested awaits runs in constant stack") {
  // Symmetric transfer both into the child and back to the parent; without it this
  // overflows an 8 MiB stack by two orders of magnitude. Runs in every build type.
  CHECK(corio::sync_wait(nested(1'000'000)) == 1'000'000);
}

TEST_CASE("awaiting a moved-from task throws logic_error") {
  auto t = constant(1);
  auto moved = std::move(t);
  auto use = [&]() -> corio::task<int> { co_return co_await t; };
  CHECK_THROWS_AS(corio::sync_wait(use()), std::logic_error);
  CHECK(corio::sync_wait(moved) == 1);
}

TEST_CASE("destroying a task that never ran destroys its captured arguments") {
  lifetime::alive = 0;
  {
    auto make = [](lifetime) -> corio::task<void> { co_return; };
    auto t = make(lifetime{});
    CHECK(lifetime::alive == 1);  // the argument copy lives in the frame
  }
  CHECK(lifetime::alive == 0);
}

TEST_CASE("a finished task keeps its result until it is destroyed") {
  auto t = constant(5);
  CHECK(corio::sync_wait(t) == 5);
  CHECK(t.done());
  CHECK(t.valid());
}

TEST_CASE("a task awaited twice as an lvalue yields the stored result again") {
  auto t = constant(3);
  auto twice = [&]() -> corio::task<int> {
    const int a = co_await t;
    const int b = co_await t;  // already done: await_ready is true, no resumption
    co_return a + b;
  };
  CHECK(corio::sync_wait(twice()) == 6);
}
