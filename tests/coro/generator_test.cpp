// generator<Y, Send, Return>: Python generator parity, one behaviour per test case.
#include <doctest/doctest.h>

#include <corio/coro/generator.hpp>

#include <pthread.h>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "lifetime.hpp"

using corio::elements_of;
using corio::generator;
using corio_test::lifetime;

namespace {

generator<int, int> jumping_range(int n) {
  int index = 0;
  while (index < n) {
    std::optional<int> jump = co_yield index;
    index += jump.value_or(1);
  }
}

generator<int> count_to(int n) {
  for (int i = 1; i <= n; ++i) co_yield i;
}


}  // namespace

TEST_CASE("jumping_range answers next and send exactly like the Python seed") {
  auto it = jumping_range(5);
  CHECK(it.next() == 0);
  CHECK(it.send(2) == 2);
  CHECK(it.next() == 3);
  CHECK(it.send(-1) == 2);
  CHECK(it.next() == 3);
  CHECK(it.next() == 4);
  CHECK(it.next() == std::nullopt);
  CHECK(it.done());
}

TEST_CASE("the yield expression is empty after next and holds the value after send") {
  std::vector<std::optional<std::string>> received;
  auto echo = [&]() -> generator<int, std::string> {
    for (int i = 0; i < 3; ++i) received.push_back(co_yield i);
  };
  auto g = echo();
  CHECK(g.next() == 0);
  CHECK(g.send("a") == 1);
  CHECK(g.next() == 2);
  CHECK(g.send("b") == std::nullopt);
  REQUIRE(received.size() == 3);
  CHECK(received[0] == "a");
  CHECK(received[1] == std::nullopt);
  CHECK(received[2] == "b");
}

TEST_CASE("a generator is lazy: its body runs only at the first next") {
  int runs = 0;
  auto lazy = [&]() -> generator<int> {
    ++runs;
    co_yield 1;
  };
  auto g = lazy();
  CHECK(runs == 0);
  CHECK(g.next() == 1);
  CHECK(runs == 1);
}

TEST_CASE("next on an exhausted generator keeps returning empty") {
  auto g = count_to(1);
  CHECK(g.next() == 1);
  CHECK(g.next() == std::nullopt);
  CHECK(g.next() == std::nullopt);
}

TEST_CASE("send before the first next throws generator_misuse like Python's TypeError") {
  auto g = jumping_range(5);
  CHECK_THROWS_WITH_AS(g.send(2),
                       "corio::generator::send: can't send a value to a just-started generator; "
                       "call next() first",
                       corio::generator_misuse);
  CHECK(g.next() == 0);  // the generator is still usable
}

TEST_CASE("send to a finished generator throws instead of losing the value") {
  auto g = jumping_range(1);
  CHECK(g.next() == 0);
  CHECK(g.next() == std::nullopt);
  CHECK_THROWS_WITH_AS(g.send(1), "corio::generator::send: the generator has finished",
                       corio::generator_misuse);
}

TEST_CASE("result returns the co_return value once the generator finishes") {
  auto averager = []() -> generator<double, double, int> {
    double total = 0;
    int count = 0;
    for (;;) {
      std::optional<double> v = co_yield(count ? total / count : 0.0);
      if (!v) co_return count;
      total += *v;
      ++count;
    }
  };
  auto g = averager();
  CHECK(g.next() == 0.0);
  CHECK(g.send(10) == 10.0);
  CHECK(g.send(20) == 15.0);
  CHECK_THROWS_AS(g.result(), corio::generator_misuse);  // not finished yet
  CHECK(g.next() == std::nullopt);
  CHECK(g.result() == 2);
}

TEST_CASE("an exception escaping the body propagates out of next and finishes the generator") {
  auto failing = []() -> generator<int> {
    co_yield 1;
    throw std::runtime_error("bad row 2");
  };
  auto g = failing();
  CHECK(g.next() == 1);
  CHECK_THROWS_WITH_AS(g.next(), "bad row 2", std::runtime_error);
  CHECK(g.done());
  CHECK(g.next() == std::nullopt);
}

TEST_CASE("throw_into raises at the co_yield and returns the next value when caught") {
  std::string seen;
  auto resilient = [&]() -> generator<int> {
    for (int i = 0; i < 3; ++i) {
      try {
        co_yield i;
      } catch (const std::invalid_argument& e) {
        seen = e.what();
      }
    }
  };
  auto g = resilient();
  CHECK(g.next() == 0);
  CHECK(g.throw_into(std::invalid_argument("skip")) == 1);
  CHECK(seen == "skip");
  CHECK(g.next() == 2);
}

