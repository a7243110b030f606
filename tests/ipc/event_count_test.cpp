// event_count: no syscall path when nobody waits, blocking and loop waits across processes,
// deadlines, cancellation (io_uring futex and the loop's futex thread), the futex thread's
// lifetime and bound (one per loop, joined by ~loop), and a lost-wake-up
// stress test: a million sleep/wake handoffs between two processes.
#include <doctest/doctest.h>

#include "../needs_feature.hpp"
#include "ipc_test_support.hpp"
#include "loop_ticker_support.hpp"

#include <corio/coro/task.hpp>
#include <corio/coro/task_group.hpp>
#include <corio/ipc/event_count.hpp>
#include <corio/ipc/shm_region.hpp>
#include <corio/runtime/errors.hpp>
#include <corio/runtime/futex_ops.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>
#include <stop_token>
#include <thread>

using namespace std::chrono_literals;
using corio::event_count;
using corio::event_count_state;
using corio_test::exit_status;
using corio_test::fork_child;
using corio_test::sanitized;

namespace {


// What two processes share in these tests.
struct shared_block {
  event_count_state ev;
  event_count_state back;
  std::uint64_t value;
  std::uint64_t echoed;
};

std::uint64_t load(const std::uint64_t& v) {
  return std::atomic_ref(const_cast<std::uint64_t&>(v)).load(std::memory_order_acquire);
}
void store(std::uint64_t& v, std::uint64_t x) { std::atomic_ref(v).store(x, std::memory_order_release); }

std::uint32_t waiters(const event_count_state& s) { return static_cast<std::uint32_t>(load(s.word) & 0xffffffffu); }
std::uint32_t epoch(const event_count_state& s) { return static_cast<std::uint32_t>(load(s.word) >> 32); }

// Both paths of async_wait: the io_uring futex (when the kernel has it) and the fallback.
struct fallback_guard {
  explicit fallback_guard(bool on) { corio::detail::force_futex_thread(on); }
  ~fallback_guard() { corio::detail::force_futex_thread(false); }
};

}  // namespace

TEST_CASE("notify_all with nobody waiting leaves the word untouched (no wake path taken)") {
  event_count_state s{};
  event_count ev(s);
  for (int i = 0; i < 1000; ++i) ev.notify_all();
  CHECK(s.word == 0);
}

TEST_CASE("prepare_wait announces, cancel_wait withdraws, notify bumps the epoch only when announced") {
  event_count_state s{};
  event_count ev(s);
  const auto k = ev.prepare_wait();
  CHECK(k == 0);
  CHECK(waiters(s) == 1);
  ev.notify_all();
  CHECK(epoch(s) == 1);
  // The epoch moved past the key: the wait returns at once.
  CHECK(ev.wait(k));
  CHECK(waiters(s) == 0);
  const auto k2 = ev.prepare_wait();
  CHECK(k2 == 1);
  ev.cancel_wait();
  CHECK(waiters(s) == 0);
}

TEST_CASE("wait returns false at the deadline and withdraws the waiter") {
  event_count_state s{};
  event_count ev(s);
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(ev.wait(ev.prepare_wait(), start + 50ms));
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  CHECK(waiters(s) == 0);
  std::atomic<bool> never{false};
  CHECK_FALSE(ev.wait_until([&] { return never.load(); }, std::chrono::steady_clock::now() + 20ms));
}

TEST_CASE("a thread blocked in wait_until is woken by a notify from another thread") {
  event_count_state s{};
  event_count ev(s);
  std::atomic<int> flag{0};
  std::thread waker([&] {
    std::this_thread::sleep_for(30ms);
    flag.store(1);
    ev.notify_all();
  });
  CHECK(ev.wait_until([&] { return flag.load() == 1; }));
  waker.join();
  CHECK(waiters(s) == 0);
}

TEST_CASE("lost-wake-up stress: two processes hand a counter back and forth, each side sleeping") {
  // Every handoff makes the receiver sleep in the kernel unless the sender was faster, so
  // a single lost wake-up hangs the test (the generous deadline turns that into a failure).
  const std::uint64_t handoffs = sanitized ? 100'000 : 1'000'000;
  auto region = corio::shm_region::create(sizeof(shared_block), "event_count_test");
  auto* b = new (region.data()) shared_block{};
  const auto limit = std::chrono::steady_clock::now() + 300s;

  const pid_t child = fork_child([&] {
    event_count ev(b->ev), back(b->back);
    for (std::uint64_t i = 1; i <= handoffs; ++i) {
      if (!ev.wait_until([&] { return load(b->value) == i; }, limit)) return 2;
      store(b->echoed, i);
      back.notify_all();
    }
    return 0;
  });
  event_count ev(b->ev), back(b->back);
  bool on_time = true;
  for (std::uint64_t i = 1; i <= handoffs && on_time; ++i) {
    store(b->value, i);
    ev.notify_all();
    on_time = back.wait_until([&] { return load(b->echoed) == i; }, limit);
  }
  CHECK(on_time);
  CHECK(exit_status(child) == 0);
  CHECK(load(b->echoed) == handoffs);
  CHECK(waiters(b->ev) == 0);
  CHECK(waiters(b->back) == 0);
}

