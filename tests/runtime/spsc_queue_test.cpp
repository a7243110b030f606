// spsc_queue: order, capacity, full/empty edges, element lifetimes, two threads.
#include <doctest/doctest.h>

#include <corio/runtime/detail/spsc_queue.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

using corio::detail::spsc_queue;

namespace {

// Counts live instances across threads; carries a value to check order.
struct counted {
  static inline std::atomic<long> alive{0};
  std::uint64_t value = 0;
  explicit counted(std::uint64_t v) noexcept : value(v) { alive.fetch_add(1, std::memory_order_relaxed); }
  counted(const counted& o) noexcept : value(o.value) { alive.fetch_add(1, std::memory_order_relaxed); }
  counted(counted&& o) noexcept : value(o.value) { alive.fetch_add(1, std::memory_order_relaxed); }
  counted& operator=(const counted&) = default;
  counted& operator=(counted&&) = default;
  ~counted() { alive.fetch_sub(1, std::memory_order_relaxed); }
};

}  // namespace

TEST_CASE("capacity is rounded up to a power of two") {
  CHECK(spsc_queue<int>(1).capacity() == 1);
  CHECK(spsc_queue<int>(3).capacity() == 4);
  CHECK(spsc_queue<int>(1024).capacity() == 1024);
  CHECK(spsc_queue<int>(1025).capacity() == 2048);
}

TEST_CASE("a zero capacity is rejected with invalid_argument") {
  CHECK_THROWS_WITH_AS(spsc_queue<int>(0), "corio::spsc_queue: capacity must be between 1 and 2^40",
                       std::invalid_argument);
}

TEST_CASE("an empty queue has no front and try_pop fails") {
  spsc_queue<int> q(4);
  CHECK(q.empty());
  CHECK(q.front() == nullptr);
  int out = -1;
  CHECK_FALSE(q.try_pop(out));
  CHECK(out == -1);
}

TEST_CASE("a full queue refuses the next push and accepts it again after one pop") {
  spsc_queue<int> q(4);
  for (int i = 0; i < 4; ++i) CHECK(q.try_push(i));
  CHECK_FALSE(q.try_push(99));
  int out = -1;
  CHECK(q.try_pop(out));
  CHECK(out == 0);
  CHECK(q.try_push(4));
  CHECK_FALSE(q.try_push(5));
  for (int want = 1; want <= 4; ++want) {
    REQUIRE(q.try_pop(out));
    CHECK(out == want);
  }
  CHECK(q.empty());
}

TEST_CASE("a queue of capacity one alternates full and empty across many wraps") {
  spsc_queue<std::string> q(1);
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(q.try_emplace(std::to_string(i)));
    REQUIRE_FALSE(q.try_push("x"));
    REQUIRE(q.front() != nullptr);
    CHECK(*q.front() == std::to_string(i));
    q.pop();
    REQUIRE(q.empty());
  }
}

TEST_CASE("move-only elements go through") {
  spsc_queue<std::unique_ptr<int>> q(2);
  CHECK(q.try_push(std::make_unique<int>(7)));
  std::unique_ptr<int> out;
  CHECK(q.try_pop(out));
  REQUIRE(out != nullptr);
  CHECK(*out == 7);
}

TEST_CASE("destroying a queue destroys the elements still in it") {
  counted::alive = 0;
  {
    spsc_queue<counted> q(8);
    for (std::uint64_t i = 0; i < 5; ++i) REQUIRE(q.try_emplace(i));
    REQUIRE(q.front() != nullptr);
    q.pop();
    CHECK(counted::alive == 4);
  }
  CHECK(counted::alive == 0);
}

TEST_CASE("ten million items cross between two threads in order, none leaked") {
  counted::alive = 0;
  constexpr std::uint64_t total = 10'000'000;
  {
    spsc_queue<counted> q(1024);
    std::thread producer([&] {
      for (std::uint64_t i = 0; i < total; ++i)
        while (!q.try_emplace(i)) std::this_thread::yield();
    });
    std::uint64_t expected = 0;
    std::uint64_t sum = 0;
    bool in_order = true;
    while (expected < total) {
      counted* c = q.front();
      if (c == nullptr) {
        std::this_thread::yield();
        continue;
      }
      in_order = in_order && c->value == expected;
      sum += c->value;
      q.pop();
      ++expected;
    }
    producer.join();
    CHECK(in_order);
    CHECK(expected == total);
    CHECK(sum == total * (total - 1) / 2);
    CHECK(q.empty());
  }
  CHECK(counted::alive == 0);
}
