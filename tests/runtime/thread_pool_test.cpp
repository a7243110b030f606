// thread_pool / offload / thread_future: values and exceptions come back, the coroutine
// resumes on its loop's thread, jobs run concurrently, blocking work does not block the
// loop; submit from plain code has concurrent.futures' get, wait_for, cancel, map,
// as_completed, done callbacks and shutdown(wait, cancel_futures).
#include <doctest/doctest.h>

#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task_group.hpp>
#include <corio/coro/when_all.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/errors.hpp>
#include <corio/runtime/thread.hpp>
#include <corio/runtime/thread_event.hpp>
#include <corio/runtime/thread_pool.hpp>
#include <corio/runtime/thread_timer.hpp>
#include <corio/runtime/timer.hpp>

#include <time.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio::task;
using steady = std::chrono::steady_clock;

namespace {

// Awaits `a` (borrowed: it must outlive the task); the what() of the E it throws, or
// "no exception".
template <class E, class Awaitable>
task<std::string> what_it_throws(Awaitable&& a) {
  try {
    co_await std::forward<Awaitable>(a);
  } catch (const E& e) {
    co_return e.what();
  }
  co_return "no exception";
}

}  // namespace

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
  auto thrower = corio::offload([]() -> int { throw std::runtime_error("disk on fire"); });
  CHECK(lp.run(what_it_throws<std::runtime_error>(std::move(thrower))) == "disk on fire");
}

