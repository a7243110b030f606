// process_mutex and process_recursive_mutex: exclusion across forked processes (exact
// counts), timeouts, misuse errors, the owner-died handover after a SIGKILL (to a waiter
// already asleep and to a later locker), pid-reuse-proof liveness, re-entry, and
// async_lock sleeping inside a loop while its other coroutines run.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"
#include "loop_ticker_support.hpp"

#include <corio/coro/task.hpp>
#include <corio/ipc/detail/process_owner.hpp>
#include <corio/ipc/process_mutex.hpp>
#include <corio/ipc/process_recursive_mutex.hpp>
#include <corio/ipc/shm_region.hpp>
#include <corio/runtime/futex_ops.hpp>
#include <corio/runtime/kernel_features.hpp>
#include <corio/runtime/loop.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio::lock_result;
using corio::process_mutex;
using corio::process_recursive_mutex;
using corio_test::exit_status;
using corio_test::fork_child;
using status = corio::lock_result::status;
using steady = std::chrono::steady_clock;

namespace {

struct shared_block {
  corio::process_mutex_state mutex;
  corio::process_recursive_mutex_state recursive;
  std::uint64_t counter;  // plain increments: exact only under mutual exclusion
  std::uint64_t child_token;
  std::uint64_t step;
};

std::uint64_t load(const std::uint64_t& v) {
  return std::atomic_ref(const_cast<std::uint64_t&>(v)).load(std::memory_order_acquire);
}
void store(std::uint64_t& v, std::uint64_t x) { std::atomic_ref(v).store(x, std::memory_order_release); }

// Spins until the shared step reaches `at_least`, failing after 10 s (a child that never
// got there) instead of hanging the suite.
bool await_step(const shared_block* b, std::uint64_t at_least) {
  const auto give_up = steady::now() + 10s;
  while (load(b->step) < at_least) {
    if (steady::now() > give_up) return false;
    ::usleep(1000);
  }
  return true;
}

struct shared_memory {
  corio::shm_region region = corio::shm_region::create(sizeof(shared_block), "process_mutex_test");
  shared_block* b = new (region.data()) shared_block{};
};

// A child that takes the lock, publishes its token, says so (step 1) and sleeps until killed.
pid_t hold_until_killed(shared_block* b) {
  return fork_child([b] {
    process_mutex m(b->mutex);
    (void)m.lock();
    store(b->child_token, corio::detail::this_thread_owner_token());
    store(b->step, 1);
    for (;;) ::pause();
    return 0;
  });
}

void kill_and_reap(pid_t pid) {
  REQUIRE(::kill(pid, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
}

void async_lock_while_another_process_holds();

}  // namespace

TEST_CASE("an uncontended lock and unlock: acquired, held by this thread, consistent") {
  process_mutex m;
  const lock_result r = m.lock();
  CHECK(r.value() == status::acquired);
  CHECK(static_cast<bool>(r));
  CHECK(m.held_by_this_thread());
  CHECK(m.consistent());
  m.unlock();
  CHECK_FALSE(m.held_by_this_thread());
  CHECK(m.try_lock().value() == status::acquired);
  m.unlock();
}

TEST_CASE("misuse throws logic_error: relocking by the holder, unlocking by a non-holder") {
  process_mutex m;
  CHECK_THROWS_AS(m.unlock(), std::logic_error);
  (void)m.lock();
  CHECK_THROWS_AS((void)m.lock(), std::logic_error);
  std::thread other([&] { CHECK_THROWS_AS(m.unlock(), std::logic_error); });
  other.join();
  CHECK(m.held_by_this_thread());  // the failed unlock left it held
  m.unlock();
}

TEST_CASE("try_lock and try_lock_for report timed_out while another thread holds the lock") {
  process_mutex m;
  (void)m.lock();
  std::thread other([&] {
    CHECK(m.try_lock().value() == status::timed_out);
    const auto start = steady::now();
    CHECK(m.try_lock_for(50ms).value() == status::timed_out);
    const auto waited = steady::now() - start;
    CHECK(waited >= 50ms);
    CHECK(waited < 5s);
  });
  other.join();
  m.unlock();
}

TEST_CASE("4 processes x 10,000 increments under the lock count exactly 40,000") {
  shared_memory mem;
  constexpr int processes = 4;
  constexpr int rounds = 10'000;
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    children.push_back(fork_child([b = mem.b] {
      process_mutex m(b->mutex);
      for (int i = 0; i < rounds; ++i) {
        if (m.lock().value() != status::acquired) return 1;
        b->counter = b->counter + 1;  // not atomic: the lock is what makes it exact
        m.unlock();
      }
      return 0;
    }));
  }
  for (pid_t c : children) CHECK(exit_status(c) == 0);
  CHECK(mem.b->counter == processes * rounds);
  CHECK(mem.b->mutex.owner == 0);
}

TEST_CASE("4 threads x 10,000 increments under the lock count exactly 40,000 (ThreadSanitizer checks the ordering)") {
  process_mutex m;
  std::uint64_t counter = 0;  // plain: a data race unless lock and unlock order it
  const int rounds = corio_test::sanitized ? 2'000 : 10'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < rounds; ++i) {
        (void)m.lock();
        ++counter;
        m.unlock();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(counter == static_cast<std::uint64_t>(4 * rounds));
}

TEST_CASE("lost-wake-up stress: 3 processes contend with sleeps and no periodic liveness wake-up") {
  // With the liveness checks pushed out to an hour, a sleeper's only way out is the
  // unlocker's wake-up (or its 10 s deadline, which fails the child): a lost wake-up
  // shows as a failure here instead of a 100 ms stall.
  struct intervals_guard {
    intervals_guard() { corio::detail::set_owner_check_intervals(std::chrono::hours(1), std::chrono::hours(1)); }
    ~intervals_guard() { corio::detail::set_owner_check_intervals(10ms, 100ms); }
  } guard;
  shared_memory mem;
  constexpr int processes = 3;
  const int rounds = corio_test::sanitized ? 500 : 3'000;
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    children.push_back(fork_child([b = mem.b, rounds] {
      process_mutex m(b->mutex);
      for (int i = 0; i < rounds; ++i) {
        if (m.try_lock_for(10s).value() != status::acquired) return 1;
        b->counter = b->counter + 1;
        // Now and then hold it past the spinners' patience (~0.2 ms): waiters go to sleep.
        if (i % 64 == 0) ::usleep(1000);
        m.unlock();
      }
      return 0;
    }));
  }
  for (pid_t c : children) CHECK(exit_status(c) == 0);
  CHECK(mem.b->counter == static_cast<std::uint64_t>(processes * rounds));
  const std::uint64_t epoch = load(mem.b->mutex.wake.word) >> 32;
  CHECK(epoch > 0);  // the sleeping path ran: unlocks woke announced sleepers
}

