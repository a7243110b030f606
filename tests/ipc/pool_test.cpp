// pool: values, void, strings, coroutines and exceptions come back from worker processes;
// map keeps order, imap_unordered yields everything once; close/join/terminate; a worker
// SIGKILLed mid-task fails only its own task and is replaced; futures awaited in a loop;
// 100,000 tiny tasks; a long task never holds up the others; the Python tutorial's
// scheduling (four start at once, the fifth after one ends, in a pid already seen); the
// rest of Python's Pool: imap (ordered, lazy, bounded), starmap, apply, map_async and
// callbacks, initializer, max_tasks_per_child, remote exceptions caught by type.
#include <doctest/doctest.h>

#include <corio/coro/task.hpp>
#include <corio/coro/when_any.hpp>
#include <corio/ipc/pool.hpp>
#include <corio/runtime/errors.hpp>
#include <corio/ipc/detail/id_frame.hpp>
#include <corio/ipc/detail/pool_core.hpp>
#include <corio/ipc/pool.hpp>
#include <corio/ipc/spsc_ring.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <ranges>
#include <memory>
#include <cstring>
#include <fstream>
#include <sstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "ipc_test_support.hpp"

using namespace std::chrono_literals;

namespace {

int add(int a, int b) { return a + b; }
int square(int x) { return x * x; }
void nothing(int) {}
std::string shout(std::string s) {
  for (char& c : s) c = static_cast<char>(c - ('a' <= c && c <= 'z' ? 32 : 0));
  return s;
}
int fails(int x) { throw std::invalid_argument("bad x " + std::to_string(x)); }
corio::task<int> slow_square(int x) {
  co_await corio::sleep_for(1ms);
  co_return x * x;
}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
pid_t my_pid(int) { return ::getpid(); }
int slow_add(int a, int b) {
  std::this_thread::sleep_for(20us);
  return a + b;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Writes its pid to `fd`, then sleeps long enough for the test to kill it.
int report_pid_then_sleep(int fd, int ms) {
  const pid_t pid = ::getpid();
  if (::write(fd, &pid, sizeof pid) != sizeof pid) return -1;
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

// The tutorial's long_time_task, timed: (pid, start, end) on CLOCK_MONOTONIC, which every
// process of the machine shares.
std::tuple<pid_t, std::int64_t, std::int64_t> timed_task(int ms) {
  const std::int64_t start = now_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return {::getpid(), start, now_ns()};
}

// x * x; for x == 57 it first SIGKILLs its own worker, once: the marker file records that
// the kill happened, so a second run of the task returns normally. Trivially copyable (the
// path travels in the callable).
struct square_dying_once_at_57 {
  char marker[64];
  int operator()(int x) const {
    if (x == 57) {
      const int fd = ::open(marker, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
      if (fd >= 0) ::kill(::getpid(), SIGKILL);
    }
    return x * x;
  }
};

// Runs fn() (which uses pool p) on a helper thread, allowing it `limit`: past that the
// pool is terminated (failing what fn waits for) and the test fails with a message,
// rather than hanging until meson's timeout.
template <class F>
auto within(corio::pool& p, std::chrono::seconds limit, F fn) {
  auto done = std::async(std::launch::async, fn);
  if (done.wait_for(limit) != std::future_status::ready) {
    p.terminate();
    done.wait();
    FAIL("the pool did not finish within " << limit.count() << " s");
  }
  return done.get();
}

// map over 0..199 with item 57 killing its worker once, with `retries` (and workers
// retiring after `max_tasks` tasks when not 0).
std::vector<int> map_200_with_a_kill(unsigned retries, unsigned max_tasks = 0) {
  square_dying_once_at_57 fn{};
  std::snprintf(fn.marker, sizeof fn.marker, "/tmp/corio_pool_retry_%d", static_cast<int>(::getpid()));
  ::unlink(fn.marker);
  struct cleanup {
    const char* path;
    ~cleanup() { CHECK(::unlink(path) == 0); }  // the kill did happen
  } remove_marker{fn.marker};
  std::vector<int> items(200);
  for (int i = 0; i < 200; ++i) items[static_cast<std::size_t>(i)] = i;
  corio::pool p(2, {.retries = retries, .max_tasks_per_child = max_tasks});
  return within(p, 30s, [&] { return p.map(fn, items); });
}

// ---- the rest of Python's Pool -------------------------------------------------------------

// Set by the initializer in each worker; tasks report it with their pid.
int g_init_tag = 0;
void record_init(int fd, int tag) {
  g_init_tag = tag;
  const pid_t pid = ::getpid();
  if (::write(fd, &pid, sizeof pid) != sizeof pid) std::abort();  // a pipe write of 4 bytes is atomic
}

// Pairs of tasks that meet: task i waits (up to 10 s) until task i ^ 1 has started too.
// With 2 workers the two tasks of a pair therefore run in different workers, so each
// worker runs exactly one task of each pair: a deterministic share for counting tasks
// per pid. The counters live in a shared anonymous mapping made before the pool forks.
std::atomic<int>* g_pairs = nullptr;
struct pair_counters {
  static constexpr std::size_t count = 64;
  void* mem;
  pair_counters() {
    mem = ::mmap(nullptr, sizeof(std::atomic<int>) * count, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mem != MAP_FAILED);
    g_pairs = new (mem) std::atomic<int>[count]{};
  }
  ~pair_counters() { ::munmap(mem, sizeof(std::atomic<int>) * count); }
};
bool meet_partner(int i) {
  std::atomic<int>& c = g_pairs[static_cast<std::size_t>(i / 2)];
  c.fetch_add(1);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (c.load() < 2)
    if (std::chrono::steady_clock::now() > deadline) return false;
  return true;
}
pid_t pid_in_pair(int i) { return meet_partner(i) ? ::getpid() : -1; }
std::pair<pid_t, int> pid_and_tag_in_pair(int i) { return {pid_in_pair(i), g_init_tag}; }

// Every pid written to the pipe `fd` (non-blocking read end) so far.
std::vector<pid_t> read_pids(int fd) {
  std::vector<pid_t> out;
  pid_t pid;
  while (::read(fd, &pid, sizeof pid) == sizeof pid) out.push_back(pid);
  return out;
}

struct pid_pipe {
  int fds[2];
  pid_pipe() { REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0); }
  ~pid_pipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
};

// The process's resident set in bytes.
std::size_t rss_bytes() {
  long pages_total = 0, pages_resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
    std::fclose(f);
  }
  return static_cast<std::size_t>(pages_resident) * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

struct my_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct my_derived_error : my_error {
  using my_error::my_error;
};
struct unregistered_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
int throws_my_error(int x) { throw my_error("my " + std::to_string(x)); }
int throws_derived(int x) { throw my_derived_error("derived " + std::to_string(x)); }
// The what() of the exception p.apply(fn, x) throws when its type is exactly E, else "".
template <class E, class F>
std::string what_if_exactly(corio::pool& p, F fn, int x) {
  try {
    (void)p.apply(fn, x);
  } catch (const E& e) {
    if (typeid(e) == typeid(E)) return e.what();
  } catch (...) {
  }
  return "";
}
int throws_overflow(int x) { throw std::overflow_error("too big " + std::to_string(x)); }
int throws_unregistered(int x) { throw unregistered_error("plain " + std::to_string(x)); }

}  // namespace

TEST_CASE("submit brings back values, strings and void; apply_async is the same call") {
  corio::pool p(2);
  auto a = p.submit(add, 2, 3);
  auto s = p.submit(shout, std::string("hello pool"));
  auto v = p.apply_async(nothing, 1);
  auto l = p.submit([](int x, int y) { return x * 100 + y; }, 4, 2);
  CHECK(a.get() == 5);
  CHECK(s.get() == "HELLO POOL");
  v.get();
  CHECK(l.get() == 402);
  CHECK(v.ready());
  CHECK_THROWS_AS(a.get(), std::logic_error);  // get() once
  p.close();
  p.join();
}

TEST_CASE("an exception escaping fn comes back as remote_error with its type name and message") {
  corio::pool p(2);
  auto f = p.submit(fails, 7);
  try {
    (void)f.get();
    FAIL("get() did not throw");
  } catch (const corio::remote_error& e) {
    CHECK(e.type_name() == "std::invalid_argument");
    CHECK(e.message() == "bad x 7");
    CHECK(std::string(e.what()) == "std::invalid_argument: bad x 7");
  }
  CHECK(p.submit(add, 1, 1).get() == 2);  // the worker survived
}

TEST_CASE("a coroutine fn runs to completion on a loop inside the worker") {
  corio::pool p(2);
  auto f = p.submit(slow_square, 12);
  CHECK(f.get() == 144);
}

TEST_CASE("map keeps input order with chunksize 1 and 7 over 1000 items") {
  corio::pool p(2);
  std::vector<int> items(1000);
  for (int i = 0; i < 1000; ++i) items[static_cast<std::size_t>(i)] = i;
  std::vector<int> expected(1000);
  for (int i = 0; i < 1000; ++i) expected[static_cast<std::size_t>(i)] = i * i;
  CHECK(p.map(square, items) == expected);
  CHECK(p.map(square, items, 7) == expected);
  CHECK(p.map(square, std::vector<int>{}) == std::vector<int>{});
  CHECK_THROWS_AS((void)p.map(square, items, 0), std::invalid_argument);
}

TEST_CASE("map rethrows the first failed chunk's exception") {
  corio::pool p(2);
  CHECK_THROWS_WITH_AS((void)p.map(fails, std::vector<int>{1, 2, 3}, 2), "std::invalid_argument: bad x 1",
                       corio::remote_error);
}

TEST_CASE("imap_unordered yields every result exactly once") {
  corio::pool p(2);
  std::vector<int> items(500);
  for (int i = 0; i < 500; ++i) items[static_cast<std::size_t>(i)] = i;
  for (std::size_t chunksize : {std::size_t{1}, std::size_t{7}}) {
    std::multiset<int> got;
    for (int v : p.imap_unordered(square, items, chunksize)) got.insert(v);
    std::multiset<int> expected;
    for (int i = 0; i < 500; ++i) expected.insert(i * i);
    CHECK(got == expected);
  }
}

TEST_CASE("imap_unordered yields a short task before a long one submitted earlier") {
  corio::pool p(2);
  std::vector<int> order;
  for (int v : p.imap_unordered(sleep_ms, std::vector<int>{1000, 1})) order.push_back(v);
  CHECK(order == std::vector<int>{1, 1000});
}

TEST_CASE("close forbids submit; join waits for every task, then the workers have exited") {
  corio::pool p(2);
  std::vector<corio::pool_future<int>> fs;
  for (int i = 0; i < 6; ++i) fs.push_back(p.submit(sleep_ms, 20));
  const auto pids = p.worker_pids();
  REQUIRE(pids.size() == 2);
  CHECK_THROWS_AS(p.join(), std::logic_error);  // join before close
  p.close();
  CHECK_THROWS_WITH_AS((void)p.submit(add, 1, 2), "corio::pool: submit after close()", std::logic_error);
  p.join();
  for (auto& f : fs) {
    CHECK(f.ready());
    CHECK(f.get() == 20);
  }
  CHECK(p.worker_pids().empty());
  for (pid_t pid : pids) CHECK(::kill(pid, 0) == -1);  // exited and reaped
}

TEST_CASE("terminate kills the workers now and fails pending futures with pool_terminated") {
  corio::pool p(2);
  auto done = p.submit(add, 1, 2);
  CHECK(done.get() == 3);
  std::vector<corio::pool_future<int>> fs;
  for (int i = 0; i < 5; ++i) fs.push_back(p.submit(sleep_ms, 20000));
  std::this_thread::sleep_for(50ms);  // two of them are running
  const auto start = std::chrono::steady_clock::now();
  p.terminate();
  for (auto& f : fs) CHECK_THROWS_AS((void)f.get(), corio::pool_terminated);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK(p.worker_pids().empty());
  CHECK_THROWS_AS((void)p.submit(add, 1, 2), corio::pool_terminated);
  p.join();  // after terminate: returns at once
}

TEST_CASE("a future outliving its pool fails with pool_terminated") {
  corio::pool_future<int> f;
  {
    corio::pool p(1);
    f = p.submit(sleep_ms, 20000);
  }
  CHECK_THROWS_AS((void)f.get(), corio::pool_terminated);
}

TEST_CASE("a worker SIGKILLed mid-task: that future gets worker_lost, the worker is replaced, the rest complete") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  corio::pool p(2);
  const auto before = p.worker_pids();
  auto victim = p.submit(report_pid_then_sleep, fds[1], 30000);
  pid_t pid = 0;
  REQUIRE(::read(fds[0], &pid, sizeof pid) == sizeof pid);
  CHECK(std::find(before.begin(), before.end(), pid) != before.end());
  std::vector<corio::pool_future<int>> others;
  for (int i = 0; i < 200; ++i) others.push_back(p.submit(add, i, 1));
  REQUIRE(::kill(pid, SIGKILL) == 0);
  try {
    (void)victim.get();
    FAIL("get() did not throw");
  } catch (const corio::worker_lost& e) {
    CHECK(std::string(e.what()) == "pool worker " + std::to_string(pid) +
                                       " died (killed by signal 9: Killed) while running this task");
  }
  for (int i = 0; i < 200; ++i) CHECK(others[static_cast<std::size_t>(i)].get() == i + 1);
  // The replacement: two live workers, the dead pid gone, a new one in its place.
  std::vector<pid_t> after;
  for (int i = 0; i < 500; ++i) {
    after = p.worker_pids();
    if (after.size() == 2 && std::find(after.begin(), after.end(), pid) == after.end()) break;
    std::this_thread::sleep_for(2ms);
  }
  REQUIRE(after.size() == 2);
  CHECK(std::find(after.begin(), after.end(), pid) == after.end());
  std::set<pid_t> seen;
  for (int i = 0; i < 40; ++i) seen.insert(p.submit(my_pid, 0).get());
  for (pid_t s : seen) CHECK(std::find(after.begin(), after.end(), s) != after.end());
  p.close();
  p.join();
  ::close(fds[0]);
  ::close(fds[1]);
}

// True when pid is a live child of this process (never signal a recycled pid).
bool is_our_child(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return false;
  int ppid = 0;
  const int n = std::fscanf(f, "%*d (%*[^)]) %*c %d", &ppid);
  std::fclose(f);
  return n == 1 && ppid == ::getpid();
}

TEST_CASE("workers SIGKILLed at random while 20,000 tasks stream: each task completes or fails with worker_lost") {
  corio::pool p(2);
  std::atomic<bool> done{false};
  std::atomic<int> kills{0};
  std::thread killer([&] {
    while (!done.load() && kills.load() < 20) {
      std::this_thread::sleep_for(3ms);
      auto pids = p.worker_pids();
      if (pids.empty()) continue;
      const pid_t victim = pids[static_cast<std::size_t>(kills.load()) % pids.size()];
      if (is_our_child(victim) && ::kill(victim, SIGKILL) == 0) kills.fetch_add(1);
    }
  });
  std::vector<corio::pool_future<int>> fs;
  for (int i = 0; i < 20000; ++i) fs.push_back(p.submit(slow_add, i, 7));
  int ok = 0, lost = 0, wrong = 0;
  for (int i = 0; i < 20000; ++i) {
    try {
      if (fs[static_cast<std::size_t>(i)].get() == i + 7)
        ++ok;
      else
        ++wrong;
    } catch (const corio::worker_lost&) {
      ++lost;
    }
  }
  done = true;
  killer.join();
  CHECK(wrong == 0);
  CHECK(ok + lost == 20000);
  CHECK(lost <= kills.load());  // a death fails at most the one task its worker held
  MESSAGE(kills.load() << " kills, " << lost << " tasks lost");
  CHECK(p.submit(add, 1, 2).get() == 3);
  p.close();
  p.join();
}

TEST_CASE("a worker that exits inside fn fails its task with worker_lost and is replaced") {
  corio::pool p(1);
  auto f = p.submit([](int code) -> int { ::_exit(code); }, 3);
  CHECK_THROWS_WITH_AS((void)f.get(), doctest::Contains("(exited with status 3) while running this task"),
                       corio::worker_lost);
  CHECK(p.submit(add, 20, 22).get() == 42);
}

TEST_CASE("a future is awaited inside a corio loop and resumes on it") {
  corio::pool p(2);
  corio::loop lp;
  auto main = [&]() -> corio::task<int> {
    auto a = p.submit(add, 40, 2);
    auto b = p.submit(slow_square, 3);
    const int x = co_await a;
    const int y = co_await b.async_get();
    CHECK(corio::loop::current() == &lp);
    co_return x + y;
  };
  CHECK(lp.run(main()) == 51);
}

namespace {

// Runs race(f) on a loop, f the future of a 3 s task; race awaits f under a cancellation
// that fires at 100 ms. The await must end then, not when the worker is done, and the
// reply must still arrive in f afterwards.
template <class Race>
void check_the_await_ends_before_the_worker(Race race) {
  corio::pool p(1);
  corio::loop lp;
  auto f = p.submit(sleep_ms, 3000);
  auto main = [&]() -> corio::task<void> {
    const auto start = std::chrono::steady_clock::now();
    co_await race(f);
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= 100ms);
    CHECK(waited < 2s);  // not the 3 s the worker takes
    CHECK_FALSE(f.ready());
  };
  lp.run(main());
  REQUIRE(f.wait_for(10s));  // the reply still arrives and is kept
  CHECK(f.get() == 3000);
}

}  // namespace

