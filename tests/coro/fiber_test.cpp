// corio::fiber and the stack pool under it: switch order, nesting, errors, unwinding on
// destruction, stack recycling and the guard page.

#include <doctest/doctest.h>

#include <corio/coro/detail/stack_pool.hpp>
#include <corio/coro/fiber.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace {

using corio::fiber;
using corio::detail::fiber_stack;
using corio::detail::stack_pool;

// Counts live instances, so a test can tell exactly which destructors ran.
struct counted {
  static inline int alive = 0;
  std::vector<std::string>* log;
  std::string name;
  counted(std::vector<std::string>* l, std::string n) : log(l), name(std::move(n)) { ++alive; }
  counted(const counted& o) : log(o.log), name(o.name) { ++alive; }
  ~counted() {
    --alive;
    if (log != nullptr) log->push_back("~" + name);
  }
};

void log_and_suspend(std::vector<std::string>& log, const std::string& what) {
  log.push_back(what);
  fiber::suspend();
}

void nested_level_two(std::vector<std::string>& log) {
  counted two(&log, "two");
  log_and_suspend(log, "deep");
  log.push_back("after deep");
}

void nested_level_one(std::vector<std::string>& log) {
  counted one(&log, "one");
  nested_level_two(log);
  log.push_back("after two");
}

// Recursion the optimizer cannot flatten: every level keeps a live buffer and uses the
// callee's result.
std::uint64_t deep(int depth) {
  volatile char buf[256];
  buf[0] = static_cast<char>(depth);
  if (depth == 0) return static_cast<unsigned char>(buf[0]);
  return deep(depth - 1) + static_cast<unsigned char>(buf[0]) + 1;
}

struct child_result {
  int status;
  std::string err;  // what the child wrote to stderr
};

// Runs `child` in a forked process with default SIGSEGV/SIGABRT handling.
template <class F>
child_result run_in_child(F child) {
  int err_pipe[2];
  REQUIRE(::pipe(err_pipe) == 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::close(err_pipe[0]);
    std::signal(SIGSEGV, SIG_DFL);
    std::signal(SIGABRT, SIG_DFL);
    child();
    ::_exit(0);
  }
  ::close(err_pipe[1]);
  child_result r{0, {}};
  char buf[512];
  for (ssize_t n; (n = ::read(err_pipe[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    r.err.append(buf, static_cast<std::size_t>(n));
  }
  ::close(err_pipe[0]);
  REQUIRE(::waitpid(pid, &r.status, 0) == pid);
  return r;
}

// The permissions column of the /proc/self/maps line for the mapping that starts at `p`.
std::string mapping_permissions(const void* p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto want = reinterpret_cast<std::uintptr_t>(p);
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms;
    in >> range >> perms;
    const auto dash = range.find('-');
    if (std::stoull(range.substr(0, dash), nullptr, 16) == want) return perms;
  }
  return "";
}

}  // namespace

TEST_CASE("a fiber does not run its body until the first resume") {
  int runs = 0;
  fiber f([&] { ++runs; });
  CHECK(runs == 0);
  CHECK_FALSE(f.done());
  CHECK_FALSE(f.resume());
  CHECK(runs == 1);
  CHECK(f.done());
}

TEST_CASE("resume and suspend interleave the resumer and the fiber in program order") {
  std::vector<int> order;
  fiber f([&] {
    order.push_back(1);
    fiber::suspend();
    order.push_back(3);
    fiber::suspend();
    order.push_back(5);
  });
  order.push_back(0);
  CHECK(f.resume());
  order.push_back(2);
  CHECK(f.resume());
  order.push_back(4);
  CHECK_FALSE(f.resume());
  order.push_back(6);
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6});
  CHECK(f.done());
}

TEST_CASE("suspend works from ordinary functions nested inside the body") {
  std::vector<std::string> log;
  fiber f([&] {
    nested_level_one(log);
    log.push_back("body end");
  });
  CHECK(f.resume());
  CHECK(log == std::vector<std::string>{"deep"});
  CHECK_FALSE(f.resume());
  CHECK(log == std::vector<std::string>{"deep", "after deep", "~two", "after two", "~one",
                                        "body end"});
}