TEST_CASE("a holder killed by SIGKILL: the next locker gets owner_died, then locks work normally") {
  shared_memory mem;
  const pid_t holder = hold_until_killed(mem.b);
  REQUIRE(await_step(mem.b, 1));
  process_mutex m(mem.b->mutex);
  CHECK(m.try_lock_for(30ms).value() == status::timed_out);  // the holder is alive
  kill_and_reap(holder);

  const auto start = steady::now();
  const lock_result r = m.try_lock_for(10s);
  CHECK(r.value() == status::owner_died);
  CHECK(r.owner_died());
  CHECK(steady::now() - start < 2s);  // detected within ~100 ms; generous for a busy machine
  CHECK(m.held_by_this_thread());
  CHECK_FALSE(m.consistent());
  m.unlock();

  // The flag outlives the unlock until someone repairs the data.
  CHECK(m.lock().value() == status::acquired);
  CHECK_FALSE(m.consistent());
  m.mark_consistent();
  m.unlock();
  CHECK(m.lock().value() == status::acquired);
  CHECK(m.consistent());
  m.unlock();
}

TEST_CASE("a waiter already asleep when the holder is killed is handed the lock with owner_died") {
  shared_memory mem;
  const pid_t holder = hold_until_killed(mem.b);
  REQUIRE(await_step(mem.b, 1));
  // The waiter is another process, asleep in the lock when the holder dies.
  const pid_t waiter = fork_child([b = mem.b] {
    process_mutex m(b->mutex);
    store(b->step, 2);
    const lock_result r = m.try_lock_for(10s);
    if (r.value() != status::owner_died) return r.timed_out() ? 2 : 1;
    b->counter = 7;
    m.unlock();
    return 0;
  });
  REQUIRE(await_step(mem.b, 2));
  std::this_thread::sleep_for(150ms);  // past the waiter's first liveness check: it sleeps
  kill_and_reap(holder);
  CHECK(exit_status(waiter) == 0);
  CHECK(mem.b->counter == 7);
  process_mutex m(mem.b->mutex);
  CHECK(m.try_lock().value() == status::acquired);
  m.unlock();
}