TEST_CASE("with_timeout around an awaited future ends the await promptly while the task runs on") {
  check_the_await_ends_before_the_worker([](corio::pool_future<int>& f) -> corio::task<void> {
    CHECK_THROWS_AS(co_await corio::with_timeout(f.async_get(), 100ms), corio::timed_out);
  });
}

TEST_CASE("when_any between an awaited future and a short sleep returns the sleep without waiting for the worker") {
  check_the_await_ends_before_the_worker([](corio::pool_future<int>& f) -> corio::task<void> {
    auto r = co_await corio::when_any(f.async_get(), corio::sleep_for(100ms));
    CHECK(r.index() == 1);
  });
}

TEST_CASE("a loop destroyed while a coroutine awaits a future is never touched by the pool afterwards") {
  corio::pool p(1);
  auto f = p.submit(sleep_ms, 300);
  bool cancelled = false;
  {
    auto lp = std::make_unique<corio::loop>();  // on the heap: ASan reports a late write into it
    auto waiter = [&]() -> corio::task<void> {
      try {
        (void)co_await f;
      } catch (const corio::operation_cancelled&) {
        cancelled = true;
      }
    };
    auto main = [&]() -> corio::task<void> {
      lp->spawn(waiter());
      co_return;  // run() returns with the waiter still suspended
    };
    lp->run(main());
  }
  CHECK(cancelled);  // the loop's destructor cancelled the wait
  REQUIRE(f.wait_for(10s));  // the completion must not reach the dead loop
  CHECK(f.get() == 300);
}

