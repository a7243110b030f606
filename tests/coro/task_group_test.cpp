// task_group: children run concurrently, wait() joins them, the first error stops the rest.
#include <doctest/doctest.h>

#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>
#include <corio/coro/task_group.hpp>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_event.hpp"

using corio::task;

TEST_CASE("wait resumes only after every spawned child has finished") {
  corio_test::test_event gate;
  std::atomic<bool> counted{false};
  std::vector<std::string> log;
  auto child = [&](std::string name) -> task<void> {
    co_await gate;
    log.push_back(name);
  };
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn(child("a"));
    g.spawn(child("b"));
    CHECK(g.size() == 2);
    counted = true;
    co_await g.wait();
    log.push_back("joined");
    CHECK(g.size() == 0);
  };
  std::thread opener([&] {
    while (gate.waiting() < 2 || !counted) std::this_thread::yield();
    gate.set();
  });
  corio::sync_wait(body());
  opener.join();
  CHECK(log == std::vector<std::string>{"a", "b", "joined"});
}

TEST_CASE("children that finish synchronously leave nothing to wait for") {
  int ran = 0;
  auto body = [&]() -> task<void> {
    corio::task_group g;
    for (int i = 0; i < 10; ++i)
      g.spawn([&]() -> task<void> {
        ++ran;
        co_return;
      });
    CHECK(g.size() == 0);
    co_await g.wait();
  };
  corio::sync_wait(body());
  CHECK(ran == 10);
}

TEST_CASE("the first failure stops the other children and is rethrown by wait") {
  corio_test::test_event gate;
  std::atomic<int> stopped_children{0};
  std::atomic<bool> failure_spawned{false};
  auto patient = [&](std::stop_token st) -> task<void> {
    co_await gate;
    if (st.stop_requested()) ++stopped_children;
  };
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn(patient);
    g.spawn(patient);
    g.spawn([]() -> task<void> {
      throw std::runtime_error("child 3 failed");
      co_return;
    });
    CHECK(g.get_stop_token().stop_requested());
    failure_spawned = true;
    co_await g.wait();
  };
  std::thread opener([&] {
    // Open only after the failure, so the patient children wake to a requested stop.
    while (gate.waiting() < 2 || !failure_spawned) std::this_thread::yield();
    gate.set();
  });
  CHECK_THROWS_WITH_AS(corio::sync_wait(body()), "child 3 failed", std::runtime_error);
  opener.join();
  CHECK(stopped_children == 2);
}

TEST_CASE("only the first of several failures is rethrown") {
  auto body = []() -> task<void> {
    corio::task_group g;
    for (const char* what : {"first", "second", "third"})
      g.spawn([what]() -> task<void> {
        throw std::logic_error(what);
        co_return;
      });
    co_await g.wait();
  };
  CHECK_THROWS_WITH_AS(corio::sync_wait(body()), "first", std::logic_error);
}

TEST_CASE("children see the group's token through the ambient stop token") {
  bool seen = false;
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.request_stop();
    g.spawn([&]() -> task<void> { seen = (co_await corio::this_coro::stop_token).stop_requested(); });
    co_await g.wait();
  };
  corio::sync_wait(body());
  CHECK(seen);
}

TEST_CASE("a stop request on the waiter is forwarded to the group's children") {
  std::stop_source outer;
  corio_test::test_event woken;
  bool child_saw_stop = false;
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&](std::stop_token st) -> task<void> {
      // Wakes only when the group's own token is stopped: if the waiter's stop were not
      // forwarded, this child would never finish (and the test would time out).
      std::stop_callback wake(st, [&] { woken.set(); });
      co_await woken;
      child_saw_stop = st.stop_requested();
    });
    co_await g.wait();
  };
  std::thread stopper([&] {
    while (woken.waiting() == 0) std::this_thread::yield();
    outer.request_stop();
  });
  corio::sync_wait(body(), outer.get_token());
  stopper.join();
  CHECK(child_saw_stop);
}

TEST_CASE("a spawned lambda's captures stay alive until the child finishes") {
  corio_test::test_event gate;
  std::string seen;
  auto body = [&]() -> task<void> {
    corio::task_group g;
    {
      std::string local = "captured by value";
      g.spawn([&gate, &seen, local]() -> task<void> {
        co_await gate;
        seen = local;  // the lambda object, not just `local`, must still exist here
      });
    }
    co_await g.wait();
  };
  std::thread opener([&] {
    while (gate.waiting() == 0) std::this_thread::yield();
    gate.set();
  });
  corio::sync_wait(body());
  opener.join();
  CHECK(seen == "captured by value");
}

TEST_CASE("a spawned task<void> object runs and is joined") {
  int ran = 0;
  auto bump = [&]() -> task<void> {
    ++ran;
    co_return;
  };
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn(bump());
    co_await g.wait();
  };
  corio::sync_wait(body());
  CHECK(ran == 1);
}

TEST_CASE("a group can be waited on again after more spawns") {
  int ran = 0;
  auto body = [&]() -> task<void> {
    corio::task_group g;
    auto bump = [&]() -> task<void> {
      ++ran;
      co_return;
    };
    g.spawn(bump);
    co_await g.wait();
    g.spawn(bump);
    g.spawn(bump);
    co_await g.wait();
  };
  corio::sync_wait(body());
  CHECK(ran == 3);
}

TEST_CASE("1,000 children finishing on other threads are all joined") {
  constexpr int n = 1000;
  std::vector<corio_test::test_event> gates(n);
  std::atomic<int> done{0};
  auto body = [&]() -> task<void> {
    corio::task_group g;
    for (int i = 0; i < n; ++i)
      g.spawn([&, i]() -> task<void> {
        co_await gates[static_cast<std::size_t>(i)];
        ++done;
      });
    co_await g.wait();
  };
  std::vector<std::thread> setters;
  for (int t = 0; t < 2; ++t)
    setters.emplace_back([&, t] {
      for (int i = t; i < n; i += 2) {
        auto& gate = gates[static_cast<std::size_t>(i)];
        while (gate.waiting() == 0) std::this_thread::yield();
        gate.set();
      }
    });
  corio::sync_wait(body());
  for (auto& s : setters) s.join();
  CHECK(done == n);
}
