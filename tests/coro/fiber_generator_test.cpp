// corio::fiber_generator: values in order, yield from nested plain functions, exceptions,
// early exit with unwinding, and volume.

#include <doctest/doctest.h>

#include <corio/coro/fiber_generator.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using corio::fiber;
using corio::fiber_generator;
using corio::yielder;

static_assert(std::ranges::input_range<fiber_generator<int>>);
static_assert(std::input_iterator<fiber_generator<int>::iterator>);
static_assert(!std::is_copy_constructible_v<fiber_generator<int>>);
static_assert(!std::is_copy_constructible_v<yielder<int>>);

struct counted {
  static inline int alive = 0;
  counted() { ++alive; }
  counted(const counted&) { ++alive; }
  ~counted() { --alive; }
};

struct node {
  int value;
  std::unique_ptr<node> left, right;
};

void insert(std::unique_ptr<node>& root, int v) {
  if (!root) {
    root = std::make_unique<node>(node{v, nullptr, nullptr});
  } else if (v < root->value) {
    insert(root->left, v);
  } else {
    insert(root->right, v);
  }
}

// A plain recursive function: the point of a stackful generator.
void walk_in_order(const node* n, yielder<int>& out) {
  if (n == nullptr) return;
  walk_in_order(n->left.get(), out);
  out.yield(n->value);
  walk_in_order(n->right.get(), out);
}

// Calls `visit` for each element, knowing nothing about generators.
template <class Visitor>
void for_each_square(int n, Visitor&& visit) {
  for (int i = 1; i <= n; ++i) visit(i * i);
}

}  // namespace

TEST_CASE("next returns the yielded values in order, then empty optionals for good") {
  fiber_generator<int> g([](yielder<int>& out) {
    out.yield(10);
    out.yield(20);
    out.yield(30);
  });
  CHECK(g.next() == std::optional<int>(10));
  CHECK(g.next() == std::optional<int>(20));
  CHECK(g.next() == std::optional<int>(30));
  CHECK_FALSE(g.next().has_value());
  CHECK(g.done());
  CHECK_FALSE(g.next().has_value());
}

TEST_CASE("the generator body does not run before the first next") {
  std::vector<std::string> log;
  fiber_generator<int> g([&](yielder<int>& out) {
    log.push_back("start");
    out.yield(1);
    log.push_back("after 1");
  });
  CHECK(log.empty());
  CHECK(g.next() == std::optional<int>(1));
  CHECK(log == std::vector<std::string>{"start"});
  CHECK_FALSE(g.next().has_value());
  CHECK(log == std::vector<std::string>{"start", "after 1"});
}

TEST_CASE("a recursive tree walk in plain functions yields the values in order") {
  std::unique_ptr<node> root;
  for (int v : {50, 30, 70, 20, 40, 60, 80, 35, 65, 10}) insert(root, v);
  fiber_generator<int> g([&](yielder<int>& out) { walk_in_order(root.get(), out); });
  std::vector<int> seen;
  for (int v : g) seen.push_back(v);
  CHECK(seen == std::vector<int>{10, 20, 30, 35, 40, 50, 60, 65, 70, 80});
}

TEST_CASE("a yielder can be passed where a callback is expected") {
  fiber_generator<int> g([](yielder<int>& out) { for_each_square(5, out); });
  std::vector<int> seen;
  while (auto v = g.next()) seen.push_back(*v);
  CHECK(seen == std::vector<int>{1, 4, 9, 16, 25});
}

TEST_CASE("breaking out of range-for destroys the generator and unwinds its body") {
  counted::alive = 0;
  std::vector<int> seen;
  bool reached_end = false;
  {
    fiber_generator<int> g([&](yielder<int>& out) {
      counted local;
      for (int i = 0; i < 100; ++i) {
        counted per_iteration;
        out.yield(i);
      }
      reached_end = true;
    });
    for (int v : g) {
      seen.push_back(v);
      if (v == 3) break;
    }
    CHECK(counted::alive == 2);
  }
  CHECK(counted::alive == 0);
  CHECK_FALSE(reached_end);
  CHECK(seen == std::vector<int>{0, 1, 2, 3});
}

TEST_CASE("an exception from the body propagates out of next and ends the generator") {
  fiber_generator<int> g([](yielder<int>& out) {
    out.yield(1);
    throw std::domain_error("bad input at 2");
  });
  CHECK(g.next() == std::optional<int>(1));
  CHECK_THROWS_WITH_AS(static_cast<void>(g.next()), "bad input at 2", std::domain_error);
  CHECK(g.done());
  CHECK_FALSE(g.next().has_value());
}