TEST_CASE("wait_for times out on a running task and succeeds once it is done") {
  corio::pool p(1);
  auto f = p.submit(sleep_ms, 300);
  CHECK_FALSE(f.wait_for(10ms));
  CHECK(f.wait_for(20s));
  CHECK(f.get() == 300);
}

TEST_CASE("a long task never holds up the tasks submitted after it") {
  corio::pool p(2);
  auto slow = p.submit(sleep_ms, 3000);
  std::vector<corio::pool_future<int>> quick;
  for (int i = 0; i < 100; ++i) quick.push_back(p.submit(sleep_ms, 1));
  for (auto& q : quick) CHECK(q.get() == 1);
  CHECK_FALSE(slow.ready());
  CHECK(slow.get() == 3000);
}

TEST_CASE("100,000 tiny tasks all complete with their own results") {
  corio::pool p(2);
  std::vector<corio::pool_future<int>> fs;
  fs.reserve(100000);
  for (int i = 0; i < 100000; ++i) fs.push_back(p.submit(add, i, 7));
  long long bad = 0;
  for (int i = 0; i < 100000; ++i)
    if (fs[static_cast<std::size_t>(i)].get() != i + 7) ++bad;
  CHECK(bad == 0);
  p.close();
  p.join();
}

TEST_CASE("requests too large for the task ring throw length_error from submit") {
  corio::pool p(1, corio::pool_options{.task_ring_bytes = 4096, .result_ring_bytes = 4096});
  CHECK_THROWS_AS((void)p.submit(shout, std::string(10000, 'x')), std::length_error);
  auto big = p.submit([](int n) { return std::string(static_cast<std::size_t>(n), 'y'); }, 10000);
  CHECK_THROWS_WITH_AS((void)big.get(), doctest::Contains("std::length_error"), corio::remote_error);
  CHECK(p.submit(shout, std::string("ok")).get() == "OK");
  CHECK_THROWS_AS(corio::pool(0), std::invalid_argument);
}

