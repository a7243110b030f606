// loop: run, spawn, posting from other threads, io_uring setup fallbacks, draining.
#include <doctest/doctest.h>

#include <corio/coro/async_generator.hpp>
#include <corio/coro/task_group.hpp>
#include <corio/runtime/file_ops.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../coro/abandoned_consumer.hpp"
#include "../needs_feature.hpp"
#include "cpu_time.hpp"

using namespace std::chrono_literals;
using corio::task;

TEST_CASE("run returns the value of the main task") {
  corio::loop lp;
  auto main = []() -> task<int> {
    co_await corio::nop();
    co_return 42;
  };
  CHECK(lp.run(main()) == 42);
}

TEST_CASE("run rethrows the main task's exception") {
  corio::loop lp;
  auto main = []() -> task<void> {
    co_await corio::nop();
    throw std::domain_error("main failed");
  };
  CHECK_THROWS_WITH_AS(lp.run(main()), "main failed", std::domain_error);
}

TEST_CASE("a loop can run several tasks one after the other") {
  corio::loop lp;
  auto one = []() -> task<int> { co_return 1; };
  CHECK(lp.run(one()) + lp.run(one()) == 2);
}

TEST_CASE("run on a thread that already runs a loop throws logic_error") {
  corio::loop a;
  auto main = []() -> task<void> {
    corio::loop b;
    auto inner = []() -> task<void> { co_return; };
    CHECK_THROWS_AS(b.run(inner()), std::logic_error);
    co_return;
  };
  a.run(main());
}

TEST_CASE("run and spawn from a second thread while a loop runs throw logic_error naming the fix") {
  corio::loop lp;
  std::atomic<bool> release{false};
  std::string run_error, spawn_error;
  auto main = [&]() -> task<void> {
    // The other thread tries while this loop is running; it sets release when done.
    std::thread other([&] {
      auto nothing = []() -> task<void> { co_return; };
      try {
        lp.run(nothing());
      } catch (const std::logic_error& e) {
        run_error = e.what();
      }
      try {
        lp.spawn(nothing());
      } catch (const std::logic_error& e) {
        spawn_error = e.what();
      }
      release = true;
    });
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!release && std::chrono::steady_clock::now() < deadline) co_await corio::sleep_for(1ms);
    other.join();
  };
  lp.run(main());
  CHECK(run_error.find("another thread is running this loop") != std::string::npos);
  CHECK(run_error.find("post()") != std::string::npos);
  CHECK(spawn_error.find("not running this loop") != std::string::npos);
  CHECK(lp.spawned() == 0);
  // Once run() returned, the loop is free again: another thread may run it.
  int ran = 0;
  std::thread([&] {
    auto one = [&]() -> task<void> {
      ran = 1;
      co_return;
    };
    lp.run(one());
  }).join();
  CHECK(ran == 1);
}

TEST_CASE("this_loop outside a loop throws logic_error naming the problem") {
  CHECK_THROWS_WITH_AS(corio::loop::this_loop(),
                       "corio: no event loop runs on this thread (call from inside loop::run)",
                       std::logic_error);
}

TEST_CASE("128 coroutines awaiting NOPs concurrently all complete, batched in the ring") {
  corio::loop lp;
  int completed = 0;
  auto worker = [&](int rounds) -> task<void> {
    for (int i = 0; i < rounds; ++i) co_await corio::nop();
    ++completed;
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int i = 0; i < 128; ++i) g.spawn(worker(100));
    co_await g.wait();
  };
  lp.run(main());
  CHECK(completed == 128);
}

TEST_CASE("spawn starts a detached task that finishes on the loop") {
  corio::loop lp;
  std::vector<std::string> log;
  auto child = [&]() -> task<void> {
    log.push_back("child start");
    co_await corio::nop();
    log.push_back("child end");
  };
  auto main = [&]() -> task<void> {
    lp.spawn(child());
    log.push_back("after spawn");
    CHECK(lp.spawned() == 1);
    while (lp.spawned() > 0) co_await corio::nop();
  };
  lp.run(main());
  CHECK(log == std::vector<std::string>{"child start", "after spawn", "child end"});
}

