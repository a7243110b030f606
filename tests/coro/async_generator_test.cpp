// async_generator<Y>: co_await between yields, consumer-side co_await next().
#include <doctest/doctest.h>

#include <corio/coro/async_generator.hpp>
#include <corio/coro/stop.hpp>
#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "abandoned_consumer.hpp"
#include "test_event.hpp"

using corio::async_generator;
using corio::task;

namespace {

task<int> value_later(int v) { co_return v; }

async_generator<int> squares(int n) {
  for (int i = 1; i <= n; ++i) {
    const int v = co_await value_later(i);
    co_yield v * v;
  }
}

task<std::vector<int>> collect(async_generator<int> g) {
  std::vector<int> out;
  while (auto v = co_await g.next()) out.push_back(*v);
  co_return out;
}

}  // namespace

TEST_CASE("an async generator awaits between yields and delivers values in order") {
  CHECK(corio::sync_wait(collect(squares(4))) == std::vector<int>{1, 4, 9, 16});
}

TEST_CASE("an async generator is lazy until the first next") {
  int runs = 0;
  auto make = [&]() -> async_generator<int> {
    ++runs;
    co_yield 1;
  };
  auto g = make();
  CHECK(runs == 0);
  auto first = [&]() -> task<int> { co_return *co_await g.next(); };
  CHECK(corio::sync_wait(first()) == 1);
  CHECK(runs == 1);
}

TEST_CASE("an async generator suspended on an event resumes when another thread sets it") {
  corio_test::test_event ready;
  auto make = [&]() -> async_generator<std::string> {
    co_yield "before";
    co_await ready;
    co_yield "after";
  };
  auto g = make();
  std::thread setter([&] {
    while (ready.waiting() == 0) std::this_thread::yield();
    ready.set();
  });
  auto body = [&]() -> task<std::vector<std::string>> {
    std::vector<std::string> out;
    while (auto v = co_await g.next()) out.push_back(*v);
    co_return out;
  };
  auto got = corio::sync_wait(body());
  setter.join();
  CHECK(got == std::vector<std::string>{"before", "after"});
}

TEST_CASE("an exception in an async generator is rethrown by the awaiting next") {
  auto make = []() -> async_generator<int> {
    co_yield 1;
    throw std::runtime_error("stream reset");
  };
  auto g = make();
  auto body = [&]() -> task<std::string> {
    std::string log;
    try {
      while (auto v = co_await g.next()) log += std::to_string(*v) + ";";
    } catch (const std::runtime_error& e) {
      log += e.what();
    }
    co_return log;
  };
  CHECK(corio::sync_wait(body()) == "1;stream reset");
}

TEST_CASE("next on a finished async generator returns empty again") {
  auto g = squares(1);
  auto body = [&]() -> task<int> {
    int n = 0;
    while (co_await g.next()) ++n;
    if (co_await g.next()) n += 100;
    co_return n;
  };
  CHECK(corio::sync_wait(body()) == 1);
  CHECK(g.done());
}

TEST_CASE("a second next while one is pending throws generator_misuse") {
  corio_test::test_event never_set;
  auto make = [&]() -> async_generator<int> {
    co_await never_set;
    co_yield 1;
  };
  auto g = make();
  auto first = [&]() -> task<void> { (void)co_await g.next(); };
  auto second = [&]() -> task<void> { (void)co_await g.next(); };
  auto pending = first();
  // Drive `pending` until it parks on the event, then race a second next().
  std::thread driver([&] { corio::sync_wait(pending); });
  while (never_set.waiting() == 0) std::this_thread::yield();
  CHECK_THROWS_AS(corio::sync_wait(second()), corio::generator_misuse);
  never_set.set();  // lets the first consumer finish so nothing dangles
  driver.join();
  CHECK(pending.done());
}

TEST_CASE("the async generator body sees the consumer's stop token") {
  std::stop_source source;
  auto make = []() -> async_generator<bool> {
    std::stop_token st = co_await corio::this_coro::stop_token;
    co_yield st.stop_requested();
  };
  auto g = make();
  auto body = [&]() -> task<bool> { co_return *co_await g.next(); };
  source.request_stop();
  CHECK(corio::sync_wait(body(), source.get_token()) == true);
}

TEST_CASE("a 100,000-step async generator chain runs in constant stack") {
  auto counting = []() -> async_generator<int> {
    for (int i = 0; i < 100'000; ++i) co_yield co_await value_later(i);
  };
  auto g = counting();
  auto body = [&]() -> task<long long> {
    long long n = 0;
    while (co_await g.next()) ++n;
    co_return n;
  };
  CHECK(corio::sync_wait(body()) == 100'000);
}

namespace {

struct counted {
  int* destroyed;
  ~counted() { ++*destroyed; }
};

}  // namespace

TEST_CASE("destroying an async generator whose body awaits an operation orphans the frame until the body yields") {
  corio_test::test_event operation;  // stands for an I/O operation whose completion resumes the body
  int destroyed = 0, resumed = 0, after_yield = 0;
  auto make = [&]() -> async_generator<int> {
    const counted local{&destroyed};
    co_await operation;
    ++resumed;
    co_yield 1;
    ++after_yield;
  };
  corio_test::abandoned_consumer c = corio_test::first_of(make);
  CHECK(operation.waiting() == 1);
  c.handle.destroy();  // destroys g with its body suspended in the operation
  CHECK(destroyed == 0);  // orphaned, not freed: the operation still points at the frame
  operation.set();       // the completion: resumes the orphan, which frees itself at co_yield
  CHECK(resumed == 1);
  CHECK(destroyed == 1);
  CHECK(after_yield == 0);
}

TEST_CASE("an orphaned async generator body sees a stopped token, so its next operation is cancelled") {
  corio_test::test_event operation;
  int destroyed = 0;
  bool stopped_seen = false;
  auto make = [&]() -> async_generator<int> {
    const counted local{&destroyed};
    co_await operation;
    stopped_seen = (co_await corio::this_coro::stop_token).stop_requested();
    co_yield 1;
  };
  corio_test::abandoned_consumer c = corio_test::first_of(make);
  c.handle.destroy();
  operation.set();
  CHECK(stopped_seen);
  CHECK(destroyed == 1);
}

TEST_CASE("an orphaned async generator that ends with an exception frees its frame at the end") {
  corio_test::test_event operation;
  int destroyed = 0;
  auto make = [&]() -> async_generator<int> {
    const counted local{&destroyed};
    co_await operation;
    throw std::runtime_error("nobody will see this");
    co_yield 1;
  };
  corio_test::abandoned_consumer c = corio_test::first_of(make);
  c.handle.destroy();
  operation.set();
  CHECK(destroyed == 1);
}