TEST_CASE("the tutorial's pool of 4: tasks 0-3 start at once, task 4 after one ends, in a pid already seen") {
  corio::pool p(4);
  // Generous: the first of tasks 0-3 ends after 1 s, so a loaded machine still starts all
  // four before that.
  const int ms[5] = {1500, 1000, 1800, 1200, 200};
  std::vector<corio::pool_future<std::tuple<pid_t, std::int64_t, std::int64_t>>> fs;
  for (int i = 0; i < 5; ++i) fs.push_back(p.apply_async(timed_task, ms[i]));
  p.close();
  p.join();
  std::vector<std::tuple<pid_t, std::int64_t, std::int64_t>> r;
  for (auto& f : fs) r.push_back(f.get());
  std::int64_t last_start = 0, first_end = INT64_MAX;
  std::set<pid_t> pids;
  for (int i = 0; i < 4; ++i) {
    last_start = std::max(last_start, std::get<1>(r[static_cast<std::size_t>(i)]));
    first_end = std::min(first_end, std::get<2>(r[static_cast<std::size_t>(i)]));
    pids.insert(std::get<0>(r[static_cast<std::size_t>(i)]));
  }
  CHECK(pids.size() == 4);             // four workers ran 0-3
  CHECK(last_start < first_end);       // at once: all four started before any ended
  CHECK(std::get<1>(r[4]) >= first_end);  // task 4 waited for a free worker
  CHECK(pids.count(std::get<0>(r[4])) == 1);
}