TEST_CASE("an exception escaping the body reaches the resumer with its type and message") {
  fiber f([] {
    fiber::suspend();
    throw std::out_of_range("index 7 is past the end");
  });
  CHECK(f.resume());
  try {
    f.resume();
    FAIL("resume did not throw");
  } catch (const std::out_of_range& e) {
    CHECK(std::string(e.what()) == "index 7 is past the end");
  }
  CHECK(f.done());
}

TEST_CASE("resuming a finished fiber throws logic_error") {
  fiber f([] {});
  CHECK_FALSE(f.resume());
  CHECK_THROWS_WITH_AS(f.resume(),
                       "corio::fiber::resume: the fiber has finished (or was moved from)",
                       std::logic_error);
}

TEST_CASE("resuming a fiber that threw is an error, not a second rethrow") {
  fiber f([] { throw std::runtime_error("once"); });
  CHECK_THROWS_WITH_AS(f.resume(), "once", std::runtime_error);
  CHECK_THROWS_AS(f.resume(), std::logic_error);
}

TEST_CASE("resuming a fiber from its own stack throws logic_error inside the fiber") {
  fiber* self = nullptr;
  std::string message;
  fiber f([&] {
    try {
      self->resume();
    } catch (const std::logic_error& e) {
      message = e.what();
    }
  });
  self = &f;
  CHECK_FALSE(f.resume());
  CHECK(message ==
        "corio::fiber::resume: the fiber is already running (re-entrant resume from its own "
        "stack or from a fiber it resumed)");
}

TEST_CASE("a nested fiber resuming its own resumer throws logic_error") {
  fiber* outer_ptr = nullptr;
  bool threw = false;
  fiber outer([&] {
    fiber inner([&] {
      try {
        outer_ptr->resume();
      } catch (const std::logic_error&) {
        threw = true;
      }
    });
    inner.resume();
  });
  outer_ptr = &outer;
  CHECK_FALSE(outer.resume());
  CHECK(threw);
}

TEST_CASE("suspend outside any fiber throws logic_error") {
  CHECK_FALSE(fiber::in_fiber());
  CHECK_THROWS_WITH_AS(fiber::suspend(), "corio::fiber::suspend: called outside a fiber",
                       std::logic_error);
}

TEST_CASE("in_fiber is true only on a fiber's stack") {
  bool inside = false;
  fiber f([&] { inside = fiber::in_fiber(); });
  f.resume();
  CHECK(inside);
  CHECK_FALSE(fiber::in_fiber());
}

TEST_CASE("destroying a suspended fiber unwinds its stack, innermost locals first") {
  std::vector<std::string> log;
  counted::alive = 0;
  {
    fiber f([&] {
      counted top(&log, "top");
      nested_level_one(log);
      log.push_back("unreachable");
    });
    CHECK(f.resume());
    CHECK(counted::alive == 3);
  }
  CHECK(counted::alive == 0);
  CHECK(log == std::vector<std::string>{"deep", "~two", "~one", "~top"});
}

TEST_CASE("destroying a never-started fiber destroys its captures without running the body") {
  counted::alive = 0;
  bool ran = false;
  const counted original(nullptr, "original");
  {
    fiber f([c = original, &ran] { ran = true; });
    CHECK(counted::alive == 2);
  }
  CHECK_FALSE(ran);
  CHECK(counted::alive == 1);
}

TEST_CASE("the body's captures are destroyed as soon as it finishes") {
  counted::alive = 0;
  fiber f([c = counted(nullptr, "capture")] { fiber::suspend(); });
  CHECK(counted::alive == 1);
  CHECK(f.resume());
  CHECK(counted::alive == 1);
  CHECK_FALSE(f.resume());
  CHECK(counted::alive == 0);
}

TEST_CASE("catching std::exception in the body does not stop the forced unwind") {
  std::vector<std::string> log;
  {
    fiber f([&] {
      counted local(&log, "local");
      try {
        fiber::suspend();
      } catch (const std::exception&) {
        log.push_back("caught as std::exception");
      }
      log.push_back("after try");
    });
    f.resume();
  }
  CHECK(log == std::vector<std::string>{"~local"});
}