TEST_CASE("offload handles void, move-only results and functions taking a stop token") {
  corio::loop lp;
  corio::thread_pool pool(2);
  CHECK(pool.size() == 2);
  auto main = [&]() -> task<int> {
    int side = 0;
    co_await pool.offload([&] { side = 3; });
    std::unique_ptr<int> p = co_await pool.offload([] { return std::make_unique<int>(4); });
    bool stoppable = co_await pool.offload([](std::stop_token st) { return st.stop_possible(); });
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
    results[static_cast<std::size_t>(i)] = co_await pool.offload([i] { return i * i; });
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

// --- concurrent.futures parity: submit from plain code ---------------------------------

namespace {

// A task that blocks its pool thread until the test opens the gate.
struct gate {
  corio::thread_event open;
  corio::thread_event entered;
  void pass() {
    entered.set();
    open.wait();
  }
};

// A one-thread pool whose thread is held by a first task until open(): what is
// submitted meanwhile stays queued.
struct blocked_pool {
  gate g;
  corio::thread_pool pool{1};
  corio::thread_future<void> blocker = pool.submit([this] { g.pass(); });
  blocked_pool() { g.entered.wait(); }
  ~blocked_pool() { open(); }
  void open() {
    g.open.set();
    blocker.wait();
  }
};

}  // namespace

TEST_CASE("submit from plain code runs fn with its arguments on a named pool thread and get returns the value") {
  corio::thread_pool pool(2, "worker");
  std::string name;
  auto f = pool.submit(
      [&](int a, const std::string& b) {
        name = corio::current_thread_name();
        return b + std::to_string(a);
      },
      7, std::string("x"));
  CHECK(f.valid());
  CHECK(f.get() == "x7");
  CHECK((name == "worker_0" || name == "worker_1"));
  CHECK(f.ready());
}

TEST_CASE("a task's callable and arguments are released once it ran or was cancelled, though its future lives on") {
  auto held = std::make_shared<int>(1);
  corio::thread_pool pool(1);
  auto ran = pool.submit([held](const std::shared_ptr<int>& arg) { return *held + *arg; }, held);
  CHECK(ran.get() == 2);
  CHECK(held.use_count() == 1);  // the capture and the argument went before get() returned

  blocked_pool blocked;
  auto queued = blocked.pool.submit([held] {});
  CHECK(held.use_count() == 2);
  CHECK(queued.cancel());
  blocked.open();
  blocked.pool.submit([] {}).get();  // FIFO: the worker passed over the cancelled task first
  CHECK(held.use_count() == 1);
  CHECK(queued.cancelled());

  pool.submit([held] {});  // a dropped future: the queue alone keeps the task, then nothing
  pool.shutdown();
  CHECK(held.use_count() == 1);
}

TEST_CASE("get rethrows the task's exception once, then a second get throws std::logic_error") {
  corio::thread_pool pool(1);
  auto f = pool.submit([]() -> int { throw std::out_of_range("index 9 of 3"); });
  CHECK_THROWS_WITH_AS(f.get(), "index 9 of 3", std::out_of_range);
  CHECK_THROWS_WITH_AS(f.get(), "corio::thread_future::get: the result was already taken", std::logic_error);
  corio::thread_future<int> moved_from = std::move(f);
  CHECK_THROWS_AS(f.get(), std::logic_error);  // NOLINT(bugprone-use-after-move): the point
}

TEST_CASE("wait_for and ready report a running task as not done until it finishes") {
  corio::thread_pool pool(1);
  gate g;
  auto f = pool.submit([&] {
    g.pass();
    return 5;
  });
  g.entered.wait();
  CHECK(f.running());
  CHECK_FALSE(f.ready());
  CHECK_FALSE(f.wait_for(20ms));
  g.open.set();
  CHECK(f.wait_for(10s));
  CHECK(f.ready());
  CHECK_FALSE(f.running());
  CHECK(f.get() == 5);
}

TEST_CASE("cancel of a queued task returns true, it never runs, and get throws operation_cancelled") {
  blocked_pool blocked;
  corio::thread_pool& pool = blocked.pool;
  std::atomic<int> ran{0};
  auto queued = pool.submit([&] { ++ran; });
  CHECK_FALSE(queued.ready());
  CHECK(queued.cancel());
  CHECK(queued.cancel());  // Python: cancelling a cancelled future is True again
  CHECK(queued.cancelled());
  CHECK(queued.ready());
  CHECK(queued.wait_for(0ms));
  CHECK_THROWS_WITH_AS(queued.get(), "corio::thread_future::get: the task was cancelled before it started: Operation canceled",
                       corio::operation_cancelled);
  blocked.open();
  // The pool passed over the cancelled task: a task queued after it runs, it does not.
  CHECK(pool.submit([&] { return ran.load(); }).get() == 0);
}

TEST_CASE("cancel of a running task returns false and requests its stop token; a finished one returns false") {
  corio::thread_pool pool(1);
  corio::thread_event entered;
  auto running = pool.submit([&](std::stop_token st) {
    entered.set();
    while (!st.stop_requested()) std::this_thread::sleep_for(1ms);
    return std::string("stopped early");
  });
  entered.wait();
  CHECK_FALSE(running.cancel());
  CHECK_FALSE(running.cancelled());
  CHECK(running.get() == "stopped early");
  auto finished = pool.submit([] { return 1; });
  finished.wait();
  CHECK_FALSE(finished.cancel());
  CHECK(finished.get() == 1);
}

TEST_CASE("shutdown with cancel_futures cancels every queued task and lets the running one finish") {
  std::atomic<int> ran{0};
  gate g;
  corio::thread_pool pool(1);
  auto running = pool.submit([&] {
    g.pass();
    return 42;
  });
  g.entered.wait();
  std::vector<corio::thread_future<void>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.submit([&] { ++ran; }));
  pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
  for (auto& f : queued) CHECK(f.cancelled());
  CHECK_THROWS_AS(pool.submit([] {}), std::logic_error);
  g.open.set();
  CHECK(running.get() == 42);
  pool.shutdown();  // joins
  CHECK(ran == 0);
  for (auto& f : queued) CHECK_THROWS_AS(f.get(), corio::operation_cancelled);
}

TEST_CASE("shutdown without wait returns at once; the queued tasks still run and the destructor joins") {
  std::atomic<int> ran{0};
  gate g;
  std::vector<corio::thread_future<void>> futures;
  {
    corio::thread_pool pool(1);
    futures.push_back(pool.submit([&] {
      g.pass();
      ++ran;
    }));
    for (int i = 0; i < 3; ++i) futures.push_back(pool.submit([&] { ++ran; }));
    g.entered.wait();
    pool.shutdown(/*wait=*/false);
    CHECK(ran == 0);  // returned while the first task still blocks
    g.open.set();
  }
  CHECK(ran == 4);
  for (auto& f : futures) CHECK(f.ready());
}

TEST_CASE("the destructor waits for every task submitted from plain code (Python's with block)") {
  std::atomic<int> ran{0};
  std::vector<corio::thread_future<void>> futures;
  {
    corio::thread_pool pool(2);
    for (int i = 0; i < 10; ++i)
      futures.push_back(pool.submit([&] {
        std::this_thread::sleep_for(2ms);
        ++ran;
      }));
  }
  CHECK(ran == 10);
  for (auto& f : futures) CHECK(f.ready());
}

TEST_CASE("map yields the results in input order even when later items finish first") {
  corio::thread_pool pool(4);
  const std::vector<int> items{40, 30, 20, 10, 0};
  std::vector<int> got;
  for (int r : pool.map(
           [](int ms) {
             std::this_thread::sleep_for(std::chrono::milliseconds(ms));
             return ms * 2;
           },
           items))
    got.push_back(r);
  CHECK(got == std::vector<int>{80, 60, 40, 20, 0});
}

TEST_CASE("map rethrows a task's exception when iteration reaches it, after the earlier results") {
  corio::thread_pool pool(2);
  const std::vector<int> items{1, 2, 3, 4};
  std::vector<int> got;
  auto results = pool.map(
      [](int i) {
        if (i == 3) throw std::runtime_error("item 3 is bad");
        return i * 10;
      },
      items);
  try {
    for (int r : results) got.push_back(r);
    FAIL("no exception");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "item 3 is bad");
  }
  CHECK(got == std::vector<int>{10, 20});
}