TEST_CASE("a pool built on a thread that has exited keeps its workers, which serve the main thread") {
  std::unique_ptr<corio::pool> p;
  std::thread([&] { p = std::make_unique<corio::pool>(2); }).join();
  std::this_thread::sleep_for(200ms);  // time for a death signal sent at the thread's exit to land
  const std::vector<pid_t> before = p->worker_pids();
  std::vector<corio::pool_future<pid_t>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(p->submit(my_pid, i));
  std::set<pid_t> seen;
  for (auto& f : futures) {
    REQUIRE(f.wait_for(10s));
    seen.insert(f.get());
  }
  CHECK(p->worker_pids() == before);  // none died and was replaced
  for (pid_t pid : seen) CHECK(std::find(before.begin(), before.end(), pid) != before.end());
}

TEST_CASE("with retries = 1 a task whose worker died runs again and map returns all 200 results") {
  const std::vector<int> got = map_200_with_a_kill(1);
  REQUIRE(got.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(got[static_cast<std::size_t>(i)] == i * i);
}

TEST_CASE("with retries = 0 a map with a task whose worker died fails with worker_lost") {
  CHECK_THROWS_AS(map_200_with_a_kill(0), corio::worker_lost);
}

namespace {

int nap(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

// The memory of the pool this process created last ("memfd:corio-pool" in /proc/self/maps).
std::span<std::byte> pool_memory() {
  std::ifstream maps("/proc/self/maps");
  std::span<std::byte> found;
  for (std::string line; std::getline(maps, line);) {
    if (line.find("/memfd:corio-pool") == std::string::npos) continue;
    std::uintptr_t from = 0, to = 0;
    char dash = 0;
    std::istringstream(line) >> std::hex >> from >> dash >> to;
    found = {reinterpret_cast<std::byte*>(from), to - from};
  }
  REQUIRE(!found.empty());
  return found;
}

// The n-th spsc_ring in `memory` (0: the task ring, 1 + i: worker i's result ring), found
// as a process that is not the pool would find it: by its magic on a 64-byte boundary.
std::span<std::byte> nth_ring(std::span<std::byte> memory, int n) {
  for (std::size_t at = 0; at + 64 <= memory.size(); at += 64) {
    // Atomic: the scan passes over words the pool's threads update (its event counts).
    const std::uint64_t magic =
        std::atomic_ref(*reinterpret_cast<std::uint64_t*>(memory.data() + at)).load(std::memory_order_acquire);
    if (magic == corio::detail::spsc_ring_magic && n-- == 0) return memory.subspan(at);
  }
  FAIL("no ring found");
  return {};
}

// A process that is not the worker writes a 4-byte frame, too short for a task id, into
// worker 0's result ring; false when the ring is full.
bool write_short_reply(std::span<std::byte> memory) {
  auto ring = corio::spsc_ring::attach(nth_ring(memory, 1));
  return ring.try_send(std::as_bytes(std::span("shrt", 4)));
}
constexpr const char* short_reply_error =
    "corio::pool: a reply from a worker: corrupt frame of 4 bytes (shorter than its 8-byte id)";

}  // namespace

TEST_CASE("a pool or executor frame is split only after checking that it holds its 8-byte id") {
  const std::byte bytes[12] = {std::byte{7}, {}, {}, {}, {}, {}, {}, {}, std::byte{'a'}, std::byte{'b'}};
  const auto f = corio::detail::split_id_frame(std::span(bytes, 10), "test frame");
  CHECK(f.id == 7);
  CHECK(f.body.size() == 2);
  CHECK(f.body.data() == bytes + 8);
  CHECK(corio::detail::split_id_frame(std::span(bytes, 8), "test frame").body.empty());
  CHECK_THROWS_WITH_AS((void)corio::detail::split_id_frame(std::span(bytes, 7), "test frame"),
                       "test frame: corrupt frame of 7 bytes (shorter than its 8-byte id)", std::runtime_error);
}

TEST_CASE("a reply frame too short to hold its task id is a clear runtime_error, not a read past the frame") {
  // In a child: the pool is unusable afterwards, and the child leaves with _exit. Whichever
  // thread meets the frame first (this get() helping drain, or the collector, which then
  // fails every pending task with the same text) the child must not end in std::terminate.
  corio_test::raw_pipe said;
  const pid_t child = corio_test::fork_child([&] {
    std::string outcome = "<no error>";
    {
      corio::pool p(1);
      auto slow = p.submit(nap, 1000);  // worker 0 sleeps: its result ring is quiet
      if (!write_short_reply(pool_memory())) outcome = "<ring full>";
      try {
        (void)slow.get();  // drains the result rings while it waits
      } catch (const std::runtime_error& e) {
        outcome = e.what();
      }
      (void)!::write(said.write_end(), outcome.data(), outcome.size());
      ::_exit(0);  // before ~pool: its collector would meet the same frame
    }
    return 1;
  });
  said.close_write();
  CHECK(said.read_all() == short_reply_error);
  CHECK(corio_test::exit_status(child) == 0);
}

TEST_CASE("a submit waiting for room in the task ring when the collector meets a corrupt reply throws worker_lost "
          "at once") {
  // The collector drains no more after a corrupt frame, so a worker that fills its result
  // ring blocks and the task ring stays full: only the pool's break can wake the submit.
  // Here the one worker naps for a minute, which holds the task ring full the same way.
  corio_test::raw_pipe said;
  const pid_t child = corio_test::fork_child([&] {
    std::string outcome = "<no error>";
    {
      corio::pool_options o;
      o.task_ring_bytes = 4096;
      corio::pool p(1, o);
      auto slow = p.submit(nap, 60'000);
      auto submitter = std::async(std::launch::async, [&] {
        std::vector<corio::pool_future<int>> results;
        try {
          for (int i = 0;; ++i) results.push_back(p.submit(square, i));  // fills the task ring, then waits
        } catch (const corio::worker_lost& e) {
          return std::string(e.what());
        }
      });
      std::this_thread::sleep_for(300ms);  // the submitter waits for room by now
      // The collector, woken, meets the short frame.
      const std::span<std::byte> memory = pool_memory();
      if (!write_short_reply(memory)) outcome = "<ring full>";
      corio::event_count(reinterpret_cast<corio::detail::pool_shared*>(memory.data())->results_ec).notify_all();
      if (submitter.wait_for(10s) == std::future_status::ready)
        outcome = submitter.get();
      else
        outcome += "<the submit still waits after 10 s>";
      (void)!::write(said.write_end(), outcome.data(), outcome.size());
      ::_exit(0);  // before ~pool: its collector would meet the same frame
    }
    return 1;
  });
  said.close_write();
  CHECK(said.read_all() == short_reply_error);
  CHECK(corio_test::exit_status(child) == 0);
}

TEST_CASE("imap yields results in input order while tasks of varying duration finish out of order") {
  corio::pool p(2);
  const std::vector<int> ms{400, 1, 250, 2, 120, 3, 60, 4, 5, 6};
  within(p, 30s, [&] {
    std::vector<int> got;
    for (int v : p.imap(sleep_ms, ms)) got.push_back(v);
    CHECK(got == ms);
    got.clear();
    for (int v : p.imap(sleep_ms, ms, 3)) got.push_back(v);
    CHECK(got == ms);
    CHECK_THROWS_AS((void)p.imap(square, ms, 0), std::invalid_argument);
  });
}

TEST_CASE("imap yields the first result as soon as it is done, before later tasks finish") {
  corio::pool p(2);
  within(p, 30s, [&] {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::chrono::steady_clock::duration> at;
    for (int v : p.imap(sleep_ms, std::vector<int>{10, 1500})) {
      (void)v;
      at.push_back(std::chrono::steady_clock::now() - start);
    }
    REQUIRE(at.size() == 2);
    CHECK(at[0] < 1000ms);   // generous: the 10 ms task, not the 1.5 s one
    CHECK(at[1] >= 1500ms);
  });
}

TEST_CASE("imap over a lazy range of 10 million items stopped after 1,000 results pulled exactly 1,000 + in_flight items") {
  corio::pool p(2);
  within(p, 60s, [&] {
    const std::size_t rss_before = rss_bytes();
    std::size_t pulled = 0;
    auto items = std::views::iota(0, 10'000'000) | std::views::transform([&pulled](int i) {
                   ++pulled;
                   return i;
                 });
    std::size_t n = 0;
    long long bad = 0;
    for (int v : p.imap(square, items)) {  // default window: 32 chunks per worker = 64
      if (v != static_cast<int>(n * n)) ++bad;
      if (++n == 1000) break;
    }
    CHECK(bad == 0);
    // The window is refilled before each chunk's results are yielded: when result 1000
    // (chunk 999) came out, chunks up to 999 + 64 had been submitted.
    CHECK(pulled == 1000 + 64);
    // Chunks of 10, at most 4 in flight: 100 chunks yielded, 4 more submitted.
    pulled = 0;
    n = 0;
    for (int v : p.imap(square, items, 10, 4)) {
      if (v != static_cast<int>(n * n)) ++bad;
      if (++n == 1000) break;
    }
    CHECK(bad == 0);
    CHECK(pulled == 1040);
    // Generous: the eager way (every item submitted up front) needs gigabytes here.
    CHECK(rss_bytes() < rss_before + (std::size_t{64} << 20));
  });
}

TEST_CASE("imap over an endless corio::generator yields in order until the caller stops") {
  corio::pool p(2);
  auto naturals = []() -> corio::generator<int> {
    for (int i = 0;; ++i) co_yield i;
  };
  within(p, 30s, [&] {
    std::vector<int> got;
    for (int v : p.imap(square, naturals(), 3)) {  // an rvalue: the generator owns it
      got.push_back(v);
      if (got.size() == 10) break;
    }
    CHECK(got == std::vector<int>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81});
  });
}

TEST_CASE("starmap calls fn with each tuple's elements, in input order") {
  corio::pool p(2);
  const std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}};
  CHECK(p.starmap(add, pairs) == std::vector<int>{3, 7, 11, 15, 19});
  CHECK(p.starmap(add, pairs, 2) == std::vector<int>{3, 7, 11, 15, 19});
  const std::vector<std::tuple<std::string>> words{{"ab"}, {"cd"}};
  CHECK(p.starmap(shout, words) == std::vector<std::string>{"AB", "CD"});
}