TEST_CASE("a body that swallows the forced unwind runs to its end without suspending again") {
  std::vector<std::string> log;
  {
    fiber f([&] {
      try {
        fiber::suspend();
      } catch (...) {
        log.push_back("swallowed");
      }
      log.push_back("after swallow");
      counted local(&log, "local");
      fiber::suspend();  // throws the unwind again instead of switching
      log.push_back("unreachable");
    });
    f.resume();
  }
  CHECK(log == std::vector<std::string>{"swallowed", "after swallow", "~local"});
}

TEST_CASE("close unwinds a suspended fiber and rethrows an error raised while unwinding") {
  fiber f([] {
    try {
      fiber::suspend();
    } catch (...) {
      throw std::runtime_error("cleanup failed");
    }
  });
  CHECK(f.resume());
  CHECK_THROWS_WITH_AS(f.close(), "cleanup failed", std::runtime_error);
  CHECK(f.done());
  CHECK_NOTHROW(f.close());
}

TEST_CASE("an error raised while a fiber is destroyed is dropped") {
  bool threw = false;
  {
    fiber f([&] {
      try {
        fiber::suspend();
      } catch (...) {
        threw = true;
        throw std::runtime_error("nobody hears this");
      }
    });
    f.resume();
  }
  CHECK(threw);
}

TEST_CASE("close on a never-started fiber drops it without running the body") {
  bool ran = false;
  fiber f([&] { ran = true; });
  f.close();
  CHECK(f.done());
  CHECK_FALSE(ran);
}

TEST_CASE("suspend in a nested fiber returns to the fiber that resumed it") {
  std::vector<std::string> log;
  fiber outer([&] {
    fiber inner([&] {
      log.push_back("inner 1");
      fiber::suspend();
      log.push_back("inner 2");
    });
    log.push_back("outer 1");
    CHECK(inner.resume());
    log.push_back("outer 2");
    fiber::suspend();
    log.push_back("outer 3");
    CHECK_FALSE(inner.resume());
    log.push_back("outer 4");
  });
  CHECK(outer.resume());
  log.push_back("main");
  CHECK_FALSE(outer.resume());
  CHECK(log == std::vector<std::string>{"outer 1", "inner 1", "outer 2", "main", "outer 3",
                                        "inner 2", "outer 4"});
}

TEST_CASE("destroying an outer fiber also unwinds the suspended inner fiber it owns") {
  std::vector<std::string> log;
  counted::alive = 0;
  {
    fiber outer([&] {
      counted outer_local(&log, "outer");
      fiber inner([&] {
        counted inner_local(&log, "inner");
        fiber::suspend();
      });
      inner.resume();
      fiber::suspend();
    });
    outer.resume();
    CHECK(counted::alive == 2);
  }
  CHECK(counted::alive == 0);
  CHECK(log == std::vector<std::string>{"~inner", "~outer"});
}

TEST_CASE("an exception from a nested fiber propagates through the outer fiber") {
  fiber outer([] {
    fiber inner([] { throw std::invalid_argument("from inner"); });
    inner.resume();
  });
  CHECK_THROWS_WITH_AS(outer.resume(), "from inner", std::invalid_argument);
  CHECK(outer.done());
}

TEST_CASE("a suspended fiber keeps running after its object is moved") {
  std::vector<int> seen;
  fiber a([&] {
    seen.push_back(1);
    fiber::suspend();
    seen.push_back(2);
  });
  CHECK(a.resume());
  fiber b(std::move(a));
  CHECK(a.done());
  CHECK_THROWS_AS(a.resume(), std::logic_error);
  CHECK_FALSE(b.resume());
  CHECK(seen == std::vector<int>{1, 2});
}

TEST_CASE("move assignment unwinds the fiber it replaces") {
  std::vector<std::string> log;
  fiber a([&] {
    counted local(&log, "a");
    fiber::suspend();
  });
  a.resume();
  fiber b([&] { log.push_back("b ran"); });
  a = std::move(b);
  CHECK(log == std::vector<std::string>{"~a"});
  CHECK_FALSE(a.resume());
  CHECK(log == std::vector<std::string>{"~a", "b ran"});
}