TEST_CASE("as_completed yields each future once, in the order the tasks finish") {
  corio::thread_pool pool(3);
  std::vector<corio::thread_event> release(3);
  std::vector<corio::thread_future<int>> futures;
  for (int i = 0; i < 3; ++i)
    futures.push_back(pool.submit([&release, i] {
      release[static_cast<std::size_t>(i)].wait();
      return i;
    }));
  auto done = corio::as_completed(futures);
  std::vector<int> order;
  for (std::size_t i : {2u, 0u, 1u}) {
    release[i].set();
    std::optional<corio::thread_future<int>*> f = done.next();
    REQUIRE(f.has_value());
    order.push_back((*f)->get());
  }
  CHECK(order == std::vector<int>{2, 0, 1});
  CHECK_FALSE(done.next().has_value());
}

TEST_CASE("add_done_callback runs when the task finishes, and at once on a future already done") {
  corio::thread_pool pool(1);
  gate g;
  auto f = pool.submit([&] { g.pass(); });
  std::atomic<int> calls{0};
  std::thread::id called_on;
  corio::thread_event called;
  f.add_done_callback([&] {
    called_on = std::this_thread::get_id();
    ++calls;
    called.set();
  });
  g.entered.wait();
  CHECK(calls == 0);
  g.open.set();
  REQUIRE(called.wait_for(10s));  // wait() may return before the callbacks ran, as in Python
  CHECK(calls == 1);
  CHECK(called_on != std::this_thread::get_id());  // the pool thread that finished it
  f.add_done_callback([&] {
    called_on = std::this_thread::get_id();
    ++calls;
  });
  CHECK(calls == 2);
  CHECK(called_on == std::this_thread::get_id());
}

TEST_CASE("a future cancelled while a coroutine awaits it resumes the coroutine with operation_cancelled") {
  corio::loop lp;
  blocked_pool blocked;
  auto queued = blocked.pool.submit([] { return 1; });
  auto main = [&]() -> task<std::string> {
    corio::thread_timer canceller(20ms, [&] { queued.cancel(); });
    canceller.start();
    co_return co_await what_it_throws<corio::operation_cancelled>(queued);
  };
  CHECK(lp.run(main()) == "corio::thread_future::co_await: the task was cancelled before it started: Operation canceled");
}

TEST_CASE("an offload still queued at shutdown with cancel_futures resumes with operation_cancelled") {
  corio::loop lp;
  blocked_pool blocked;
  corio::thread_pool& pool = blocked.pool;
  std::atomic<int> ran{0};
  std::string caught;
  auto waiter = [&]() -> task<void> {
    try {
      co_await pool.offload([&] { ++ran; });
    } catch (const corio::operation_cancelled& e) {
      caught = e.what();
    }
  };
  auto main = [&]() -> task<void> {
    corio::task_group group;
    group.spawn(waiter());  // runs to its suspension: the job is queued behind the blocker
    pool.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    blocked.open();
    co_await group.wait();
  };
  lp.run(main());
  CHECK(ran == 0);
  CHECK(caught == "corio::thread_pool: the job was cancelled by shutdown(cancel_futures) before it started: Operation canceled");
}