TEST_CASE("apply blocks for the value and rethrows the task's exception") {
  corio::pool p(2);
  CHECK(p.apply(add, 2, 3) == 5);
  CHECK(p.apply(shout, std::string("x")) == "X");
  CHECK_THROWS_WITH_AS(p.apply(fails, 4), "std::invalid_argument: bad x 4", corio::remote_error);
}

TEST_CASE("map_async returns a future of the whole vector, and the first failed chunk's exception") {
  corio::pool p(2);
  std::vector<int> items(100), expected(100);
  for (int i = 0; i < 100; ++i) {
    items[static_cast<std::size_t>(i)] = i;
    expected[static_cast<std::size_t>(i)] = i * i;
  }
  auto f = p.map_async(square, items, 7);
  auto empty = p.map_async(square, std::vector<int>{});
  auto bad = p.map_async(fails, std::vector<int>{5, 6, 7}, 1);
  REQUIRE(f.wait_for(30s));
  CHECK(f.get() == expected);
  REQUIRE(empty.wait_for(30s));
  CHECK(empty.get().empty());
  REQUIRE(bad.wait_for(30s));
  CHECK_THROWS_WITH_AS(bad.get(), "std::invalid_argument: bad x 5", corio::remote_error);
}

TEST_CASE("callbacks run once per task on the collector thread, before get() returns; errors go to the error callback") {
  corio::pool p(2);
  const auto main_thread = std::this_thread::get_id();
  std::atomic<int> values{0}, errors{0}, off_main{0};
  std::atomic<long long> sum{0};
  auto on_value = [&](const int& v) {
    sum += v;
    ++values;
    if (std::this_thread::get_id() != main_thread) ++off_main;
  };
  auto on_error = [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const corio::remote_error& r) {
      if (r.type_name() == "std::invalid_argument") ++errors;
    }
    if (std::this_thread::get_id() != main_thread) ++off_main;
  };
  std::vector<corio::pool_future<int>> fs;
  for (int i = 0; i < 20; ++i) {
    if (i % 4 == 3)
      fs.push_back(p.apply_async(corio::callbacks(on_value, on_error), fails, i));
    else
      fs.push_back(p.apply_async(corio::callbacks(on_value, on_error), square, i));
  }
  long long expected_sum = 0;
  for (int i = 0; i < 20; ++i) {
    REQUIRE(fs[static_cast<std::size_t>(i)].wait_for(30s));
    if (i % 4 == 3)
      CHECK_THROWS_AS(fs[static_cast<std::size_t>(i)].get(), corio::remote_error);
    else
      CHECK(fs[static_cast<std::size_t>(i)].get() == i * i);
    if (i % 4 != 3) expected_sum += i * i;
  }
  CHECK(values == 15);  // every callback ran before its future turned ready
  CHECK(errors == 5);
  CHECK(sum == expected_sum);
  CHECK(off_main == 20);

  // map_async: the value callback gets the whole vector once; a failing map calls only
  // the error callback, once.
  int map_values = 0, map_errors = 0;
  std::vector<int> seen;
  auto good = p.map_async(corio::callbacks(
                              [&](const std::vector<int>& v) {
                                seen = v;
                                ++map_values;
                              },
                              [&](std::exception_ptr) { ++map_errors; }),
                          square, std::vector<int>{1, 2, 3, 4, 5}, 2);
  REQUIRE(good.wait_for(30s));
  CHECK(good.get() == std::vector<int>{1, 4, 9, 16, 25});
  CHECK(seen == std::vector<int>{1, 4, 9, 16, 25});
  auto failing = p.map_async(corio::callbacks([&](const std::vector<int>&) { ++map_values; },
                                              [&](std::exception_ptr) { ++map_errors; }),
                             fails, std::vector<int>{1, 2, 3}, 1);
  REQUIRE(failing.wait_for(30s));
  CHECK_THROWS_AS(failing.get(), corio::remote_error);
  CHECK(map_values == 1);
  CHECK(map_errors == 1);

  // A callback that throws: its exception is the future's error. A callback may submit.
  auto thrower = p.apply_async(corio::callbacks([](const int&) { throw std::runtime_error("from the callback"); }),
                               square, 3);
  REQUIRE(thrower.wait_for(30s));
  CHECK_THROWS_WITH_AS(thrower.get(), "from the callback", std::runtime_error);
  std::optional<corio::pool_future<int>> inner;
  auto outer = p.apply_async(corio::callbacks([&](const int& v) { inner.emplace(p.submit(square, v)); }), square, 3);
  REQUIRE(outer.wait_for(30s));
  CHECK(outer.get() == 9);
  REQUIRE(inner.has_value());
  CHECK(inner->get() == 81);
}

