// corio::executor: key routing to worker processes, values and errors across the rings,
// concurrent coroutine calls in one worker, broadcast, a long run of submits, backpressure,
// a worker killed under load, shutdown draining, and the destructor's policy.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <corio/coro/task_group.hpp>
#include <corio/coro/when_all.hpp>
#include <corio/ipc/executor.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio::task;
using corio_test::process_gone;

namespace {

int my_pid() { return static_cast<int>(::getpid()); }
template <class F>
void run_in_loop(F& body) {
  corio::loop lp;
  lp.run(body());
}

// x * x; for x == 57 it first SIGKILLs its own worker, once: the marker file records that
// the kill happened, so a retry of the call returns normally.
int square_dying_once_at_57(std::string marker, int x) {
  if (x == 57) {
    const int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0) ::kill(::getpid(), SIGKILL);
  }
  return x * x;
}

// 200 calls over 2 workers, item 57 killing its worker once. Returns how many calls
// failed with worker_lost (the item-57 call among them, when failed_57 is set); every
// other call must bring back its square.
int run_200_with_a_kill(unsigned retries, bool& failed_57) {
  const std::string marker = "/tmp/corio_executor_retry_" + std::to_string(::getpid());
  ::unlink(marker.c_str());
  corio::executor ex({.workers = 2, .retries = retries});
  int lost = 0;
  failed_57 = false;
  auto body = [&]() -> task<void> {
    auto one = [&](int i) -> task<void> {
      try {
        const int v = co_await ex.submit(i, &square_dying_once_at_57, marker, i);
        CHECK(v == i * i);
      } catch (const corio::worker_lost&) {
        ++lost;
        if (i == 57) failed_57 = true;
      }
    };
    auto all = [&]() -> task<void> {
      std::vector<task<void>> calls;
      for (int i = 0; i < 200; ++i) calls.push_back(one(i));
      co_await corio::when_all(std::move(calls));
    };
    co_await corio::with_timeout(all(), 20s);
    co_await corio::with_timeout(ex.shutdown(), 10s);
  };
  run_in_loop(body);
  CHECK(::unlink(marker.c_str()) == 0);  // the kill did happen
  return lost;
}

// State kept in a worker process: 1, 2, 3, ... per process.
int bump() {
  static int calls = 0;
  return ++calls;
}

}  // namespace