TEST_CASE("cancel racing with the pool taking the task: each task either ran once or was cancelled, never both") {
  constexpr int n = 2000;
  std::vector<std::atomic<int>> ran(n);
  std::vector<corio::thread_future<int>> futures;
  std::atomic<int> cancels_won{0};
  {
    corio::thread_pool pool(2);
    for (int i = 0; i < n; ++i)
      futures.push_back(pool.submit([&ran, i] {
        // A few microseconds each, so the canceller, working from the back, meets
        // queued, starting and finished tasks.
        const auto until = steady::now() + 5us;
        while (steady::now() < until) {
        }
        ++ran[static_cast<std::size_t>(i)];
        return i;
      }));
    corio::thread canceller([&] {
      for (int i = n - 1; i >= 0; --i) cancels_won += futures[static_cast<std::size_t>(i)].cancel() ? 1 : 0;
    });
    canceller.start();
    canceller.join();
  }
  int cancelled = 0;
  for (int i = 0; i < n; ++i) {
    auto& f = futures[static_cast<std::size_t>(i)];
    REQUIRE(f.ready());
    if (f.cancelled()) {
      ++cancelled;
      CHECK(ran[static_cast<std::size_t>(i)] == 0);
      CHECK_THROWS_AS(f.get(), corio::operation_cancelled);
    } else {
      CHECK(ran[static_cast<std::size_t>(i)] == 1);
      CHECK(f.get() == i);
    }
  }
  CHECK(cancelled == cancels_won);
  MESSAGE(cancelled << " of " << n << " tasks cancelled before they started");
}

TEST_CASE("as_completed also yields a future cancelled before it ran") {
  blocked_pool blocked;
  std::vector<corio::thread_future<int>> futures;
  futures.push_back(blocked.pool.submit([] { return 1; }));
  futures.push_back(blocked.pool.submit([] { return 2; }));
  auto done = corio::as_completed(futures);
  CHECK(futures[1].cancel());
  std::optional<corio::thread_future<int>*> first = done.next();
  REQUIRE(first.has_value());
  CHECK(*first == &futures[1]);
  CHECK((*first)->cancelled());
  blocked.open();
  std::optional<corio::thread_future<int>*> second = done.next();
  REQUIRE(second.has_value());
  CHECK((*second)->get() == 1);
  CHECK_FALSE(done.next().has_value());
}

TEST_CASE("coroutines on two loops in two threads await futures of one pool, each resumed on its own loop") {
  corio::thread_pool pool(2);
  auto run_loop = [&](int base, int& sum, bool& all_on_own_thread) {
    corio::loop lp;
    const auto own = std::this_thread::get_id();
    auto main = [&]() -> task<void> {
      all_on_own_thread = true;
      for (int i = 0; i < 200; ++i) {
        sum += co_await pool.submit([](int v) { return v; }, base + i);
        all_on_own_thread = all_on_own_thread && std::this_thread::get_id() == own;
      }
    };
    lp.run(main());
  };
  int sum_a = 0, sum_b = 0;
  bool own_a = false, own_b = false;
  corio::thread a("LoopA", run_loop, 0, std::ref(sum_a), std::ref(own_a));
  corio::thread b("LoopB", run_loop, 1000, std::ref(sum_b), std::ref(own_b));
  a.start();
  b.start();
  a.join();
  b.join();
  CHECK(sum_a == 199 * 200 / 2);
  CHECK(sum_b == 1000 * 200 + 199 * 200 / 2);
  CHECK(own_a);
  CHECK(own_b);
}

// Idle workers poll the queue for 50 us before they sleep, get() polls the result as long
// (thread_pool.hpp, "Idle workers"): these check the hand-offs between polling and
// sleeping. Every wait has its own deadline, so a lost wake-up fails in seconds.

TEST_CASE("a submit to a pool whose workers have all gone to sleep wakes one and runs") {
  corio::thread_pool pool(2);
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(2ms);  // 40 times the polling budget: both workers sleep
    auto f = pool.submit([](int x) { return x * 2; }, round);
    REQUIRE_MESSAGE(f.wait_for(10s), "round " << round << ": the task never ran (a lost wake-up)");
    CHECK(f.get() == round * 2);
  }
}

TEST_CASE("get on a task that outlasts the polling budget sleeps and still returns its value") {
  corio::thread_pool pool(2);
  const auto start = steady::now();
  auto f = pool.submit([] {
    std::this_thread::sleep_for(20ms);
    return 42;
  });
  CHECK(f.get() == 42);
  CHECK(steady::now() - start >= 20ms);
}

