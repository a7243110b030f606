// corio::thread, current_thread_name, thread_timer and thread_event: the names Python's
// threading prints (MainThread, a given name, Thread-N), the name the kernel sees, the
// three ways to give a thread its work, start/join misuse, Timer's cancel, Event's wait.
#include <doctest/doctest.h>

#include <corio/runtime/thread.hpp>
#include <corio/runtime/thread_event.hpp>
#include <corio/runtime/thread_timer.hpp>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

std::string kernel_thread_name() {
  char name[16] = {};
  REQUIRE(pthread_getname_np(pthread_self(), name, sizeof name) == 0);
  return name;
}

struct seen {
  std::string name;
  std::string kernel;
  int tid = 0;
};

seen look() { return {corio::current_thread_name(), kernel_thread_name(), static_cast<int>(::syscall(SYS_gettid))}; }

}  // namespace

TEST_CASE("the main thread is MainThread") { CHECK(corio::current_thread_name() == "MainThread"); }

TEST_CASE("a named thread runs its function with its arguments under its name, which the kernel sees too") {
  seen in;
  int sum = 0;
  corio::thread t(
      "LoopThread",
      [&](int a, int b) {
        in = look();
        sum = a + b;
      },
      2, 3);
  CHECK(t.name() == "LoopThread");
  CHECK_FALSE(t.is_alive());
  t.start();
  t.join();
  CHECK(sum == 5);
  CHECK(in.name == "LoopThread");
  CHECK(in.kernel == "LoopThread");
  CHECK(t.native_id() == in.tid);
  CHECK_FALSE(t.is_alive());
  CHECK(corio::current_thread_name() == "MainThread");
}

TEST_CASE("a name longer than 15 bytes is whole for current_thread_name and cut to 15 for the kernel") {
  seen in;
  corio::thread t("ThreadPoolExecutor-0_0", [&] { in = look(); });
  t.start();
  t.join();
  CHECK(in.name == "ThreadPoolExecutor-0_0");
  CHECK(in.kernel == "ThreadPoolExecu");
}

TEST_CASE("unnamed threads are Thread-N with N counting up") {
  corio::thread a([] {});
  corio::thread b([] {});
  REQUIRE(a.name().starts_with("Thread-"));
  REQUIRE(b.name().starts_with("Thread-"));
  CHECK(std::stoi(b.name().substr(7)) == std::stoi(a.name().substr(7)) + 1);
}

namespace {

struct callable_object {
  std::string* out;
  void operator()() const { *out = "called as " + corio::current_thread_name(); }
};

class counting_thread : public corio::thread {
 public:
  explicit counting_thread(int n) : corio::thread("Counter"), n_(n) {}
  ~counting_thread() override {
    if (joinable()) join();  // before n_ and total_ die
  }
  int total() const { return total_; }

 protected:
  void run() override {
    for (int i = 1; i <= n_; ++i) total_ += i;
  }

 private:
  int n_;
  int total_ = 0;
};

}  // namespace

TEST_CASE("a thread takes a callable object or a subclass's run()") {
  std::string out;
  corio::thread t("Callable", callable_object{&out});
  t.start();
  t.join();
  CHECK(out == "called as Callable");

  counting_thread c(100);
  c.start();
  c.join();
  CHECK(c.total() == 5050);
}

TEST_CASE("start twice, join before start and join twice throw std::logic_error") {
  corio::thread t("Once", [] {});
  CHECK_THROWS_WITH_AS(t.join(), "corio::thread::join: thread Once was not started (or was joined)", std::logic_error);
  t.start();
  CHECK_THROWS_WITH_AS(t.start(), "corio::thread::start: thread Once can only be started once", std::logic_error);
  t.join();
  CHECK_THROWS_AS(t.join(), std::logic_error);
  CHECK_THROWS_AS(t.start(), std::logic_error);
}

TEST_CASE("an exception escaping a thread is printed with the thread's name and join returns") {
  std::FILE* capture = std::tmpfile();
  REQUIRE(capture != nullptr);
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(::fileno(capture), STDERR_FILENO);
  {
    corio::thread t("Doomed", [] { throw std::runtime_error("out of paper"); });
    t.start();
    t.join();
    CHECK_FALSE(t.is_alive());
  }
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  std::rewind(capture);
  char buf[256] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, capture);
  std::fclose(capture);
  CHECK(std::string(buf, n) == "Exception in thread Doomed: out of paper\n");
}

TEST_CASE("join_for gives up after its timeout while the thread runs, and joins once it ended") {
  corio::thread_event release;
  corio::thread t("Slow", [&] { release.wait(); });
  CHECK_THROWS_WITH_AS(t.join_for(1ms), "corio::thread::join_for: thread Slow was not started (or was joined)",
                       std::logic_error);
  t.start();
  CHECK_FALSE(t.join_for(20ms));
  CHECK(t.is_alive());
  CHECK(t.joinable());
  release.set();
  CHECK(t.join_for(10s));
  CHECK_FALSE(t.is_alive());
  CHECK_FALSE(t.joinable());
}

TEST_CASE("the destructor joins a started thread") {
  std::atomic<bool> finished{false};
  {
    corio::thread t([&] {
      std::this_thread::sleep_for(30ms);
      finished = true;
    });
    t.start();
  }
  CHECK(finished);
}

TEST_CASE("set_current_thread_name renames the calling thread for corio and the kernel") {
  seen in;
  corio::thread t("Before", [&] {
    corio::set_current_thread_name("After");
    in = look();
  });
  t.start();
  t.join();
  CHECK(in.name == "After");
  CHECK(in.kernel == "After");
}

TEST_CASE("a thread_timer calls its function once after the interval") {
  std::atomic<int> calls{0};
  steady::time_point fired;
  const auto start = steady::now();
  corio::thread_timer t(50ms, [&](int by) {
    fired = steady::now();
    calls += by;
  }, 1);
  t.start();
  t.join();
  CHECK(calls == 1);
  CHECK(fired - start >= 50ms);
}

TEST_CASE("a thread_timer cancelled before its interval never calls its function and ends at once") {
  std::atomic<int> calls{0};
  const auto start = steady::now();
  corio::thread_timer t(30s, [&] { ++calls; });
  t.start();
  t.cancel();
  t.join();
  CHECK(calls == 0);
  CHECK(steady::now() - start < 10s);  // not the 30 s interval
  corio::thread_timer never_started(30s, [&] { ++calls; });
  never_started.cancel();
  {
    corio::thread_timer dropped(30s, [&] { ++calls; });
    dropped.start();
  }  // the destructor cancels and joins
  CHECK(calls == 0);
}

TEST_CASE("thread_event: wait_for times out while clear, set wakes a waiting thread, clear resets") {
  corio::thread_event ev;
  CHECK_FALSE(ev.is_set());
  CHECK_FALSE(ev.wait_for(10ms));
  std::atomic<bool> woke{false};
  corio::thread waiter([&] {
    ev.wait();
    woke = true;
  });
  waiter.start();
  std::this_thread::sleep_for(20ms);
  CHECK_FALSE(woke);
  ev.set();
  waiter.join();
  CHECK(woke);
  CHECK(ev.is_set());
  CHECK(ev.wait_for(0ms));
  ev.clear();
  CHECK_FALSE(ev.is_set());
  CHECK_FALSE(ev.wait_for(1ms));
}