TEST_CASE("the same key always reaches the same worker and different keys spread over all workers") {
  corio::executor ex({.workers = 3});
  REQUIRE(ex.size() == 3);
  auto body = [&]() -> task<void> {
    std::set<int> seen;
    for (int round = 0; round < 2; ++round) {
      for (int key = 0; key < 12; ++key) {
        const int pid = co_await ex.submit(key, &my_pid);
        CHECK(ex.worker_of(key) == static_cast<std::size_t>(key % 3));
        CHECK(pid == ex.worker_pid(static_cast<std::size_t>(key % 3)));
        seen.insert(pid);
      }
    }
    CHECK(seen.size() == 3);
    CHECK(seen.count(my_pid()) == 0);
    const int a = co_await ex.submit(std::string("alpha"), &my_pid);
    const int b = co_await ex.submit("alpha", &my_pid);
    const int c = co_await ex.submit(std::string_view("alpha"), &my_pid);
    CHECK(a == b);
    CHECK(a == c);
    CHECK(a == ex.worker_pid(ex.worker_of(std::string("alpha"))));
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

TEST_CASE("values, void calls, strings and containers come back intact") {
  corio::executor ex({.workers = 2});
  auto body = [&]() -> task<void> {
    {
      const auto got = co_await ex.submit(1, [](int a, int b) { return a * 10 + b; }, 4, 2);
      CHECK(got == 42);
    }
    co_await ex.submit(2, [](int) {}, 7);
    {
      const auto got = co_await ex.submit(3, [](std::string s) { return s + ", world"; }, std::string("hello"));
      CHECK(got == "hello, world");
    }
    const std::vector<int> input{1, 2, 3};  // no braced temporary inside co_await (GCC 12)
    const auto v = co_await ex.submit(4, [](std::vector<int> xs) {
      for (int& x : xs) x *= x;
      return xs;
    }, input);
    CHECK(v == std::vector<int>{1, 4, 9});
    const std::string big(100'000, 'x');
    {
      const auto got = co_await ex.submit(5, [](std::string s) { return s.size(); }, big);
      CHECK(got == 100'000u);
    }
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

namespace {
struct executor_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

TEST_CASE("a registered exception type thrown in the worker is caught by its type") {
  corio::register_remote_exception<executor_error>();
  corio::executor ex({.workers = 2});
  auto body = [&]() -> task<void> {
    bool caught = false;
    try {
      co_await ex.submit(0, [](int x) -> int { throw executor_error("shard says " + std::to_string(x)); }, 3);
    } catch (const executor_error& e) {
      caught = std::string(e.what()) == "shard says 3";
    }
    CHECK(caught);
  };
  run_in_loop(body);
}

TEST_CASE("an exception in the worker comes back as remote_error with its type name and message") {
  corio::executor ex({.workers = 2});
  auto body = [&]() -> task<void> {
    bool thrown = false;
    try {
      co_await ex.submit(0, [](int x) -> int { throw std::invalid_argument("bad x = " + std::to_string(x)); }, 5);
    } catch (const corio::remote_error& e) {
      thrown = true;
      CHECK(e.type_name() == "std::invalid_argument");
      CHECK(e.message() == "bad x = 5");
      CHECK(std::string(e.what()) == "std::invalid_argument: bad x = 5");
    }
    CHECK(thrown);
    thrown = false;
    try {
      co_await ex.submit(1, []() -> task<void> {
        co_await corio::sleep_for(1ms);
        throw std::out_of_range("late");
      });
    } catch (const corio::remote_error& e) {
      thrown = true;
      CHECK(std::string(e.what()) == "std::out_of_range: late");
    }
    CHECK(thrown);
    // The worker is still healthy.
    {
      const auto got = co_await ex.submit(0, [] { return 7; });
      CHECK(got == 7);
    }
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

TEST_CASE("many sleeping coroutine calls on one worker run concurrently") {
  corio::executor ex({.workers = 2});
  auto body = [&]() -> task<void> {
    constexpr int calls = 50;
    std::vector<task<int>> ts;
    for (int i = 0; i < calls; ++i)
      ts.push_back(ex.submit(7, [](int x) -> task<int> {
        co_await corio::sleep_for(200ms);
        co_return x * 3;
      }, i));
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int> results = co_await corio::when_all(std::move(ts));
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(results.size() == calls);
    for (int i = 0; i < calls; ++i) CHECK(results[static_cast<std::size_t>(i)] == i * 3);
    CHECK(took >= 200ms);
    CHECK(took < 3s);  // one after another would take 10 s
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

TEST_CASE("broadcast returns one result per worker, in worker order, from distinct processes") {
  corio::executor ex({.workers = 3});
  auto body = [&]() -> task<void> {
    const std::vector<int> pids = co_await ex.broadcast(&my_pid);
    REQUIRE(pids.size() == 3);
    CHECK(std::set<int>(pids.begin(), pids.end()).size() == 3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(pids[i] == ex.worker_pid(i));
    const std::vector<std::string> tagged = co_await ex.broadcast([](std::string s) { return s + "!"; }, std::string("hi"));
    CHECK(tagged == std::vector<std::string>{"hi!", "hi!", "hi!"});
    co_await ex.broadcast([] {});
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

TEST_CASE("100,000 submits from 256 concurrent submitters all complete with the right results") {
  corio::executor ex({.workers = 2});
  constexpr long total = 100'000;
  constexpr long window = 256;
  long sum = 0;
  long done = 0;
  auto body = [&]() -> task<void> {
    corio::task_group g;
    for (long s = 0; s < window; ++s) {
      g.spawn([&, s]() -> task<void> {
        for (long i = s; i < total; i += window) {
          const long r = co_await ex.submit(i, [](long x) { return 2 * x + 1; }, i);
          CHECK_MESSAGE(r == 2 * i + 1, "call ", i);
          sum += r;
          ++done;
        }
      });
    }
    co_await g.wait();
    co_await ex.shutdown();
  };
  run_in_loop(body);
  CHECK(done == total);
  CHECK(sum == total * total);  // sum of 2i+1 for i < n is n^2
}

TEST_CASE("a full request ring makes submit wait, and nothing is lost") {
  corio::executor ex({.workers = 1, .ring_bytes = 4096});
  auto body = [&]() -> task<void> {
    std::vector<task<std::size_t>> ts;
    for (int i = 0; i < 200; ++i)
      ts.push_back(ex.submit(0, [](std::string s) -> task<std::size_t> {
        co_await corio::sleep_for(1ms);
        co_return s.size();
      }, std::string(static_cast<std::size_t>(500 + i), 'a')));
    const auto sizes = co_await corio::when_all(std::move(ts));
    for (int i = 0; i < 200; ++i) CHECK(sizes[static_cast<std::size_t>(i)] == static_cast<std::size_t>(500 + i));
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

TEST_CASE("a full reply ring makes the worker wait for the parent, and every reply arrives") {
  corio::executor ex({.workers = 1, .ring_bytes = 4096});
  auto body = [&]() -> task<void> {
    std::vector<task<std::string>> ts;
    for (int i = 0; i < 100; ++i) {  // replies of ~1.5 KB: two fit in the reply ring
      if (i % 2 == 0)
        ts.push_back(ex.submit(0, [](int n) { return std::string(1500, static_cast<char>('a' + n % 26)); }, i));
      else
        ts.push_back(ex.submit(0, [](int n) -> task<std::string> {
          co_return std::string(1500, static_cast<char>('a' + n % 26));
        }, i));
    }
    const auto replies = co_await corio::when_all(std::move(ts));
    for (int i = 0; i < 100; ++i)
      CHECK(replies[static_cast<std::size_t>(i)] == std::string(1500, static_cast<char>('a' + i % 26)));
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

TEST_CASE("a request larger than max_message_bytes throws length_error in the caller") {
  corio::executor ex({.workers = 1, .ring_bytes = 4096});
  CHECK_THROWS_AS((void)ex.submit(0, [](std::string s) { return s.size(); }, std::string(5000, 'x')), std::length_error);
  auto body = [&]() -> task<void> {
    bool thrown = false;
    try {  // a reply too large for the ring comes back as an error, the worker lives on
      co_await ex.submit(0, [] { return std::string(5000, 'y'); });
    } catch (const corio::remote_error& e) {
      thrown = true;
      CHECK(e.type_name() == "std::length_error");
    }
    CHECK(thrown);
    {
      const auto got = co_await ex.submit(0, [] { return 1; });
      CHECK(got == 1);
    }
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

TEST_CASE("a worker killed with SIGKILL fails its pending calls with worker_lost; other workers keep working") {
  corio::executor ex({.workers = 2});
  const pid_t victim = ex.worker_pid(0);
  auto body = [&]() -> task<void> {
    int lost = 0;
    std::string what;
    auto one = [&](task<int> call) -> task<void> {
      try {
        co_await std::move(call);
      } catch (const corio::worker_lost& e) {
        ++lost;
        what = e.what();
      }
    };
    auto killer = [&]() -> task<void> {
      co_await corio::sleep_for(100ms);
      ::kill(victim, SIGKILL);
    };
    std::vector<task<void>> all;
    for (int i = 0; i < 5; ++i)
      all.push_back(one(ex.submit_to(0, []() -> task<int> {
        co_await corio::sleep_for(30s);
        co_return 1;
      })));
    all.push_back(killer());
    const auto start = std::chrono::steady_clock::now();
    co_await corio::when_all(std::move(all));
    CHECK(lost == 5);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    CHECK(what == "corio::executor: worker 0 (pid " + std::to_string(victim) +
                      ") was killed by signal 9 (Killed) while it held this call");
    {
      const auto got = co_await ex.submit_to(1, &my_pid);
      CHECK(got == ex.worker_pid(1));
    }
    co_await ex.shutdown();
  };
  run_in_loop(body);
}

TEST_CASE("shutdown waits for calls in flight, then the workers exit and are reaped") {
  corio::executor ex({.workers = 2});
  const pid_t p0 = ex.worker_pid(0), p1 = ex.worker_pid(1);
  int finished = 0;
  auto body = [&]() -> task<void> {
    corio::task_group g;
    for (int i = 0; i < 20; ++i)
      g.spawn([&, i]() -> task<void> {
        const int r = co_await ex.submit(i, [](int x) -> task<int> {
          co_await corio::sleep_for(100ms);
          co_return x + 1;
        }, i);
        CHECK(r == i + 1);
        ++finished;
      });
    co_await ex.shutdown();
    CHECK(finished == 20);
    co_await g.wait();
    bool refused = false;
    try {
      (void)co_await ex.submit(0, [] { return 1; });
    } catch (const std::logic_error&) {
      refused = true;
    }
    CHECK(refused);
  };
  run_in_loop(body);
  CHECK(process_gone(p0));
  CHECK(process_gone(p1));
}

TEST_CASE("an executor destroyed without shutdown kills and reaps its workers") {
  pid_t pid = 0;
  {
    corio::executor ex({.workers = 1});
    pid = ex.worker_pid(0);
    CHECK_FALSE(process_gone(pid));
  }
  CHECK(process_gone(pid));
}

TEST_CASE("an executor destroyed with a call pending fails it with worker_lost on the loop") {
  corio::loop lp;
  auto ex = std::make_unique<corio::executor>(corio::executor_options{.workers = 1});
  const pid_t pid = ex->worker_pid(0);
  std::string what;
  auto caller = [&]() -> task<void> {
    try {
      co_await ex->submit(0, []() -> task<int> {
        co_await corio::sleep_for(30s);
        co_return 1;
      });
    } catch (const corio::worker_lost& e) {
      what = e.what();
    }
  };
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn(caller);
    co_await corio::sleep_for(50ms);
    ex.reset();
    co_await g.wait();
  };
  lp.run(body());
  CHECK(what == "corio::executor: worker 0 (pid " + std::to_string(pid) +
                    ") was killed by signal 9 (Killed) while it held this call");
  CHECK(process_gone(pid));
}

TEST_CASE("an executor built on a thread that has exited keeps its workers, which serve the main thread") {
  std::unique_ptr<corio::executor> ex;
  std::thread([&] { ex = std::make_unique<corio::executor>(corio::executor_options{.workers = 2}); }).join();
  std::this_thread::sleep_for(200ms);  // time for a death signal sent at the thread's exit to land
  const std::vector<int> expected{ex->worker_pid(0), ex->worker_pid(1)};
  auto body = [&]() -> task<void> {
    const std::vector<int> pids = co_await corio::with_timeout(ex->broadcast(&my_pid), 10s);
    CHECK(pids == expected);
    co_await corio::with_timeout(ex->shutdown(), 10s);
  };
  run_in_loop(body);
}

TEST_CASE("a dead worker is replaced under its shard index: keys keep routing there, its state and its calls are gone") {
  corio::executor ex({.workers = 2});
  const pid_t victim = ex.worker_pid(1);
  auto body = [&]() -> task<void> {
    CHECK(ex.worker_of(1) == 1);
    CHECK(ex.worker_of(3) == 1);
    CHECK(co_await ex.submit(1, &bump) == 1);
    CHECK(co_await ex.submit(3, &bump) == 2);  // one process keeps the state of shard 1
    std::string lost;
    auto in_flight = [&]() -> task<void> {
      try {
        co_await ex.submit(1, []() -> task<int> {
          co_await corio::sleep_for(30s);
          co_return 1;
        });
      } catch (const corio::worker_lost& e) {
        lost = e.what();
      }
    };
    auto killer = [&]() -> task<void> {
      co_await corio::sleep_for(100ms);
      ::kill(victim, SIGKILL);
    };
    auto both = [&]() -> task<void> { co_await corio::when_all(in_flight(), killer()); };
    co_await corio::with_timeout(both(), 10s);
    CHECK(lost == "corio::executor: worker 1 (pid " + std::to_string(victim) +
                      ") was killed by signal 9 (Killed) while it held this call");
    const pid_t replacement = ex.worker_pid(1);
    CHECK(replacement != victim);
    CHECK(replacement != 0);
    CHECK(co_await corio::with_timeout(ex.submit(1, &my_pid), 10s) == replacement);
    CHECK(co_await corio::with_timeout(ex.submit(3, &my_pid), 10s) == replacement);
    CHECK(co_await ex.submit(5, &bump) == 1);  // the dead worker's state is gone
    CHECK(co_await ex.submit(0, &bump) == 1);  // shard 0 untouched
    co_await corio::with_timeout(ex.shutdown(), 10s);
  };
  run_in_loop(body);
  CHECK(process_gone(victim));
}

TEST_CASE("with retries = 1 the calls of a worker that died run again on its replacement and all 200 come back") {
  bool failed_57 = false;
  CHECK(run_200_with_a_kill(1, failed_57) == 0);
  CHECK_FALSE(failed_57);
}

TEST_CASE("with retries = 0 the call whose worker died fails with worker_lost") {
  bool failed_57 = false;
  CHECK(run_200_with_a_kill(0, failed_57) >= 1);
  CHECK(failed_57);
}
