// pool: values, void, strings, coroutines and exceptions come back from worker processes;
// map keeps order, imap_unordered yields everything once; close/join/terminate; a worker
// SIGKILLed mid-task fails only its own task and is replaced; futures awaited in a loop;
// 100,000 tiny tasks; a long task never holds up the others; the Python tutorial's
// scheduling (four start at once, the fifth after one ends, in a pid already seen).
#include <doctest/doctest.h>

#include <corio/coro/task.hpp>
#include <corio/coro/when_any.hpp>
#include <corio/ipc/pool.hpp>
#include <corio/runtime/errors.hpp>
#include <corio/ipc/detail/id_frame.hpp>
#include <corio/ipc/pool.hpp>
#include <corio/ipc/spsc_ring.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <cstdint>
#include <future>
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

// map over 0..199 with item 57 killing its worker once, with `retries`.
std::vector<int> map_200_with_a_kill(unsigned retries) {
  square_dying_once_at_57 fn{};
  std::snprintf(fn.marker, sizeof fn.marker, "/tmp/corio_pool_retry_%d", static_cast<int>(::getpid()));
  ::unlink(fn.marker);
  struct cleanup {
    const char* path;
    ~cleanup() { CHECK(::unlink(path) == 0); }  // the kill did happen
  } remove_marker{fn.marker};
  std::vector<int> items(200);
  for (int i = 0; i < 200; ++i) items[static_cast<std::size_t>(i)] = i;
  corio::pool p(2, {.retries = retries});
  return within(p, 30s, [&] { return p.map(fn, items); });
}

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
    std::uint64_t magic;
    std::memcpy(&magic, memory.data() + at, 8);
    if (magic == corio::detail::spsc_ring_magic && n-- == 0) return memory.subspan(at);
  }
  FAIL("no ring found");
  return {};
}

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
  // In a child: the pool is unusable afterwards, and the child leaves with _exit.
  corio_test::raw_pipe said;
  const pid_t child = corio_test::fork_child([&] {
    std::string outcome = "<no error>";
    {
      corio::pool p(1);
      auto slow = p.submit(nap, 1000);  // worker 0 sleeps: its result ring is quiet
      // A process that is not the worker writes a 4-byte frame into worker 0's result ring.
      auto ring = corio::spsc_ring::attach(nth_ring(pool_memory(), 1));
      if (!ring.try_send(std::as_bytes(std::span("shrt", 4)))) outcome = "<ring full>";
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
  CHECK(said.read_all() == "corio::pool: a reply from a worker: corrupt frame of 4 bytes (shorter than its 8-byte id)");
  CHECK(corio_test::exit_status(child) == 0);
}