TEST_CASE("a fiber accepts a std::function body and a move-only body") {
  int calls = 0;
  std::function<void()> fn = [&] { ++calls; };
  fiber f(fn);
  CHECK_FALSE(f.resume());
  auto owned = std::make_unique<int>(41);
  fiber g([p = std::move(owned), &calls] { calls += *p; });
  CHECK_FALSE(g.resume());
  CHECK(calls == 42);
}

TEST_CASE("a fiber that never ran may be handed to another thread and run there") {
  std::vector<int> seen;
  fiber f([&] {
    seen.push_back(1);
    fiber::suspend();
    seen.push_back(2);
  });
  std::thread([&] {
    CHECK(f.resume());
    CHECK_FALSE(f.resume());
  }).join();
  CHECK(seen == std::vector<int>{1, 2});
}

TEST_CASE("a started fiber is bound to its thread: resume and close elsewhere throw") {
  std::vector<int> seen;
  fiber f([&] {
    seen.push_back(1);
    fiber::suspend();
    seen.push_back(2);
  });
  CHECK(f.resume());
  std::string resume_error, close_error;
  std::thread([&] {
    try {
      f.resume();
    } catch (const std::logic_error& e) {
      resume_error = e.what();
    }
    try {
      f.close();
    } catch (const std::logic_error& e) {
      close_error = e.what();
    }
  }).join();
  CHECK(resume_error ==
        "corio::fiber::resume: the fiber is bound to the thread that first resumed it");
  CHECK(close_error ==
        "corio::fiber::close: the fiber is bound to the thread that first resumed it");
  CHECK_FALSE(f.resume());
  CHECK(seen == std::vector<int>{1, 2});
}

TEST_CASE("destroying a suspended fiber on another thread terminates with a message") {
  const child_result r = run_in_child([] {
    auto* f = new fiber([] { fiber::suspend(); });
    f->resume();
    std::thread([f] { delete f; }).join();
  });
  REQUIRE(WIFSIGNALED(r.status));
  CHECK(WTERMSIG(r.status) == SIGABRT);
  CHECK(r.err.find("corio::fiber: a suspended fiber destroyed on a thread other than the one "
                   "it is bound to") != std::string::npos);
}

TEST_CASE("a fiber destroying itself from its own stack terminates with a message") {
  const child_result r = run_in_child([] {
    fiber* self = nullptr;
    self = new fiber([&self] { delete self; });
    self->resume();
  });
  REQUIRE(WIFSIGNALED(r.status));
  CHECK(WTERMSIG(r.status) == SIGABRT);
  CHECK(r.err.find("corio::fiber: destroyed while running") != std::string::npos);
}

TEST_CASE("creating and finishing 100,000 fibers one after another reuses stacks") {
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < 100'000; ++i) {
    fiber f([&sum, i] {
      fiber::suspend();
      sum += i;
    });
    f.resume();
    f.resume();
  }
  CHECK(sum == 100'000ull * 99'999 / 2);
  CHECK(stack_pool::cached() >= 1);
  CHECK(stack_pool::cached() <= stack_pool::max_cached_per_size);
}

TEST_CASE("two consecutive fibers run on the same recycled stack") {
  void* first = nullptr;
  void* second = nullptr;
  {
    fiber f([&] { first = __builtin_frame_address(0); });
    f.resume();
  }
  {
    fiber f([&] { second = __builtin_frame_address(0); });
    f.resume();
  }
  REQUIRE(first != nullptr);
  CHECK(first == second);
}