TEST_CASE("try_lock hands a dead holder's lock on at once") {
  shared_memory mem;
  const pid_t holder = hold_until_killed(mem.b);
  REQUIRE(await_step(mem.b, 1));
  kill_and_reap(holder);
  process_mutex m(mem.b->mutex);
  CHECK(m.try_lock().value() == status::owner_died);
  m.unlock();
}

TEST_CASE("owner liveness: a live thread, a zombie, a reaped child, and a reused tid with another start time") {
  const std::uint64_t mine = corio::detail::this_thread_owner_token();
  CHECK(mine != 0);
  CHECK((mine >> 63) == 0);
  CHECK((mine & 0xffffffffu) == static_cast<std::uint64_t>(::gettid()));
  CHECK((mine >> 32) != 0);  // the start time was read (ticks since boot; this thread is not that old)
  CHECK(corio::detail::owner_alive(mine));
  // The same tid with another start time: what a reused pid looks like.
  CHECK_FALSE(corio::detail::owner_alive(mine ^ (std::uint64_t{1} << 32)));

  shared_memory mem;
  const pid_t child = fork_child([b = mem.b] {
    store(b->child_token, corio::detail::this_thread_owner_token());
    return 0;
  });
  // Exited but not reaped: a zombie holds no lock.
  const auto give_up = steady::now() + 10s;
  siginfo_t info{};
  REQUIRE(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT) == 0);
  const std::uint64_t token = load(mem.b->child_token);
  CHECK((token & 0xffffffffu) == static_cast<std::uint64_t>(child));
  CHECK(token != mine);
  CHECK_FALSE(corio::detail::owner_alive(token));
  CHECK(exit_status(child) == 0);
  CHECK_FALSE(corio::detail::owner_alive(token));
  CHECK(steady::now() < give_up);

  // A thread's token differs from its process's, and dies with the thread.
  std::uint64_t thread_token = 0;
  std::thread t([&] { thread_token = corio::detail::this_thread_owner_token(); });
  t.join();
  CHECK(thread_token != mine);
  CHECK_FALSE(corio::detail::owner_alive(thread_token));
}

TEST_CASE("a fork()ed child gets a token of its own, not its parent's cached one") {
  const std::uint64_t parent = corio::detail::this_thread_owner_token();
  shared_memory mem;
  const pid_t child = fork_child([b = mem.b] {
    store(b->child_token, corio::detail::this_thread_owner_token());
    return 0;
  });
  CHECK(exit_status(child) == 0);
  CHECK(load(mem.b->child_token) != parent);
  CHECK((load(mem.b->child_token) & 0xffffffffu) == static_cast<std::uint64_t>(child));
}

// Both paths of the loop's futex sleep: the io_uring futex (when the kernel has it) and the
// loop's futex thread that kernels before 6.7 use (runtime/futex_ops.hpp).
struct fallback_guard {
  explicit fallback_guard(bool on) { corio::detail::force_futex_thread(on); }
  ~fallback_guard() { corio::detail::force_futex_thread(false); }
};

TEST_CASE("async_lock sleeps in the loop while another process holds the lock; the ticker keeps running") {
  for (const bool fallback : {false, true}) {
    if (!fallback && !corio::kernel_feature_on(corio::kernel_feature::futex_wait)) {
      MESSAGE("no io_uring futex wait (Linux 6.7+, or CORIO_DISABLE_FEATURES): only the futex thread is tested");
      continue;
    }
    CAPTURE(fallback);
    const fallback_guard fallback_mode(fallback);
    async_lock_while_another_process_holds();
  }
}

TEST_CASE("async_lock is handed a SIGKILLed holder's lock with owner_died") {
  shared_memory mem;
  const pid_t holder = hold_until_killed(mem.b);
  REQUIRE(await_step(mem.b, 1));
  process_mutex m(mem.b->mutex);
  std::thread killer([holder] {
    std::this_thread::sleep_for(50ms);
    kill_and_reap(holder);
  });
  auto [result, ticks] = corio_test::run_beside_ticker<lock_result>([&]() -> corio::task<lock_result> {
    co_return co_await m.async_lock(steady::now() + 10s);
  });
  killer.join();
  CHECK(result.value() == status::owner_died);
  CHECK(ticks >= 3);
  CHECK_FALSE(m.consistent());
  m.unlock();
}