TEST_CASE("terminate runs the callbacks of the tasks it fails, on the terminating thread") {
  corio::pool p(1);
  std::atomic<int> errors{0};
  std::thread::id where;
  auto f = p.apply_async(corio::callbacks([](const int&) {},
                                          [&](std::exception_ptr) {
                                            where = std::this_thread::get_id();
                                            ++errors;
                                          }),
                         sleep_ms, 5000);
  std::this_thread::sleep_for(50ms);
  p.terminate();
  CHECK(errors == 1);
  CHECK(where == std::this_thread::get_id());
  CHECK_THROWS_AS(f.get(), corio::pool_terminated);
}

TEST_CASE("the initializer runs once in every worker, replacements after max_tasks_per_child included") {
  pid_pipe log;
  pair_counters pairs;
  corio::pool p(2, {.initializer = corio::bind_initializer(record_init, log.fds[1], 42), .max_tasks_per_child = 3});
  std::vector<std::pair<pid_t, int>> got;
  within(p, 30s, [&] {
    std::vector<int> items(12);
    for (int i = 0; i < 12; ++i) items[static_cast<std::size_t>(i)] = i;
    got = p.map(pid_and_tag_in_pair, items);
    p.close();
    p.join();
  });
  const std::vector<pid_t> inits = read_pids(log.fds[0]);
  const std::set<pid_t> init_set(inits.begin(), inits.end());
  CHECK(init_set.size() == inits.size());  // once per worker
  std::map<pid_t, int> tasks_per_pid;
  for (auto [pid, tag] : got) {
    CHECK(tag == 42);                    // every task ran after its worker's initializer
    CHECK(init_set.count(pid) == 1);     // ... which that very worker ran
    ++tasks_per_pid[pid];
  }
  CHECK(tasks_per_pid.size() == 4);  // 12 tasks, 3 per worker
  for (auto [pid, n] : tasks_per_pid) CHECK(n == 3);
  // 2 first workers + 2 replacements ran tasks; the last two retirements may race close()
  // and be replaced by workers that run their initializer and exit.
  CHECK(inits.size() >= 4);
  CHECK(inits.size() <= 6);
}