TEST_CASE("an exception escaping a spawned task goes to the unhandled-exception handler") {
  static std::string seen;
  seen.clear();
  corio::loop lp;
  lp.set_unhandled_exception_handler([](std::exception_ptr e) noexcept {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      seen = ex.what();
    }
  });
  auto bad = []() -> task<void> {
    co_await corio::nop();
    throw std::runtime_error("detached failure");
  };
  auto main = [&]() -> task<void> {
    lp.spawn(bad());
    while (lp.spawned() > 0) co_await corio::nop();
  };
  lp.run(main());
  CHECK(seen == "detached failure");
}

TEST_CASE("a million spawned tasks complete and free their frames") {
  corio::loop lp;
  long long sum = 0;
  auto child = [&](int i) -> task<void> {
    sum += i;
    co_return;
  };
  auto main = [&]() -> task<void> {
    for (int i = 0; i < 1'000'000; ++i) lp.spawn(child(i));
    co_return;
  };
  lp.run(main());
  CHECK(lp.spawned() == 0);
  CHECK(sum == 499'999'500'000LL);
}

namespace {

// Suspends the awaiting coroutine and has another thread resume it through loop::post
// after `delay`: the loop has nothing else to do meanwhile, so it sleeps in the kernel.
struct resumed_by_post {
  corio::loop& lp;
  std::chrono::milliseconds delay;
  std::thread poster;
  std::thread::id resumed_on;

  struct awaiter {
    resumed_by_post* self;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      self->poster = std::thread([s = self, h] {
        std::this_thread::sleep_for(s->delay);
        s->lp.post([s, h] {
          s->resumed_on = std::this_thread::get_id();
          corio::detail::resume(h);
        });
      });
    }
    void await_resume() { self->poster.join(); }
  };
  awaiter operator co_await() noexcept { return {this}; }
};

double thread_cpu_seconds() { return corio_test::cpu_seconds(RUSAGE_THREAD); }

}  // namespace

TEST_CASE("post from another thread wakes a sleeping loop and runs on the loop's thread") {
  corio::loop lp;
  resumed_by_post waiter{lp, 50ms, {}, {}};
  auto main = [&]() -> task<void> { co_await waiter; };
  lp.run(main());  // hangs (and the test times out) if the post does not wake the loop
  CHECK(waiter.resumed_on == std::this_thread::get_id());
}

TEST_CASE("an idle loop sleeps in the kernel instead of spinning") {
  corio::loop lp;
  resumed_by_post waiter{lp, 300ms, {}, {}};
  auto main = [&]() -> task<void> { co_await waiter; };
  const double before = thread_cpu_seconds();
  lp.run(main());
  const double used = thread_cpu_seconds() - before;
  // A spinning loop would burn ~0.3 s of CPU here; a sleeping one a few microseconds.
  // The bound is generous for a loaded machine.
  CHECK(used < 0.1);
}

TEST_CASE("idle_poll: the loop polls for that long after its work runs out, then sleeps") {
  corio::loop lp({.idle_poll = 300ms});
  resumed_by_post waiter{lp, 1500ms, {}, {}};
  auto main = [&]() -> task<void> { co_await waiter; };
  const double before = thread_cpu_seconds();
  lp.run(main());
  const double used = thread_cpu_seconds() - before;
  // Polled: up to 300 ms of CPU (a loop that sleeps at once uses microseconds). The poll
  // yields the CPU at every turn, so on a loaded machine it gets only a share of those
  // 300 ms (at a load of 8 on 2 cores a 50 ms poll got under 5 ms): a long poll keeps
  // that share well above the bound. Then slept: far less than the 1.5 s a loop polling
  // until the post would burn.
  CHECK(used > 0.005);
  CHECK(used < 0.6);
}