TEST_CASE("two tasks submitted while one worker polls and the other sleeps run at the same time") {
  // After a submit + get, the worker that ran it polls and the other one sleeps. The
  // submits of a and b may skip the wake-up because of the poller; the poller, once it
  // took a, must wake the sleeper for b (a and b each wait for the other to start).
  corio::thread_pool pool(2);
  for (int round = 0; round < 200; ++round) {
    REQUIRE(pool.submit([] { return 1; }).get() == 1);
    std::atomic<int> started{0};
    auto meet = [&started] {
      started.fetch_add(1);
      const auto deadline = steady::now() + 5s;
      while (started.load() < 2)
        if (steady::now() > deadline) return false;
      return true;
    };
    auto a = pool.submit(meet);
    auto b = pool.submit(meet);
    REQUIRE_MESSAGE(a.get(), "round " << round << ": b never started while a ran (the wake-up was not passed on)");
    REQUIRE(b.get());
  }
}

TEST_CASE("100000 submit + get pairs with pauses around the polling budget each return their own value") {
  corio::thread_pool pool(2);
  long long sum = 0;
  constexpr int n = 100000;
  for (int i = 0; i < n; ++i) {
    // Every 1000th pair the submitter idles past the workers' budget (they go to sleep);
    // every 1000th task outlasts the submitter's get() budget (it goes to sleep).
    if (i % 1000 == 500) std::this_thread::sleep_for(100us);
    auto f = pool.submit(
        [](int v) {
          if (v % 1000 == 999) std::this_thread::sleep_for(100us);
          return v;
        },
        i);
    REQUIRE_MESSAGE(f.wait_for(10s), "pair " << i << ": the task never finished (a lost wake-up)");
    const int v = f.get();
    REQUIRE(v == i);
    sum += v;
  }
  CHECK(sum == static_cast<long long>(n) * (n - 1) / 2);
}

TEST_CASE("batches submitted from two threads at once all complete with their own values") {
  corio::thread_pool pool(2);
  // Returns the sum of the results minus `base`, or -1 when a task did not finish in time
  // (no doctest assertion off the main thread).
  auto submitter = [&pool](int base) -> long long {
    long long sum = 0;
    for (int round = 0; round < 50; ++round) {
      std::vector<corio::thread_future<int>> futures;
      for (int i = 0; i < 200; ++i) futures.push_back(pool.submit([](int v) { return v; }, base + i));
      for (auto& f : futures) {
        if (!f.wait_for(10s)) return -1;
        sum += f.get() - base;
      }
      if (round % 10 == 0) std::this_thread::sleep_for(200us);  // let the workers sleep
    }
    return sum;
  };
  long long sum_b = 0;
  std::thread other([&] { sum_b = submitter(1'000'000); });
  const long long sum_a = submitter(0);
  other.join();
  CHECK(sum_a == 50LL * (199 * 200 / 2));
  CHECK(sum_b == 50LL * (199 * 200 / 2));
}

TEST_CASE("submits racing with shutdown(cancel_futures) each either throw, run once, or are cancelled: none is lost") {
  for (int round = 0; round < 200; ++round) {
    corio::thread_pool pool(2);
    std::atomic<int> ran{0};
    int threw = 0;
    std::vector<corio::thread_future<void>> futures;
    std::thread closer([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(round % 50));
      pool.shutdown(false, round % 2 == 0);
    });
    for (int i = 0; i < 2000; ++i) {
      try {
        futures.push_back(pool.submit([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }));
      } catch (const std::logic_error& e) {
        REQUIRE(std::string(e.what()) == "corio::thread_pool: submit after shutdown()");
        ++threw;
      }
    }
    closer.join();
    int cancelled = 0;
    for (auto& f : futures) {
      REQUIRE_MESSAGE(f.wait_for(10s), "round " << round << ": a task accepted before shutdown never finished");
      if (f.cancelled()) ++cancelled;
    }
    REQUIRE(static_cast<int>(futures.size()) + threw == 2000);
    REQUIRE(ran.load() + cancelled == static_cast<int>(futures.size()));
    if (round % 2 == 1) REQUIRE(cancelled == 0);  // without cancel_futures every accepted task runs
  }
}

TEST_CASE("an idle pool stops polling after its budget and then uses no CPU") {
  corio::thread_pool pool(2);
  REQUIRE(pool.submit([] { return 1; }).get() == 1);
  std::this_thread::sleep_for(20ms);  // far past the 50 us budget: both workers sleep
  auto process_cpu = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  const auto before = process_cpu();
  std::this_thread::sleep_for(500ms);
  const auto used = process_cpu() - before;
  // Sleeping threads use none; a worker that kept polling would use a large share of a
  // core (less when the machine is busy, since it yields every 32 polls, but milliseconds).
  CHECK_MESSAGE(used < 5ms, "the idle pool used " << std::chrono::duration<double, std::milli>(used).count()
                                                 << " ms of CPU in 500 ms");
}