TEST_CASE("an exception from the body propagates out of range-for") {
  fiber_generator<int> g([](yielder<int>& out) {
    out.yield(1);
    out.yield(2);
    throw std::runtime_error("stop");
  });
  std::vector<int> seen;
  auto consume = [&] {
    for (int v : g) seen.push_back(v);
  };
  CHECK_THROWS_WITH_AS(consume(), "stop", std::runtime_error);
  CHECK(seen == std::vector<int>{1, 2});
}

TEST_CASE("a generator of one million values sums correctly") {
  fiber_generator<std::uint64_t> g([](yielder<std::uint64_t>& out) {
    for (std::uint64_t i = 1; i <= 1'000'000; ++i) out.yield(i);
  });
  std::uint64_t sum = 0;
  std::uint64_t count = 0;
  for (std::uint64_t v : g) {
    sum += v;
    ++count;
  }
  CHECK(count == 1'000'000);
  CHECK(sum == 1'000'000ull * 1'000'001 / 2);
}

TEST_CASE("move-only values pass through next and through the iterator") {
  fiber_generator<std::unique_ptr<int>> g([](yielder<std::unique_ptr<int>>& out) {
    out.yield(std::make_unique<int>(1));
    auto two = std::make_unique<int>(2);
    out(std::move(two));
    out.yield(std::make_unique<int>(3));
  });
  std::optional<std::unique_ptr<int>> first = g.next();
  REQUIRE(first.has_value());
  CHECK(**first == 1);
  std::vector<int> rest;
  for (std::unique_ptr<int>& p : g) {
    std::unique_ptr<int> taken = std::move(p);
    rest.push_back(*taken);
  }
  CHECK(rest == std::vector<int>{2, 3});
}

TEST_CASE("a generator moved mid-way continues where it stopped") {
  fiber_generator<int> a([](yielder<int>& out) {
    for (int i = 0; i < 4; ++i) out.yield(i);
  });
  CHECK(a.next() == std::optional<int>(0));
  fiber_generator<int> b(std::move(a));
  CHECK(a.done());
  CHECK(b.next() == std::optional<int>(1));
  fiber_generator<int> c([](yielder<int>&) {});
  c = std::move(b);
  std::vector<int> rest;
  for (int v : c) rest.push_back(v);
  CHECK(rest == std::vector<int>{2, 3});
}

TEST_CASE("close mid-way unwinds the body and exhausts the generator") {
  counted::alive = 0;
  fiber_generator<int> g([](yielder<int>& out) {
    counted local;
    out.yield(1);
    out.yield(2);
  });
  CHECK(g.next() == std::optional<int>(1));
  CHECK(counted::alive == 1);
  g.close();
  CHECK(counted::alive == 0);
  CHECK(g.done());
  CHECK_FALSE(g.next().has_value());
}

TEST_CASE("a generator body can consume another generator") {
  fiber_generator<int> doubled([](yielder<int>& out) {
    fiber_generator<int> inner([](yielder<int>& in) {
      for (int i = 1; i <= 3; ++i) in.yield(i);
    });
    for (int v : inner) out.yield(2 * v);
  });
  std::vector<int> seen;
  for (int v : doubled) seen.push_back(v);
  CHECK(seen == std::vector<int>{2, 4, 6});
}

TEST_CASE("yield from a fiber the body resumed throws logic_error in that fiber") {
  std::string message;
  fiber_generator<int> g([&](yielder<int>& out) {
    fiber other([&] {
      try {
        out.yield(1);
      } catch (const std::logic_error& e) {
        message = e.what();
      }
    });
    other.resume();
    out.yield(2);
  });
  CHECK(g.next() == std::optional<int>(2));
  CHECK(message.find("outside the generator's own fiber") != std::string::npos);
}

TEST_CASE("a bare fiber::suspend in the body makes next throw logic_error") {
  fiber_generator<int> g([](yielder<int>&) { fiber::suspend(); });
  CHECK_THROWS_AS(static_cast<void>(g.next()), std::logic_error);
}

TEST_CASE("an empty body yields nothing and begin equals end") {
  fiber_generator<int> g([](yielder<int>&) {});
  CHECK(g.begin() == g.end());
  CHECK(g.done());
}