TEST_CASE("throw_into propagates the exception when the body does not catch it") {
  auto g = count_to(5);
  CHECK(g.next() == 1);
  CHECK_THROWS_WITH_AS(g.throw_into(std::out_of_range("stop here")), "stop here", std::out_of_range);
  CHECK(g.done());
}

TEST_CASE("throw_into on a just-started generator raises at once and finishes it") {
  auto g = count_to(5);
  CHECK_THROWS_AS(g.throw_into(std::out_of_range("early")), std::out_of_range);
  CHECK(g.done());
  CHECK(g.next() == std::nullopt);
}

TEST_CASE("close runs the destructors of the suspended frame") {
  lifetime::alive = 0;
  auto holder = []() -> generator<int> {
    lifetime guard;
    for (int i = 0;; ++i) co_yield i;
  };
  auto g = holder();
  CHECK(g.next() == 0);
  CHECK(lifetime::alive == 1);
  g.close();
  CHECK(lifetime::alive == 0);
  CHECK(g.done());
  CHECK(g.next() == std::nullopt);
}

TEST_CASE("close raises generator_exit at the yield so the body can clean up") {
  std::vector<std::string> log;
  auto body = [&]() -> generator<int> {
    try {
      co_yield 1;
      co_yield 2;
    } catch (const corio::generator_exit&) {
      log.push_back("closing");
      throw;
    }
  };
  auto g = body();  // the lambda must outlive the frame
  CHECK(g.next() == 1);
  g.close();
  CHECK(log == std::vector<std::string>{"closing"});
}

TEST_CASE("generator_exit is not caught by catch (const std::exception&)") {
  bool swallowed = false;
  auto body = [&]() -> generator<int> {
    try {
      co_yield 1;
    } catch (const std::exception&) {
      swallowed = true;
    }
  };
  auto g = body();  // the lambda must outlive the frame
  CHECK(g.next() == 1);
  g.close();
  CHECK(!swallowed);
}

TEST_CASE("a generator that yields again after close is destroyed and close throws") {
  auto stubborn = []() -> generator<int> {
    for (;;) {
      try {
        co_yield 1;
      } catch (...) {
      }
    }
  };
  auto g = stubborn();
  CHECK(g.next() == 1);
  CHECK_THROWS_WITH_AS(g.close(), "corio::generator::close: generator ignored close() and yielded again",
                       corio::generator_misuse);
  CHECK(g.done());
}

TEST_CASE("close on a never-started or finished generator is a no-op") {
  auto a = count_to(3);
  a.close();
  CHECK(a.done());
  auto b = count_to(1);
  CHECK(b.next() == 1);
  CHECK(b.next() == std::nullopt);
  b.close();
  CHECK(b.done());
}

TEST_CASE("close lets an unrelated exception from the cleanup code propagate") {
  auto body = []() -> generator<int> {
    try {
      co_yield 1;
    } catch (const corio::generator_exit&) {
      throw std::runtime_error("cleanup failed");
    }
  };
  auto g = body();  // the lambda must outlive the frame
  CHECK(g.next() == 1);
  CHECK_THROWS_WITH_AS(g.close(), "cleanup failed", std::runtime_error);
}

TEST_CASE("destroying a suspended generator runs its destructors") {
  lifetime::alive = 0;
  {
    auto body = []() -> generator<int> {
      lifetime a;
      lifetime b;
      co_yield 1;
      co_yield 2;
    };
    auto g = body();  // the lambda must outlive the frame
    CHECK(g.next() == 1);
    CHECK(lifetime::alive == 2);
  }
  CHECK(lifetime::alive == 0);
}