TEST_CASE("max_tasks_per_child = 5 with 2 workers and 50 tasks uses exactly 10 distinct pids, every task completes") {
  pair_counters pairs;
  corio::pool p(2, {.max_tasks_per_child = 5});
  std::vector<pid_t> pids;
  within(p, 30s, [&] {
    std::vector<corio::pool_future<pid_t>> fs;
    for (int i = 0; i < 50; ++i) fs.push_back(p.submit(pid_in_pair, i));
    for (auto& f : fs) pids.push_back(f.get());  // none failed with worker_lost
  });
  std::map<pid_t, int> per_pid;
  for (pid_t pid : pids) ++per_pid[pid];
  CHECK(per_pid.size() == 10);
  CHECK(per_pid.count(-1) == 0);  // no task waited 10 s for its partner
  for (auto [pid, n] : per_pid) CHECK(n == 5);
  CHECK(p.worker_pids().size() == 2);
}

TEST_CASE("with max_tasks_per_child = 1, tasks left after close() still run on replacements and join returns") {
  corio::pool p(2, {.max_tasks_per_child = 1});
  std::vector<corio::pool_future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(p.submit(square, i));
  within(p, 30s, [&] {
    p.close();
    p.join();
  });
  for (int i = 0; i < 20; ++i) CHECK(fs[static_cast<std::size_t>(i)].get() == i * i);
}

TEST_CASE("an initializer that throws fails the tasks and later submits with worker_lost naming its error") {
  corio::pool p(2, {.initializer = [] { throw std::runtime_error("no database"); }});
  // The workers may all be gone before the submit (it throws) or after (get() throws).
  CHECK_THROWS_WITH_AS(within(p, 30s, [&] { return p.submit(square, 2).get(); }),
                       doctest::Contains("std::runtime_error: no database"), corio::worker_lost);
  CHECK(p.worker_pids().empty());
  CHECK_THROWS_WITH_AS((void)p.submit(square, 3), doctest::Contains("no database"), corio::worker_lost);
}

TEST_CASE("a registered exception type is caught by type with its message; an unregistered one is remote_error") {
  corio::register_remote_exception<my_error>();
  corio::register_remote_exception<my_error>();  // twice is harmless
  corio::pool p(2);
  CHECK(what_if_exactly<my_error>(p, throws_my_error, 3) == "my 3");
  // Derived from a registered type (and not registered itself): comes back as the base.
  CHECK(what_if_exactly<my_error>(p, throws_derived, 4) == "derived 4");
  CHECK(what_if_exactly<corio::remote_error>(p, throws_unregistered, 5) ==
        "(anonymous namespace)::unregistered_error: plain 5");
  // map sees the registered type too.
  CHECK_THROWS_WITH_AS((void)p.map(throws_my_error, std::vector<int>{1, 2}), "my 1", my_error);
  // Standard types can be registered as well (one no other test of this file expects as
  // remote_error: the registry is the process's).
  corio::register_remote_exception<std::overflow_error>();
  CHECK_THROWS_WITH_AS(p.apply(throws_overflow, 9), "too big 9", std::overflow_error);
}

TEST_CASE("max_tasks_per_child = 7 with a worker SIGKILLed and retries = 1: map still returns all 200 results") {
  const std::vector<int> got = map_200_with_a_kill(1, 7);
  REQUIRE(got.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(got[static_cast<std::size_t>(i)] == i * i);
}