void sleeps_inside_the_loop(bool fallback) {
  {
    const fallback_guard guard(fallback);
    auto region = corio::shm_region::create(sizeof(shared_block), "event_count_test");
    auto* b = new (region.data()) shared_block{};
    const pid_t child = fork_child([&] {
      ::usleep(100'000);
      store(b->value, 42);
      event_count(b->ev).notify_all();
      return 0;
    });

    const auto [value, ticks] = corio_test::run_beside_ticker<std::uint64_t>([&]() -> corio::task<std::uint64_t> {
      event_count ev(b->ev);
      const bool ok = co_await ev.async_wait_until([&] { return load(b->value) == 42; },
                                                  std::chrono::steady_clock::now() + 60s);
      co_return ok ? load(b->value) : 0;
    });
    CHECK(value == 42);
    CHECK(ticks >= 3);  // the loop kept running the ticker for ~100 ms
    CHECK(exit_status(child) == 0);
    CHECK(waiters(b->ev) == 0);
  }
}

CORIO_TEST_NEEDS("async_wait sleeps in the ring while the loop's other coroutines run, woken by another process",
                 corio::kernel_feature::futex_wait) {
  sleeps_inside_the_loop(false);
}

TEST_CASE("async_wait sleeps on the loop's futex thread while its other coroutines run, woken by another process") {
  sleeps_inside_the_loop(true);
}

void deadline_and_stop(bool fallback) {
  {
    const fallback_guard guard(fallback);
    event_count_state s{};
    corio::loop lp;

    auto timeout_case = [&]() -> corio::task<bool> {
      event_count ev(s);
      co_return co_await ev.async_wait(ev.prepare_wait(), std::chrono::steady_clock::now() + 30ms);
    };
    CHECK_FALSE(lp.run(timeout_case()));
    CHECK(waiters(s) == 0);

    std::stop_source source;
    auto cancel_case = [&]() -> corio::task<void> {
      event_count ev(s);
      co_await ev.async_wait(ev.prepare_wait());
    };
    std::thread stopper([&] {
      std::this_thread::sleep_for(50ms);
      source.request_stop();
    });
    CHECK_THROWS_AS(lp.run(cancel_case(), source.get_token()), corio::operation_cancelled);
    stopper.join();
    CHECK(waiters(s) == 0);
  }
}

CORIO_TEST_NEEDS("async_wait in the ring: a deadline returns false, a stop request throws operation_cancelled",
                 corio::kernel_feature::futex_wait) {
  deadline_and_stop(false);
}

TEST_CASE("async_wait on the futex thread: a deadline returns false, a stop request throws operation_cancelled") {
  deadline_and_stop(true);
}

namespace {
// Threads of this process (/proc/self/task).
std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}
}  // namespace

TEST_CASE("a loop destroyed while a task waits on its futex thread cancels the wait; a later notify touches nothing") {
  // The case that was a heap-use-after-free: the old fallback's detached thread posted the
  // wake-up to the destroyed loop.
  const fallback_guard guard(true);
  event_count_state s{};
  const std::size_t threads_before = thread_count();
  std::string ended;
  {
    corio::loop lp;
    static std::string* last_error = nullptr;
    last_error = &ended;
    lp.set_unhandled_exception_handler([](std::exception_ptr e) noexcept {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        *last_error = ex.what();
      }
    });
    auto waiter = [&]() -> corio::task<void> {
      event_count ev(s);
      co_await ev.async_wait(ev.prepare_wait());
      ended = "woken";
    };
    auto main = [&]() -> corio::task<void> {
      lp.spawn(waiter());
      co_await corio::sleep_for(10ms);
    };
    lp.run(main());
    CHECK(lp.spawned() == 1);
    CHECK(waiters(s) == 1);
    CHECK(thread_count() == threads_before + 1);  // the loop's futex thread
  }
  CHECK(ended == "futex wait: cancelled: Operation canceled");
  CHECK(waiters(s) == 0);
  CHECK(thread_count() == threads_before);  // joined by ~loop
  event_count(s).notify_all();
  CHECK(epoch(s) == 0);  // nobody was announced: nothing to wake
}

TEST_CASE("300 concurrent waits on the futex thread, on 300 words and on one, use one thread and all wake") {
  const fallback_guard guard(true);
  constexpr int waits = 300;  // more words than one futex_waitv takes (128)
  std::vector<event_count_state> words(waits);
  event_count_state shared{};
  std::vector<std::uint64_t> flags(waits, 0);
  std::uint64_t shared_flag = 0;
  const std::size_t threads_before = thread_count();
  corio::loop lp;
  int woken = 0;
  std::size_t threads_while_waiting = 0;
  auto waiter = [&](event_count_state& st, std::uint64_t& flag) -> corio::task<void> {
    event_count ev(st);
    if (co_await ev.async_wait_until([&] { return load(flag) == 1; }, std::chrono::steady_clock::now() + 60s))
      ++woken;
  };
  auto main = [&]() -> corio::task<void> {
    corio::task_group g;
    for (int i = 0; i < waits; ++i) {
      g.spawn(waiter(words[i], flags[i]));
      g.spawn(waiter(shared, shared_flag));
    }
    co_await corio::sleep_for(20ms);
    threads_while_waiting = thread_count();
    std::thread notifier([&] {
      for (int i = 0; i < waits; ++i) {
        store(flags[i], 1);
        event_count(words[i]).notify_all();
      }
      store(shared_flag, 1);
      event_count(shared).notify_all();
    });
    co_await g.wait();
    notifier.join();
  };
  lp.run(main());
  CHECK(threads_while_waiting == threads_before + 1);
  CHECK(woken == 2 * waits);
  for (const auto& w : words) CHECK(waiters(w) == 0);
  CHECK(waiters(shared) == 0);
}