TEST_CASE("idle_poll: completions and posts end the poll at once, on every ring setup") {
  struct setup {
    const char* name;
    corio::loop_options options;
  };
  // A poll of a minute: a test that waited for it to run out would time out instead.
  const setup setups[] = {
      {"default (DEFER_TASKRUN + TASKRUN_FLAG)", {.idle_poll = 60s}},
      {"COOP_TASKRUN + TASKRUN_FLAG", {.idle_poll = 60s, .try_defer_taskrun = false}},
      {"no TASKRUN_FLAG: io_uring_enter polls", {.idle_poll = 60s, .try_taskrun_flag = false}},
      {"no DEFER_TASKRUN, no TASKRUN_FLAG",
       {.idle_poll = 60s, .try_defer_taskrun = false, .try_taskrun_flag = false}},
  };
  for (const setup& s : setups) {
    CAPTURE(s.name);
    corio::loop lp(s.options);
    CHECK(lp.features().taskrun_flag == (s.options.try_taskrun_flag &&
                                         (lp.features().defer_taskrun || lp.features().coop_taskrun)));
    resumed_by_post waiter{lp, 20ms, {}, {}};
    auto main = [&]() -> task<int> {
      int fired = 0;
      for (int i = 0; i < 3; ++i) {
        co_await corio::sleep_for(10ms);  // a timer's completion, seen while polling
        ++fired;
      }
      co_await waiter;  // a post from another thread, seen while polling
      co_return fired;
    };
    const auto start = std::chrono::steady_clock::now();
    CHECK(lp.run(main()) == 3);
    CHECK(std::chrono::steady_clock::now() - start < 30s);
  }
}

TEST_CASE("idle_poll: a stop requested from another thread cancels an op while the loop polls") {
  corio::loop lp({.idle_poll = 60s});
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  std::stop_source src;
  const std::stop_token token = src.get_token();
  std::atomic<bool> reading{false};
  auto main = [&]() -> task<bool> {
    std::byte buf[8];
    reading = true;
    try {
      co_await corio::read(fds[0], buf, corio::at_current_position, {.token = &token, .deadline = {}});
    } catch (const corio::operation_cancelled&) {
      co_return true;
    }
    co_return false;
  };
  std::thread stopper([&] {
    while (!reading) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);
    src.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  const bool cancelled = lp.run(main());
  stopper.join();
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(cancelled);
  CHECK(std::chrono::steady_clock::now() - start < 30s);
}

TEST_CASE("a negative idle_poll is refused with invalid_argument") {
  CHECK_THROWS_WITH_AS(corio::loop({.idle_poll = -1us}), "corio::loop: idle_poll must not be negative, got -1 us",
                       std::invalid_argument);
}

TEST_CASE("a loop without DEFER_TASKRUN or SINGLE_ISSUER (older kernels) works the same") {
  corio::loop lp({.entries = 64, .sqpoll = false, .try_defer_taskrun = false, .try_single_issuer = false});
  CHECK(!lp.features().defer_taskrun);
  CHECK(!lp.features().single_issuer);
  auto main = []() -> task<int> {
    int n = 0;
    for (int i = 0; i < 1000; ++i) n += 1 + co_await corio::nop();
    co_return n;
  };
  CHECK(lp.run(main()) == 1000);
}

CORIO_TEST_NEEDS("a default loop on this kernel gets SINGLE_ISSUER and DEFER_TASKRUN",
                 corio::kernel_feature::defer_taskrun) {
  corio::loop lp;
  CHECK(lp.features().defer_taskrun);
  CHECK(lp.features().single_issuer);
}

TEST_CASE("more operations than SQ entries are submitted in several batches") {
  corio::loop lp({.entries = 8});
  int completed = 0;
  auto one = [&]() -> task<void> {
    co_await corio::nop();
    ++completed;
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int i = 0; i < 1000; ++i) g.spawn(one());
    co_await g.wait();
  };
  lp.run(main());
  CHECK(completed == 1000);
}

