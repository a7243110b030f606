// process_semaphore, process_bounded_semaphore, process_event, process_condition,
// process_barrier, shared_value and shared_array: each across forked processes, with
// deadlines, misuse errors, and an awaiting coroutine that leaves its loop running.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"
#include "loop_ticker_support.hpp"

#include <corio/ipc/process_barrier.hpp>
#include <corio/ipc/process_condition.hpp>
#include <corio/ipc/process_event.hpp>
#include <corio/ipc/process_semaphore.hpp>
#include <corio/ipc/shared_value.hpp>
#include <corio/ipc/shm_region.hpp>
#include <corio/runtime/errors.hpp>
#include <corio/runtime/loop.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio_test::exit_status;
using corio_test::fork_child;
using corio_test::run_beside_ticker;
using steady = std::chrono::steady_clock;

namespace {

// Counters the processes of one test share, beside the primitive under test.
struct counters {
  std::uint64_t step;
  std::uint64_t inside;
  std::uint64_t max_inside;
  std::uint64_t value;
  std::uint64_t seen[4];
};

struct shared_counters {
  corio::shm_region region = corio::shm_region::create(sizeof(counters), "process_sync_test");
  counters* c = new (region.data()) counters{};
};

std::uint64_t load(const std::uint64_t& v) {
  return std::atomic_ref(const_cast<std::uint64_t&>(v)).load(std::memory_order_acquire);
}
std::uint64_t add(std::uint64_t& v, std::uint64_t x) { return std::atomic_ref(v).fetch_add(x) + x; }

// Spins until v reaches at_least; false after 10 s, so a stuck child fails the test quickly.
bool await_at_least(const std::uint64_t& v, std::uint64_t at_least) {
  const auto give_up = steady::now() + 10s;
  while (load(v) < at_least) {
    if (steady::now() > give_up) return false;
    ::usleep(1000);
  }
  return true;
}

}  // namespace

// ---- semaphores ---------------------------------------------------------------------------

TEST_CASE("a semaphore of 2 lets two in, refuses the third until a release, and times out") {
  corio::process_semaphore sem(2);
  CHECK(sem.value() == 2);
  CHECK(sem.try_acquire());
  CHECK(sem.acquire());
  CHECK_FALSE(sem.try_acquire());
  const auto start = steady::now();
  CHECK_FALSE(sem.acquire_for(40ms));
  CHECK(steady::now() - start >= 40ms);
  sem.release();
  CHECK(sem.value() == 1);
  sem.release(3);  // unbounded: above the initial value is fine
  CHECK(sem.value() == 4);
}

TEST_CASE("a bounded semaphore throws range_error on a release above its initial value") {
  corio::process_bounded_semaphore sem(2);
  CHECK(sem.acquire());
  sem.release();
  CHECK_THROWS_AS(sem.release(), std::range_error);
  CHECK(sem.value() == 2);  // the refused release changed nothing
  CHECK(sem.acquire());
  CHECK_THROWS_AS(sem.release(2), std::range_error);
  CHECK(sem.value() == 1);
}

TEST_CASE("4 processes through a semaphore of 2: never more than 2 inside, every round done") {
  corio::process_semaphore sem(2);
  shared_counters mem;
  constexpr int processes = 4;
  const int rounds = corio_test::sanitized ? 300 : 2'000;
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    children.push_back(fork_child([sem, c = mem.c, rounds]() mutable {
      for (int i = 0; i < rounds; ++i) {
        if (!sem.acquire(steady::now() + 10s)) return 1;
        const std::uint64_t now_inside = add(c->inside, 1);
        std::uint64_t seen = load(c->max_inside);
        while (now_inside > seen && !std::atomic_ref(c->max_inside).compare_exchange_weak(seen, now_inside)) {
        }
        add(c->value, 1);
        add(c->inside, std::uint64_t(-1));
        sem.release();
      }
      return 0;
    }));
  }
  for (pid_t pid : children) CHECK(exit_status(pid) == 0);
  CHECK(load(mem.c->value) == static_cast<std::uint64_t>(processes * rounds));
  CHECK(load(mem.c->max_inside) >= 1);
  CHECK(load(mem.c->max_inside) <= 2);
  CHECK(sem.value() == 2);
}