namespace {
void async_lock_while_another_process_holds() {
  shared_memory mem;
  const pid_t holder = fork_child([b = mem.b] {
    process_mutex m(b->mutex);
    (void)m.lock();
    store(b->step, 1);
    ::usleep(150'000);
    b->counter = 42;
    m.unlock();
    return 0;
  });
  REQUIRE(await_step(mem.b, 1));

  process_mutex m(mem.b->mutex);
  auto [seen, ticks] = corio_test::run_beside_ticker<std::uint64_t>([&]() -> corio::task<std::uint64_t> {
    const lock_result r = co_await m.async_lock(steady::now() + 10s);
    if (r.value() != status::acquired) co_return 0;
    const std::uint64_t value = mem.b->counter;
    m.unlock();
    co_return value;
  });
  CHECK(seen == 42);
  CHECK(ticks >= 5);  // ~150 ms of 5 ms ticks ran while the lock was awaited
  CHECK(exit_status(holder) == 0);
}
}  // namespace

TEST_CASE("async_lock with a deadline returns timed_out while the holder lives") {
  process_mutex m;
  (void)m.lock();
  std::thread other([&] {
    corio::loop lp;
    auto attempt = [&]() -> corio::task<lock_result> { co_return co_await m.async_lock(steady::now() + 40ms); };
    CHECK(lp.run(attempt()).value() == status::timed_out);
  });
  other.join();
  m.unlock();
}

TEST_CASE("process_recursive_mutex: the holder re-enters; another process waits until the last unlock") {
  shared_memory mem;
  process_recursive_mutex m(mem.b->recursive);
  CHECK(m.lock().value() == status::acquired);
  CHECK(m.lock().value() == status::acquired);
  CHECK(m.try_lock().value() == status::acquired);
  CHECK(m.depth() == 3);
  m.unlock();
  m.unlock();
  CHECK(m.depth() == 1);

  const pid_t child = fork_child([b = mem.b] {
    process_recursive_mutex cm(b->recursive);
    if (cm.try_lock().value() != status::timed_out) return 1;  // the parent still holds it
    store(b->step, 1);
    if (cm.try_lock_for(10s).value() != status::acquired) return 2;
    const int seen = static_cast<int>(b->counter);
    cm.unlock();
    return seen == 5 ? 0 : 3;
  });
  REQUIRE(await_step(mem.b, 1));
  mem.b->counter = 5;
  m.unlock();
  CHECK(m.depth() == 0);
  CHECK(exit_status(child) == 0);
  CHECK_THROWS_AS(m.unlock(), std::logic_error);
}

TEST_CASE("process_recursive_mutex: a killed holder at depth 2 hands over at depth 1") {
  shared_memory mem;
  const pid_t holder = fork_child([b = mem.b] {
    process_recursive_mutex m(b->recursive);
    (void)m.lock();
    (void)m.lock();
    store(b->step, 1);
    for (;;) ::pause();
    return 0;
  });
  REQUIRE(await_step(mem.b, 1));
  kill_and_reap(holder);
  process_recursive_mutex m(mem.b->recursive);
  CHECK(m.try_lock_for(10s).value() == status::owner_died);
  CHECK(m.depth() == 1);
  CHECK_FALSE(m.consistent());
  m.mark_consistent();
  m.unlock();
  CHECK(m.depth() == 0);
}

TEST_CASE("a process_mutex made with its own region works in a forked child and over SCM_RIGHTS") {
  process_mutex m;
  (void)m.lock();
  const pid_t child = fork_child([m]() mutable { return m.try_lock_for(20ms).timed_out() ? 0 : 1; });
  CHECK(exit_status(child) == 0);

  // The region sent over a Unix socket and mapped again: the same lock at another address.
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  corio::send_fd(sv[0], m.region());
  process_mutex received(corio::shm_region::receive(sv[1]));
  ::close(sv[0]);
  ::close(sv[1]);
  CHECK(&received.state() != &m.state());
  CHECK(received.held_by_this_thread());
  m.unlock();
  CHECK_FALSE(received.held_by_this_thread());

  corio::process_mutex_state plain{};
  process_mutex view(plain);
  CHECK_THROWS_AS((void)view.region(), std::logic_error);
  CHECK_THROWS_AS(process_mutex(corio::shm_region::create(8, "too_small")), std::invalid_argument);
}