TEST_CASE("deep recursion works in a fiber with a large stack") {
  std::uint64_t result = 0;
  fiber f([&] { result = deep(20'000); }, 32 * 1024 * 1024);
  CHECK_FALSE(f.resume());
  // deep(0) = 0, deep(d) = deep(d - 1) + (d mod 256) + 1.
  std::uint64_t expected = 0;
  for (int d = 1; d <= 20'000; ++d) expected += static_cast<unsigned>(d % 256) + 1;
  CHECK(result == expected);
}

TEST_CASE("overflowing a fiber's stack faults on the guard page") {
  const child_result r = run_in_child([] {
    fiber f([] { static_cast<void>(deep(1'000'000)); }, stack_pool::min_size);
    f.resume();
  });
  REQUIRE(WIFSIGNALED(r.status));
  CHECK(WTERMSIG(r.status) == SIGSEGV);
}

TEST_CASE("a body too big for its stack is refused with length_error") {
  struct huge {
    char bytes[64 * 1024];
    void operator()() const {}
  };
  CHECK_THROWS_AS(fiber(huge{}, stack_pool::min_size), std::length_error);
}

TEST_CASE("stack sizes are rounded up to whole pages and to the minimum") {
  const std::size_t page = stack_pool::page_size();
  CHECK(stack_pool::rounded_size(1) == stack_pool::min_size);
  CHECK(stack_pool::rounded_size(stack_pool::default_size) == stack_pool::default_size);
  CHECK(stack_pool::rounded_size(stack_pool::default_size + 1) ==
        stack_pool::default_size + page);
  const fiber_stack s = stack_pool::allocate(100'000);
  CHECK(s.size == (100'000 + page - 1) / page * page);
  CHECK(reinterpret_cast<std::uintptr_t>(s.low) % page == 0);
  stack_pool::deallocate(s);
}

TEST_CASE("a freed stack is handed out again by the next allocation of its size") {
  stack_pool::release_cached();
  const fiber_stack a = stack_pool::allocate(64 * 1024);
  CHECK(stack_pool::cached() == 0);
  stack_pool::deallocate(a);
  CHECK(stack_pool::cached() == 1);
  const fiber_stack b = stack_pool::allocate(64 * 1024);
  CHECK(b.low == a.low);
  CHECK(stack_pool::cached() == 0);
  stack_pool::deallocate(b);
  stack_pool::release_cached();
  CHECK(stack_pool::cached() == 0);
}

TEST_CASE("the cache keeps at most max_cached_per_size stacks of one size") {
  stack_pool::release_cached();
  std::vector<fiber_stack> stacks;
  for (std::size_t i = 0; i < stack_pool::max_cached_per_size + 10; ++i)
    stacks.push_back(stack_pool::allocate(32 * 1024));
  for (const fiber_stack& s : stacks) stack_pool::deallocate(s);
  CHECK(stack_pool::cached() == stack_pool::max_cached_per_size);
  stack_pool::release_cached();
  CHECK(stack_pool::cached() == 0);
}

TEST_CASE("the page below a stack is a PROT_NONE guard and the stack is read-write") {
  const fiber_stack s = stack_pool::map(64 * 1024);
  const std::size_t page = stack_pool::page_size();
  CHECK(mapping_permissions(static_cast<char*>(s.low) - page) == "---p");
  CHECK(mapping_permissions(s.low) == "rw-p");
  stack_pool::unmap(s);
}

TEST_CASE("touching the guard page kills the process with SIGSEGV") {
  const fiber_stack s = stack_pool::allocate(64 * 1024);
  const child_result r = run_in_child([&] {
    volatile char* below = static_cast<char*>(s.low) - 1;
    *below = 1;
  });
  REQUIRE(WIFSIGNALED(r.status));
  CHECK(WTERMSIG(r.status) == SIGSEGV);
  // The usable range itself is writable at both ends.
  static_cast<volatile char*>(s.low)[0] = 1;
  static_cast<volatile char*>(s.high())[-1] = 1;
  stack_pool::deallocate(s);
}

TEST_CASE("a failed mmap throws system_error naming the size it wanted") {
  const std::size_t absurd = std::size_t{1} << 52;
  try {
    static_cast<void>(stack_pool::allocate(absurd));
    FAIL("allocate did not throw");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::not_enough_memory);
    const std::string what = e.what();
    const std::string expected_prefix =
        "mmap fiber stack of " + std::to_string(absurd + stack_pool::page_size()) + " bytes: ";
    CHECK(what.rfind(expected_prefix, 0) == 0);
  }
}