TEST_CASE("destroying a loop with a spawned task still sleeping cancels and drains it") {
  std::string outcome;
  {
    corio::loop lp;
    auto sleeper = [&]() -> task<void> {
      try {
        co_await corio::sleep_for(1h);
        outcome = "slept";
      } catch (const corio::operation_cancelled&) {
        outcome = "cancelled";
      }
    };
    auto main = [&]() -> task<void> {
      lp.spawn(sleeper());
      co_return;
    };
    lp.run(main());
    CHECK(lp.in_flight() >= 1);
  }
  CHECK(outcome == "cancelled");
}

namespace {
// Aborts the test binary with `what` unless disarmed within `limit`: a regression that
// hangs fails in seconds instead of at meson's timeout.
class watchdog {
 public:
  watchdog(std::chrono::seconds limit, const char* what)
      : thread_([this, limit, what] {
          std::unique_lock lock(mutex_);
          if (!cv_.wait_for(lock, limit, [this] { return disarmed_; })) {
            std::fprintf(stderr, "watchdog: %s did not finish within %lld s\n", what,
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  ~watchdog() {
    {
      const std::lock_guard lock(mutex_);
      disarmed_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  std::thread thread_;
};
}  // namespace

TEST_CASE("without CANCEL_ANY, destroying a loop cancels each op in flight one by one and drains them") {
  // Kernels before 5.19 refuse IORING_ASYNC_CANCEL_ANY: the drain must not wait forever.
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  int cancelled = 0;
  {
    const watchdog dog(30s, "~loop without CANCEL_ANY");
    corio::loop lp({.try_cancel_any = false});
    CHECK_FALSE(lp.features().cancel_any);
    auto reader = [&]() -> task<void> {
      std::byte buf[8];
      try {
        co_await corio::read(fds[0], buf);
      } catch (const corio::operation_cancelled&) {
        ++cancelled;
      }
    };
    auto sleeper = [&]() -> task<void> {
      try {
        co_await corio::sleep_for(1h);
      } catch (const corio::operation_cancelled&) {
        ++cancelled;
      }
    };
    auto main = [&]() -> task<void> {
      for (int i = 0; i < 10; ++i) {
        lp.spawn(reader());
        lp.spawn(sleeper());
      }
      co_await corio::nop();
    };
    lp.run(main());
    CHECK(lp.in_flight() >= 20);
  }
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(cancelled == 20);
}

CORIO_TEST_NEEDS("a default loop on this kernel cancels everything at once with CANCEL_ANY",
                 corio::kernel_feature::cancel_any) {
  corio::loop lp;
  CHECK(lp.features().cancel_any);
}

namespace {

// Runs `main` on `lp` while another thread, once `ready`, requests a stop on `src`.
void run_then_stop_from_another_thread(corio::loop& lp, task<void> main, const std::atomic<bool>& ready,
                                       std::stop_source& src) {
  std::thread stopper([&] {
    while (!ready) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);
    src.request_stop();
  });
  lp.run(std::move(main));
  stopper.join();
}

}  // namespace

TEST_CASE("a stop requested from another thread reaches an op while the loop never sleeps") {
  // A busy loop polls the tokens of its in-flight ops instead of registering callbacks;
  // the stop must still cancel the pending read.
  corio::loop lp;
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  std::stop_source src;
  const std::stop_token token = src.get_token();
  bool cancelled = false;
  std::atomic<bool> reading{false};
  auto main = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      std::byte buf[8];
      reading = true;
      try {
        co_await corio::read(fds[0], buf, corio::at_current_position, {.token = &token, .deadline = {}});
      } catch (const corio::operation_cancelled&) {
        cancelled = true;
      }
    });
    g.spawn([&]() -> task<void> {
      while (!cancelled) co_await corio::nop();  // keeps the loop from ever sleeping
    });
    co_await g.wait();
  };
  run_then_stop_from_another_thread(lp, main(), reading, src);
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(cancelled);
}

TEST_CASE("with 1,000 cancellable reads in flight the loop polls only max_polled_ops tokens, and a stop cancels all") {
  // The poll is per iteration: a list as long as the ops in flight made a server's CPU
  // per request grow with its connection count. Ops beyond the bound get callbacks, so a
  // stop from another thread still reaches every one while the loop never sleeps.
  corio::loop lp;
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  std::stop_source src;
  const std::stop_token token = src.get_token();
  constexpr int reads = 1000;
  int cancelled = 0;
  int started = 0;
  std::size_t most_polled = 0;
  std::atomic<bool> all_started{false};
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int i = 0; i < reads; ++i) {
      g.spawn([&]() -> task<void> {
        std::byte buf[8];
        ++started;
        try {
          co_await corio::read(fds[0], buf, corio::at_current_position, {.token = &token, .deadline = {}});
        } catch (const corio::operation_cancelled&) {
          ++cancelled;
        }
      });
    }
    g.spawn([&]() -> task<void> {
      all_started = started == reads;
      while (cancelled < reads) {  // keeps the loop from ever sleeping
        most_polled = std::max(most_polled, corio::loop::this_loop().polled_ops());
        co_await corio::nop();
      }
    });
    co_await g.wait();
  };
  run_then_stop_from_another_thread(lp, main(), all_started, src);
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(most_polled == corio::loop::max_polled_ops);
  CHECK(cancelled == reads);
  CHECK(lp.polled_ops() == 0);
}