TEST_CASE("range-for visits every value in order") {
  std::vector<int> seen;
  for (int v : count_to(5)) seen.push_back(v);
  CHECK(seen == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("breaking out of a range-for destroys the generator's locals") {
  lifetime::alive = 0;
  auto infinite = []() -> generator<int> {
    lifetime guard;
    for (int i = 0;; ++i) co_yield i;
  };
  int last = -1;
  for (int v : infinite()) {
    last = v;
    if (v == 3) break;
  }
  CHECK(last == 3);
  CHECK(lifetime::alive == 0);
}

TEST_CASE("an lvalue yield is copied and an rvalue yield is moved") {
  std::string kept = "kept";
  auto body = [&]() -> generator<std::string> {
    co_yield kept;
    co_yield std::string("temporary");
  };
  auto g = body();  // the lambda must outlive the frame
  CHECK(g.next() == "kept");
  CHECK(kept == "kept");  // the consumer's move did not reach the body's variable
  CHECK(g.next() == "temporary");
}

TEST_CASE("a generator can yield move-only values") {
  auto body = []() -> generator<std::unique_ptr<int>> {
    co_yield std::make_unique<int>(1);
    auto p = std::make_unique<int>(2);
    co_yield std::move(p);
  };
  auto g = body();  // the lambda must outlive the frame
  CHECK(**g.next() == 1);
  CHECK(**g.next() == 2);
  CHECK(g.next() == std::nullopt);
}

TEST_CASE("elements_of yields every value of the inner generator in place (yield from)") {
  auto outer = []() -> generator<int> {
    co_yield 0;
    co_yield elements_of(count_to(3));
    co_yield 99;
  };
  std::vector<int> seen;
  for (int v : outer()) seen.push_back(v);
  CHECK(seen == std::vector<int>{0, 1, 2, 3, 99});
}

TEST_CASE("elements_of forwards send to the innermost generator and returns its result") {
  auto inner = []() -> generator<int, int, std::string> {
    std::optional<int> a = co_yield 1;
    std::optional<int> b = co_yield 2;
    co_return "inner got " + std::to_string(a.value_or(-1)) + "," + std::to_string(b.value_or(-1));
  };
  std::string inner_result;
  auto outer = [&]() -> generator<int, int> {
    inner_result = co_yield elements_of(inner());
    std::optional<int> c = co_yield 3;
    co_yield c.value_or(-1) * 10;
  };
  auto g = outer();
  CHECK(g.next() == 1);
  CHECK(g.send(7) == 2);
  CHECK(g.send(8) == 3);
  CHECK(inner_result == "inner got 7,8");
  CHECK(g.send(4) == 40);
  CHECK(g.next() == std::nullopt);
}

TEST_CASE("elements_of nests to any depth in one chain") {
  struct tree {
    static generator<int> walk(int depth) {
      co_yield depth;
      if (depth > 0) co_yield elements_of(walk(depth - 1));
    }
  };
  std::vector<int> seen;
  for (int v : tree::walk(4)) seen.push_back(v);
  CHECK(seen == std::vector<int>{4, 3, 2, 1, 0});
}

TEST_CASE("an exception in the inner generator propagates through elements_of to the outer body") {
  auto inner = []() -> generator<int> {
    co_yield 1;
    throw std::runtime_error("inner broke");
  };
  std::string caught;
  auto outer = [&]() -> generator<int> {
    try {
      co_yield elements_of(inner());
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    co_yield 2;
  };
  std::vector<int> seen;
  for (int v : outer()) seen.push_back(v);
  CHECK(seen == std::vector<int>{1, 2});
  CHECK(caught == "inner broke");
}

TEST_CASE("throw_into reaches the innermost generator of an elements_of chain") {
  std::string where;
  auto inner = [&]() -> generator<int> {
    try {
      co_yield 1;
    } catch (const std::logic_error&) {
      where = "inner";
    }
    co_yield 100;  // C++ forbids co_yield inside a handler
  };
  auto outer = [&]() -> generator<int> { co_yield elements_of(inner()); };
  auto g = outer();
  CHECK(g.next() == 1);
  CHECK(g.throw_into(std::logic_error("x")) == 100);
  CHECK(where == "inner");
}

TEST_CASE("close unwinds the inner and the outer frames of an elements_of chain") {
  lifetime::alive = 0;
  auto inner = []() -> generator<int> {
    lifetime in;
    for (;;) co_yield 1;
  };
  auto outer = [&]() -> generator<int> {
    lifetime out;
    co_yield elements_of(inner());
  };
  auto g = outer();
  CHECK(g.next() == 1);
  CHECK(lifetime::alive == 2);
  g.close();
  CHECK(lifetime::alive == 0);
}

TEST_CASE("elements_of rejects an inner generator that was already started") {
  auto outer = []() -> generator<int> {
    auto sub = count_to(3);
    (void)sub.next();
    co_yield elements_of(std::move(sub));
  };
  auto g = outer();
  CHECK_THROWS_WITH_AS(g.next(), "co_yield elements_of: the inner generator was already started",
                       corio::generator_misuse);
}

TEST_CASE("calling next from inside the running generator throws generator_misuse") {
  generator<int>* self = nullptr;
  auto body = [&]() -> generator<int> {
    co_yield 1;
    (void)self->next();
  };
  auto g = body();  // the lambda must outlive the frame
  self = &g;
  CHECK(g.next() == 1);
  CHECK_THROWS_WITH_AS(g.next(), "corio::generator: generator already executing", corio::generator_misuse);
}

TEST_CASE("a moved-from generator is empty and the target continues where it was") {
  auto a = count_to(3);
  CHECK(a.next() == 1);
  auto b = std::move(a);
  CHECK(a.done());
  CHECK(a.next() == std::nullopt);
  CHECK(b.next() == 2);
}

TEST_CASE("a generator of 1,000,000 values sums correctly") {
  long long sum = 0;
  for (int v : count_to(1'000'000)) sum += v;
  CHECK(sum == 500'000'500'000LL);
}

// A chain of nested elements_of generators, `depth` levels above a leaf that adds up what
// is sent to it and returns the sum when sent a negative number. Each level returns what
// its inner generator returned, plus one.
namespace deep_chain {

constexpr int depth = 10'000;

generator<long long, long long, long long> leaf() {
  lifetime guard;
  long long sum = 0;
  for (;;) {
    const std::optional<long long> sent = co_yield sum;
    if (!sent) continue;
    if (*sent < 0) co_return sum;
    sum += *sent;
  }
}

generator<long long, long long, long long> level(int below) {
  lifetime guard;
  const long long inner = below == 0 ? co_yield elements_of(leaf()) : co_yield elements_of(level(below - 1));
  co_return inner + 1;
}

// Runs `body` on a thread with a 512 KiB stack, and rethrows what it threw. A chain that
// took stack frames per level would overflow it: at -O0 under ASan, 10,000 levels entered
// by symmetric transfer need more than 1 MiB, and torn down recursively more than 4 MiB.
void on_small_stack(const std::function<void()>& body) {
  struct job {
    const std::function<void()>* body;
    std::exception_ptr error;
  } j{&body, nullptr};
  pthread_attr_t attr;
  REQUIRE(pthread_attr_init(&attr) == 0);
  REQUIRE(pthread_attr_setstacksize(&attr, 512 * 1024) == 0);
  pthread_t t;
  const int rc = pthread_create(
      &t, &attr,
      [](void* arg) -> void* {
        auto* jb = static_cast<job*>(arg);
        try {
          (*jb->body)();
        } catch (...) {
          jb->error = std::current_exception();
        }
        return nullptr;
      },
      &j);
  pthread_attr_destroy(&attr);
  REQUIRE(rc == 0);
  REQUIRE(pthread_join(t, nullptr) == 0);
  if (j.error) std::rethrow_exception(j.error);
}

}  // namespace deep_chain

// At -O0 and under AddressSanitizer (scripts/test.sh's asan build) the compiler does not
// turn symmetric transfer into a tail call, so entering or leaving 10,000 levels by
// symmetric transfer would need 10,000 nests of stack frames at once: the generator
// passes control between levels through its own trampoline instead (generator.hpp).
TEST_CASE("a chain of 10,000 nested generators passes 1,000,000 sends to the innermost in constant stack") {
  lifetime::alive = 0;
  std::optional<long long> first, last;
  int alive_inside = 0, wrong = 0;
  long long expected = 0, result = 0;
  bool done = false;
  deep_chain::on_small_stack([&] {
    auto g = deep_chain::level(deep_chain::depth - 1);
    first = g.next();  // enters every level, down to the leaf
    alive_inside = lifetime::alive;
    // Counted, not CHECKed one by one: a million assertions cost seconds at -O0.
    for (long long i = 1; i <= 1'000'000; ++i) {
      expected += i % 7;
      if (g.send(i % 7) != expected) ++wrong;
    }
    last = g.send(-1);  // every level returns, one after the other
    done = g.done();
    result = g.result();
  });
  CHECK(first == 0);
  CHECK(alive_inside == deep_chain::depth + 1);
  CHECK(wrong == 0);
  CHECK(last == std::nullopt);
  CHECK(done);
  CHECK(result == expected + deep_chain::depth);
  CHECK(lifetime::alive == 0);
}

TEST_CASE("destroying a suspended chain of 10,000 nested generators runs every frame's destructors") {
  lifetime::alive = 0;
  int alive_inside = 0;
  std::optional<long long> sum;
  deep_chain::on_small_stack([&] {
    auto g = deep_chain::level(deep_chain::depth - 1);
    (void)g.next();
    sum = g.send(5);
    alive_inside = lifetime::alive;
  });
  CHECK(sum == 5);
  CHECK(alive_inside == deep_chain::depth + 1);
  CHECK(lifetime::alive == 0);
}

TEST_CASE("closing a suspended chain of 10,000 nested generators unwinds every level") {
  lifetime::alive = 0;
  bool done = false;
  deep_chain::on_small_stack([&] {
    auto g = deep_chain::level(deep_chain::depth - 1);
    (void)g.next();
    g.close();
    done = g.done();
  });
  CHECK(done);
  CHECK(lifetime::alive == 0);
}