TEST_CASE("async_acquire sleeps in the loop until another process releases") {
  corio::process_semaphore sem(0);
  const pid_t child = fork_child([sem]() mutable {
    ::usleep(100'000);
    sem.release();
    return 0;
  });
  auto [ok, ticks] = run_beside_ticker<bool>([&]() -> corio::task<bool> {
    co_return co_await sem.async_acquire(steady::now() + 10s);
  });
  CHECK(ok);
  CHECK(ticks >= 5);
  CHECK(exit_status(child) == 0);
  CHECK(sem.value() == 0);
}

// ---- event --------------------------------------------------------------------------------

TEST_CASE("an event: wait times out while clear, returns at once once set, clear lowers it") {
  corio::process_event ev;
  CHECK_FALSE(ev.is_set());
  const auto start = steady::now();
  CHECK_FALSE(ev.wait_for(40ms));
  CHECK(steady::now() - start >= 40ms);
  ev.set();
  CHECK(ev.is_set());
  CHECK(ev.wait_for(0ms));
  ev.clear();
  CHECK_FALSE(ev.is_set());
  CHECK_FALSE(ev.wait_for(1ms));
}

TEST_CASE("set() in one process wakes three processes asleep in wait()") {
  corio::process_event ev;
  shared_counters mem;
  std::vector<pid_t> children;
  for (int p = 0; p < 3; ++p) {
    children.push_back(fork_child([ev, c = mem.c]() mutable {
      add(c->step, 1);
      return ev.wait(steady::now() + 10s) ? 0 : 1;
    }));
  }
  REQUIRE(await_at_least(mem.c->step, 3));
  std::this_thread::sleep_for(30ms);  // let them fall asleep
  ev.set();
  for (pid_t pid : children) CHECK(exit_status(pid) == 0);
}

TEST_CASE("async_wait on an event sleeps in the loop until another process sets it") {
  corio::process_event ev;
  const pid_t child = fork_child([ev]() mutable {
    ::usleep(100'000);
    ev.set();
    return 0;
  });
  auto [ok, ticks] = run_beside_ticker<bool>([&]() -> corio::task<bool> {
    co_return co_await ev.async_wait(steady::now() + 10s);
  });
  CHECK(ok);
  CHECK(ticks >= 5);
  CHECK(exit_status(child) == 0);
}

TEST_CASE("a waiter woken by set() returns true even when clear() came right after") {
  corio::shm_region region = corio::shm_region::create(sizeof(corio::process_event_state), "event_clear_test");
  auto* st = new (region.data()) corio::process_event_state{};
  corio::process_event ev(*st);
  const pid_t waiter = fork_child([ev]() mutable { return ev.wait(steady::now() + 10s) ? 0 : 1; });
  // Asleep: its announcement shows in the event_count's waiter half.
  const auto give_up = steady::now() + 10s;
  while ((load(st->wake.word) & 0xffffffffu) == 0 && steady::now() < give_up) std::this_thread::sleep_for(1ms);
  REQUIRE((load(st->wake.word) & 0xffffffffu) != 0);
  ev.set();
  ev.clear();
  CHECK(exit_status(waiter) == 0);
  CHECK_FALSE(ev.is_set());
}

// ---- condition ----------------------------------------------------------------------------

TEST_CASE("condition misuse: wait or notify without the lock throws logic_error") {
  corio::process_condition cv;
  CHECK_THROWS_AS(cv.wait(), std::logic_error);
  CHECK_THROWS_AS(cv.notify(), std::logic_error);
  CHECK_THROWS_AS(cv.notify_all(), std::logic_error);
}

TEST_CASE("a condition wait that times out returns false holding the lock again") {
  corio::process_condition cv;
  (void)cv.lock();
  const auto start = steady::now();
  CHECK_FALSE(cv.wait(steady::now() + 40ms));
  CHECK(steady::now() - start >= 40ms);
  CHECK(cv.get_lock().held_by_this_thread());
  CHECK_FALSE(cv.wait_for([] { return false; }, steady::now() + 10ms));
  cv.unlock();
}

TEST_CASE("notify(1) lets exactly one of three waiting processes return; notify_all the other two") {
  corio::process_condition cv;
  shared_counters mem;
  std::vector<pid_t> children;
  for (int p = 0; p < 3; ++p) {
    children.push_back(fork_child([cv, c = mem.c]() mutable {
      (void)cv.lock();
      add(c->step, 1);
      const bool notified = cv.wait(steady::now() + 10s);
      add(c->value, 1);
      cv.unlock();
      return notified ? 0 : 1;
    }));
  }
  REQUIRE(await_at_least(mem.c->step, 3));
  // Every child has released the lock inside wait() once the parent can take it.
  (void)cv.lock();
  cv.notify(1);
  cv.unlock();
  REQUIRE(await_at_least(mem.c->value, 1));
  std::this_thread::sleep_for(150ms);  // a second wake-up would show here
  CHECK(load(mem.c->value) == 1);
  (void)cv.lock();
  cv.notify_all();
  cv.unlock();
  for (pid_t pid : children) CHECK(exit_status(pid) == 0);
  CHECK(load(mem.c->value) == 3);
}

TEST_CASE("wait_for(predicate) across processes: a consumer sees the producer's value under the lock") {
  corio::process_condition cv;
  shared_counters mem;
  const pid_t consumer = fork_child([cv, c = mem.c]() mutable {
    (void)cv.lock();
    const bool ok = cv.wait_for([c] { return c->value == 5; }, steady::now() + 10s);
    const std::uint64_t seen = c->value;
    cv.unlock();
    return ok && seen == 5 ? 0 : 1;
  });
  for (std::uint64_t v = 1; v <= 5; ++v) {
    std::this_thread::sleep_for(10ms);
    (void)cv.lock();
    mem.c->value = v;  // plain write: the lock orders it
    cv.notify_all();
    cv.unlock();
  }
  CHECK(exit_status(consumer) == 0);
}

TEST_CASE("async_wait_for on a condition sleeps in the loop until another process notifies") {
  corio::process_condition cv;
  shared_counters mem;
  const pid_t producer = fork_child([cv, c = mem.c]() mutable {
    ::usleep(100'000);
    (void)cv.lock();
    c->value = 1;
    cv.notify();
    cv.unlock();
    return 0;
  });
  auto [ok, ticks] = run_beside_ticker<bool>([&]() -> corio::task<bool> {
    (void)co_await cv.get_lock().async_lock();
    const bool got = co_await cv.async_wait_for([&] { return mem.c->value == 1; }, steady::now() + 10s);
    cv.unlock();
    co_return got;
  });
  CHECK(ok);
  CHECK(ticks >= 5);
  CHECK(exit_status(producer) == 0);
}

TEST_CASE("a cancelled async_wait on a condition throws operation_cancelled, unregistered and without the lock") {
  corio::process_condition_state st{};
  corio::process_condition cv(st);
  corio::loop lp;
  std::stop_source source;
  auto waiting = [&]() -> corio::task<void> {
    (void)co_await cv.get_lock().async_lock();
    (void)co_await cv.async_wait(steady::now() + 10s);
  };
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    source.request_stop();
  });
  CHECK_THROWS_AS(lp.run(waiting(), source.get_token()), corio::operation_cancelled);
  stopper.join();
  CHECK_FALSE(cv.get_lock().held_by_this_thread());
  CHECK(load(st.counts) == 0);  // no waiter left behind to swallow a later notify
  (void)cv.lock();
  cv.notify();  // nobody waits: no token is handed out
  CHECK(load(st.counts) == 0);
  cv.unlock();
}

// ---- barrier ------------------------------------------------------------------------------

TEST_CASE("a barrier of 3 processes, 3 rounds: each round hands out indexes 0, 1, 2 once each") {
  shared_counters mem;
  corio::process_barrier b(3, [c = mem.c] { add(c->value, 1); });  // the action, once a round
  constexpr int rounds = 3;
  auto party = [b, c = mem.c]() mutable {
    for (int r = 0; r < rounds; ++r) {
      const std::uint64_t i = b.wait(steady::now() + 10s);
      if (i >= 3) return 1;
      add(c->seen[r], std::uint64_t{1} << (i * 8));
    }
    return 0;
  };
  const pid_t a = fork_child(party);
  const pid_t c2 = fork_child(party);
  CHECK(party() == 0);
  CHECK(exit_status(a) == 0);
  CHECK(exit_status(c2) == 0);
  for (int r = 0; r < rounds; ++r) CHECK(load(mem.c->seen[r]) == 0x010101);
  CHECK(load(mem.c->value) == rounds);
  CHECK_FALSE(b.broken());
  CHECK(b.n_waiting() == 0);
}

TEST_CASE("abort() breaks a barrier: the waiting process and every later wait get broken_barrier") {
  corio::process_barrier b(2);
  shared_counters mem;
  const pid_t waiter = fork_child([b, c = mem.c]() mutable {
    add(c->step, 1);
    try {
      (void)b.wait(steady::now() + 10s);
    } catch (const corio::broken_barrier&) {
      return 0;
    }
    return 1;
  });
  REQUIRE(await_at_least(mem.c->step, 1));
  REQUIRE(await_at_least(mem.c->step, 1));
  const auto give_up = steady::now() + 10s;
  while (b.n_waiting() < 1 && steady::now() < give_up) std::this_thread::sleep_for(1ms);
  b.abort();
  CHECK(exit_status(waiter) == 0);
  CHECK(b.broken());
  CHECK_THROWS_AS((void)b.wait(), corio::broken_barrier);
}

TEST_CASE("a barrier wait past its deadline throws broken_barrier and breaks the barrier") {
  corio::process_barrier b(2);
  CHECK_THROWS_AS((void)b.wait(steady::now() + 30ms), corio::broken_barrier);
  CHECK(b.broken());
  CHECK_THROWS_AS(corio::process_barrier(0), std::invalid_argument);
}

TEST_CASE("async_wait on a barrier sleeps in the loop until the other process arrives") {
  corio::process_barrier b(2);
  const pid_t other = fork_child([b]() mutable {
    ::usleep(100'000);
    return b.wait(steady::now() + 10s) == 1 ? 0 : 1;
  });
  auto [index, ticks] = run_beside_ticker<std::uint64_t>([&]() -> corio::task<std::uint64_t> {
    co_return co_await b.async_wait(steady::now() + 10s);
  });
  CHECK(index == 0);
  CHECK(ticks >= 5);
  CHECK(exit_status(other) == 0);
}

TEST_CASE("a cancelled async_wait on a barrier breaks it") {
  corio::process_barrier b(2);
  corio::loop lp;
  std::stop_source source;
  auto waiting = [&]() -> corio::task<void> { (void)co_await b.async_wait(steady::now() + 10s); };
  std::thread stopper([&] {
    std::this_thread::sleep_for(50ms);
    source.request_stop();
  });
  CHECK_THROWS_AS(lp.run(waiting(), source.get_token()), corio::operation_cancelled);
  stopper.join();
  CHECK(b.broken());
}

// ---- shared_value / shared_array ----------------------------------------------------------

TEST_CASE("shared_value<int> with a lock: 4 processes x 10,000 modify(++) count exactly 40,000") {
  corio::shared_value<int> counter(0);
  CHECK(counter.has_lock());
  std::vector<pid_t> children;
  for (int p = 0; p < 4; ++p) {
    children.push_back(fork_child([counter] {
      for (int i = 0; i < 10'000; ++i) counter.modify([](int& v) { ++v; });
      return 0;
    }));
  }
  for (pid_t pid : children) CHECK(exit_status(pid) == 0);
  CHECK(counter.get() == 40'000);
}

TEST_CASE("shared_value: get_lock() is re-entrant like Python's RLock, get() works inside it") {
  corio::shared_value<double> v(1.5);
  {
    std::lock_guard g(v.get_lock());
    CHECK(v.get() == 1.5);  // re-enters the lock this thread holds
    v.raw() = 2.5;
  }
  CHECK(v.get() == 2.5);
  v.set(-1);
  CHECK(v.modify([](double& x) { return x * 2; }) == -2);
}

TEST_CASE("shared_value without a lock: get/set work, get_lock and modify throw logic_error") {
  corio::shared_value<std::uint64_t> v(7, corio::with_lock::no);
  CHECK_FALSE(v.has_lock());
  CHECK(v.get() == 7);
  const pid_t child = fork_child([v] {
    v.set(9);
    return 0;
  });
  CHECK(exit_status(child) == 0);
  CHECK(v.get() == 9);
  CHECK_THROWS_AS((void)v.get_lock(), std::logic_error);
  CHECK_THROWS_AS(v.modify([](std::uint64_t& x) { ++x; }), std::logic_error);
}

TEST_CASE("shared_array: get/set/snapshot, out_of_range past the end, modify across processes") {
  corio::shared_array<std::int32_t> a{1, 2, 3, 4};
  CHECK(a.size() == 4);
  CHECK(a.get(2) == 3);
  a.set(3, 40);
  CHECK(a.snapshot() == std::vector<std::int32_t>{1, 2, 3, 40});
  CHECK_THROWS_AS((void)a.get(4), std::out_of_range);
  CHECK_THROWS_AS(a.set(99, 0), std::out_of_range);

  std::vector<pid_t> children;
  for (int p = 0; p < 4; ++p) {
    children.push_back(fork_child([a] {
      for (int i = 0; i < 1'000; ++i)
        a.modify([](std::span<std::int32_t> s) {
          for (auto& x : s) ++x;
        });
      return 0;
    }));
  }
  for (pid_t pid : children) CHECK(exit_status(pid) == 0);
  CHECK(a.snapshot() == std::vector<std::int32_t>{4'001, 4'002, 4'003, 4'040});
  corio::shared_array<char> zeros(3);
  CHECK(zeros.snapshot() == std::vector<char>{0, 0, 0});
}

TEST_CASE("a shared_value sent over SCM_RIGHTS is the same value; a lying element count is refused") {
  corio::shared_value<int> v(5);
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  corio::send_fd(sv[0], v.region());
  corio::shared_value<int> received(corio::shm_region::receive(sv[1]));
  received.set(6);
  CHECK(v.get() == 6);

  corio::shared_array<int> small(2);
  small.span()[0] = 1;
  // Forge the header's count: the receiver checks it against the mapped size.
  auto* count = reinterpret_cast<std::uint64_t*>(small.region().data() + sizeof(corio::process_recursive_mutex_state));
  *count = 1'000'000;
  corio::send_fd(sv[0], small.region());
  CHECK_THROWS_AS(corio::shared_array<int>(corio::shm_region::receive(sv[1])), std::invalid_argument);
  corio::send_fd(sv[0], v.region());
  CHECK_NOTHROW(corio::shared_array<int>(corio::shm_region::receive(sv[1])));
  ::close(sv[0]);
  ::close(sv[1]);
}