TEST_CASE("an async generator destroyed inside a read is orphaned; ~loop cancels the read and frees the frame") {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  std::string outcome;
  bool frame_freed = false;
  struct on_exit {
    bool* flag;
    ~on_exit() { *flag = true; }
  };
  {
    corio::loop lp;
    auto lines = [&]() -> corio::async_generator<int> {
      const on_exit guard{&frame_freed};
      std::byte buf[8];
      try {
        co_yield static_cast<int>(co_await corio::read(fds[0], buf));
      } catch (const corio::operation_cancelled&) {
        outcome = "cancelled";
      }
    };
    std::coroutine_handle<> consumer;
    auto main = [&]() -> task<void> {
      consumer = corio_test::first_of(lines).handle;
      co_await corio::sleep_for(5ms);  // the read is in the kernel now
      consumer.destroy();              // and with it the generator
      co_await corio::sleep_for(5ms);
    };
    lp.run(main());
    CHECK_FALSE(frame_freed);  // the read is still in flight and owns the frame
    CHECK(lp.in_flight() >= 1);
  }
  CHECK(outcome == "cancelled");
  CHECK(frame_freed);
  ::close(fds[0]);
  ::close(fds[1]);
}

namespace {

// Whether a default loop runs on io_uring here (not CORIO_BACKEND=epoll, nor a refused
// io_uring_setup).
bool default_loop_has_ring() {
  corio::loop lp;
  return lp.native_ring() != nullptr;
}

}  // namespace

// Without registered_ring (CORIO_DISABLE_FEATURES) it checks the fd stays unregistered.
CORIO_TEST_IF("run() enters the ring through a registered fd where the kernel has it, and unregisters when it returns",
              default_loop_has_ring(), "the default loop runs on the epoll backend: no kernel ring to register") {
  corio::loop lp;
  const bool on = corio::kernel_feature_on(corio::kernel_feature::registered_ring);
  CHECK(lp.features().registered_ring == on);
  REQUIRE(lp.native_ring() != nullptr);
  const io_uring& ring = *lp.native_ring();
  CHECK(ring.enter_ring_fd == ring.ring_fd);  // not registered before run()
  auto body = [&]() -> corio::task<int> {
    co_await corio::sleep_for(std::chrono::milliseconds(1));  // a few io_uring_enter calls
    co_return ring.enter_ring_fd != ring.ring_fd ? 1 : 0;
  };
  CHECK(lp.run(body()) == (on ? 1 : 0));
  CHECK(ring.enter_ring_fd == ring.ring_fd);
  // A second run registers again (the registration belongs to the running thread).
  CHECK(lp.run(body()) == (on ? 1 : 0));
}
