// runtime: shards, submit_to (values, void, exceptions, coroutines), a million messages,
// idle wake-ups without polling, nested chains, stop and shutdown, odd shard counts.
#include <doctest/doctest.h>

#include "../needs_feature.hpp"

#include <corio/coro/task_group.hpp>
#include <corio/runtime/errors.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/runtime.hpp>
#include <corio/runtime/timer.hpp>

#include <sys/resource.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cpu_time.hpp"

using namespace std::chrono_literals;
using corio::task;

namespace {

corio::runtime_options two_shards(bool msg_ring = true) {
  return {.shards = 2, .pin = false, .queue_capacity = 1024, .use_msg_ring = msg_ring, .loop = {}};
}

double cpu_seconds() { return corio_test::cpu_seconds(RUSAGE_SELF); }

}  // namespace

TEST_CASE("submit_to returns the value fn computed on the target shard") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<std::string> {
    const unsigned before = corio::this_shard();
    // A capture with a non-trivial destructor. Named, not written inside the co_await:
    // GCC 12 destroys such a lambda temporary twice there (a compiler bug).
    auto fn = [suffix = std::string(" from shard, a string too long for SSO ")] {
      return "hello" + suffix + std::to_string(corio::this_shard());
    };
    std::string r = co_await corio::submit_to(1, std::move(fn));
    CHECK(before == 0);
    CHECK(corio::this_shard() == 0);  // resumed on the caller's shard
    co_return r;
  };
  CHECK(rt.run(main()) == "hello from shard, a string too long for SSO 1");
}

TEST_CASE("submit_to with a void fn runs it on the target before resuming") {
  corio::runtime rt(two_shards());
  unsigned ran_on = 99;
  auto main = [&]() -> task<void> {
    co_await corio::submit_to(1, [&] { ran_on = corio::this_shard(); });
    CHECK(ran_on == 1);
  };
  rt.run(main());
  CHECK(ran_on == 1);
}

TEST_CASE("an exception thrown by fn reaches the caller with its type and message") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<void> {
    CHECK_THROWS_WITH_AS(co_await corio::submit_to(1, []() -> int { throw std::domain_error("boom on shard 1"); }),
                         "boom on shard 1", std::domain_error);
    // The shard is still usable afterwards.
    CHECK(co_await corio::submit_to(1, [] { return 5; }) == 5);
  };
  rt.run(main());
}

TEST_CASE("a coroutine fn may suspend on the target and its value comes back") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<void> {
    auto fn = []() -> task<unsigned> {
      const unsigned first = corio::this_shard();
      co_await corio::sleep_for(20ms);
      co_return first * 100 + corio::this_shard();
    };
    const auto start = std::chrono::steady_clock::now();
    CHECK(co_await corio::submit_to(1, fn) == 101);
    CHECK(std::chrono::steady_clock::now() - start >= 20ms);
  };
  rt.run(main());
}

TEST_CASE("a coroutine fn that throws after suspending rethrows in the caller") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<void> {
    auto fn = []() -> task<void> {
      co_await corio::sleep_for(1ms);
      throw std::runtime_error("late failure");
    };
    CHECK_THROWS_WITH_AS(co_await corio::submit_to(1, fn), "late failure", std::runtime_error);
  };
  rt.run(main());
}

TEST_CASE("a million messages from shard 0 to shard 1 arrive exactly once") {
  corio::runtime rt(two_shards());
  constexpr std::uint64_t senders = 100;
  constexpr std::uint64_t per_sender = 10'000;
  std::uint64_t executed = 0;      // touched on shard 1 only
  std::uint64_t target_sum = 0;    // touched on shard 1 only
  std::uint64_t returned_sum = 0;  // touched on shard 0 only
  std::uint64_t replies = 0;
  auto sender = [&](std::uint64_t id) -> task<void> {
    for (std::uint64_t i = 0; i < per_sender; ++i) {
      const std::uint64_t v = id * per_sender + i;
      const std::uint64_t r = co_await corio::submit_to(1, [&executed, &target_sum, v] {
        ++executed;
        target_sum += v;
        return v;
      });
      returned_sum += r;
      ++replies;
    }
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (std::uint64_t id = 0; id < senders; ++id) g.spawn(sender(id));
    co_await g.wait();
  };
  rt.run(main());
  constexpr std::uint64_t total = senders * per_sender;
  constexpr std::uint64_t checksum = total * (total - 1) / 2;
  CHECK(executed == total);
  CHECK(replies == total);
  CHECK(target_sum == checksum);
  CHECK(returned_sum == checksum);
}

namespace {

// Counts, per shard, of fns executed there and of replies received there, and the sum of
// the values those replies carried.
struct exchange_counts {
  std::uint64_t executed[2] = {0, 0};
  std::uint64_t received[2] = {0, 0};
  std::uint64_t sums[2] = {0, 0};
};

// `senders` coroutines on each of two shards each submit `per_sender` distinct values to
// the other shard, all at once; every fn returns its value.
exchange_counts exchange_both_ways(corio::runtime_options options, std::uint64_t senders,
                                   std::uint64_t per_sender) {
  corio::runtime rt(options);
  exchange_counts c;
  // Runs on shard `from`, sending to the other one.
  auto sender = [&](unsigned from, std::uint64_t id) -> task<void> {
    const unsigned to = 1 - from;
    for (std::uint64_t i = 0; i < per_sender; ++i) {
      const std::uint64_t v = id * per_sender + i;
      c.sums[from] += co_await corio::submit_to(to, [&c, to, v] {
        ++c.executed[to];
        return v;
      });
      ++c.received[from];
    }
  };
  auto group_on = [&](unsigned shard) -> task<void> {
    corio::task_group g;
    for (std::uint64_t id = 0; id < senders; ++id) g.spawn(sender(shard, id));
    co_await g.wait();
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    auto remote = [&]() -> task<void> { co_await corio::submit_to(1, [&] { return group_on(1); }); };
    g.spawn(remote);
    g.spawn(group_on(0));
    co_await g.wait();
  };
  rt.run(main());
  return c;
}

}  // namespace

TEST_CASE("messages flow both ways at once without loss or duplication") {
  constexpr std::uint64_t senders = 50;
  constexpr std::uint64_t per_sender = 10'000;
  const exchange_counts c = exchange_both_ways(two_shards(), senders, per_sender);
  constexpr std::uint64_t total = senders * per_sender;
  for (unsigned s = 0; s < 2; ++s) {
    CHECK(c.executed[s] == total);
    CHECK(c.received[s] == total);
    CHECK(c.sums[s] == total * (total - 1) / 2);
  }
}

TEST_CASE("a full queue spills into the overflow list and loses nothing") {
  corio::runtime rt({.shards = 2, .pin = false, .queue_capacity = 2, .use_msg_ring = true, .loop = {}});
  constexpr std::uint64_t senders = 500;
  std::uint64_t executed = 0;
  std::uint64_t sum = 0;
  auto sender = [&](std::uint64_t id) -> task<void> {
    for (int i = 0; i < 20; ++i) {
      sum += co_await corio::submit_to(1, [&executed, id] {
        ++executed;
        return id;
      });
    }
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (std::uint64_t id = 0; id < senders; ++id) g.spawn(sender(id));
    co_await g.wait();
  };
  rt.run(main());
  CHECK(executed == senders * 20);
  CHECK(sum == 20 * senders * (senders - 1) / 2);
}

TEST_CASE("tiny queues both ways overflow and still deliver every message exactly once") {
  constexpr std::uint64_t senders = 64;
  constexpr std::uint64_t per_sender = 300;
  const exchange_counts c = exchange_both_ways(
      {.shards = 2, .pin = false, .queue_capacity = 1, .use_msg_ring = true, .loop = {}}, senders, per_sender);
  constexpr std::uint64_t total = senders * per_sender;
  for (unsigned s = 0; s < 2; ++s) {
    CHECK(c.executed[s] == total);
    CHECK(c.sums[s] == total * (total - 1) / 2);
  }
}

TEST_CASE("a sender waiting on a full queue sleeps instead of spinning") {
  corio::runtime rt({.shards = 2, .pin = false, .queue_capacity = 2, .use_msg_ring = true, .loop = {}});
  double waiting_cpu = 1;
  int done = 0;
  auto main = [&]() -> task<void> {
    // Shard 1 blocks its thread (on purpose, for the test) so its queue from shard 0
    // fills up and shard 0 keeps 100 messages in its overflow list meanwhile.
    auto blocker = [] { std::this_thread::sleep_for(300ms); };
    auto sender = [&]() -> task<void> {
      done += co_await corio::submit_to(1, [] { return 1; });
    };
    corio::task_group g;
    g.spawn([&]() -> task<void> { co_await corio::submit_to(1, blocker); });
    co_await corio::sleep_for(20ms);  // shard 1 is inside blocker now
    timespec t0{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    for (int i = 0; i < 100; ++i) g.spawn(sender());
    co_await g.wait();
    timespec t1{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    waiting_cpu = static_cast<double>(t1.tv_sec - t0.tv_sec) + static_cast<double>(t1.tv_nsec - t0.tv_nsec) / 1e9;
  };
  rt.run(main());
  CHECK(done == 100);
  // Spinning through ~280 ms of waiting would burn most of it; sleeping costs little.
  CHECK(waiting_cpu < 0.1);
}

TEST_CASE("move-only results come back") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<int> {
    std::unique_ptr<int> p = co_await corio::submit_to(1, [] { return std::make_unique<int>(12); });
    co_return *p;
  };
  CHECK(rt.run(main()) == 12);
}

void sleeps_and_wakes(bool msg_ring) {
  corio::runtime rt(two_shards(msg_ring));
  double idle_cpu = 0;
  auto main = [&]() -> task<int> {
    co_await corio::submit_to(1, [] {});  // shard 1 is up and then idles
    const double before = cpu_seconds();
    co_await corio::sleep_for(300ms);
    idle_cpu = cpu_seconds() - before;
    // Shard 1 slept through those 300 ms; a message must wake it.
    const auto start = std::chrono::steady_clock::now();
    const int v = co_await corio::submit_to(1, [] { return 3; });
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    co_return v;
  };
  CHECK(rt.run(main()) == 3);
  // Two polling threads would burn ~600 ms; sleeping ones use next to nothing.
  CHECK(idle_cpu < 0.1);
  CHECK(rt.uses_msg_ring() == msg_ring);
}

CORIO_TEST_NEEDS("an idle runtime sleeps in the kernel instead of polling, and MSG_RING wakes it for a message",
                 corio::kernel_feature::msg_ring) {
  sleeps_and_wakes(true);
}

TEST_CASE("an idle runtime sleeps in the kernel instead of polling, and its eventfd wakes it for a message") {
  sleeps_and_wakes(false);
}

TEST_CASE("idle_poll: shards that poll instead of sleeping still see every cross-shard message") {
  // A polling shard is not asleep, so a sender never wakes it: its poll must find the
  // messages in the queues itself. With a one-minute poll, a missed message would stall
  // its round trip for a minute and the test would time out. (1,000 round trips, not
  // more: on a machine busy with other tests, two spinning threads may share one core,
  // and then each round trip waits for a scheduler time slice.)
  corio::runtime_options o = two_shards();
  o.loop.idle_poll = 60s;
  corio::runtime rt(o);
  auto main = []() -> task<long long> {
    long long sum = 0;
    for (int i = 0; i < 1'000; ++i) sum += co_await corio::submit_to(1, [i] { return i; });
    co_return sum;
  };
  CHECK(rt.run(main()) == 499'500LL);
}

TEST_CASE("nested submit_to chains 0 -> 1 -> 0 resolve") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<std::string> {
    auto on_one = []() -> task<std::string> {
      const unsigned back = co_await corio::submit_to(0, [] { return corio::this_shard(); });
      co_return "1 asked " + std::to_string(back) + ", now on " + std::to_string(corio::this_shard());
    };
    co_return co_await corio::submit_to(1, on_one);
  };
  CHECK(rt.run(main()) == "1 asked 0, now on 1");
}

TEST_CASE("the end of run lets in-flight cross-shard work finish") {
  corio::runtime rt(two_shards());
  int result = 0;
  auto slow = []() -> task<int> {
    co_await corio::sleep_for(100ms);
    co_return 7;
  };
  auto background = [&]() -> task<void> { result = co_await corio::submit_to(1, slow); };
  auto main = [&]() -> task<void> {
    corio::loop::this_loop().spawn(background());
    co_return;  // main ends while shard 1 still sleeps on our behalf
  };
  rt.run(main());
  CHECK(result == 7);
}

TEST_CASE("stop from another thread cancels main's wait, and in-flight work still finishes") {
  corio::runtime rt(two_shards());
  int result = 0;
  auto slow = []() -> task<int> {
    co_await corio::sleep_for(200ms);
    co_return 9;
  };
  auto background = [&]() -> task<void> { result = co_await corio::submit_to(1, slow); };
  std::atomic<bool> started{false};
  auto main = [&]() -> task<std::string> {
    corio::loop::this_loop().spawn(background());
    started = true;
    try {
      co_await corio::sleep_for(30s);
    } catch (const corio::operation_cancelled&) {
      co_return "cancelled";
    }
    co_return "slept";
  };
  std::thread stopper([&] {
    while (!started) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(20ms);
    rt.stop();
  });
  const auto start = std::chrono::steady_clock::now();
  CHECK(rt.run(main()) == "cancelled");
  stopper.join();
  CHECK(std::chrono::steady_clock::now() - start < 10s);
  CHECK(result == 9);
}

TEST_CASE("tasks spawned on other shards are stopped at the end of run") {
  corio::runtime rt(two_shards());
  std::atomic<bool> cancelled{false};
  auto forever = [&]() -> task<void> {
    try {
      co_await corio::sleep_for(60s);
    } catch (const corio::operation_cancelled&) {
      cancelled = true;
    }
  };
  auto main = [&]() -> task<void> {
    co_await corio::submit_to(1, [&] { corio::loop::this_loop().spawn(forever()); });
  };
  const auto start = std::chrono::steady_clock::now();
  rt.run(main());
  CHECK(cancelled);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
}

TEST_CASE("main's exception is rethrown by run after the shards shut down") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<int> {
    co_await corio::submit_to(1, [] {});
    throw std::out_of_range("main gave up");
  };
  CHECK_THROWS_WITH_AS(rt.run(main()), "main gave up", std::out_of_range);
}

TEST_CASE("a runtime can run twice") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<int> { co_return co_await corio::submit_to(1, [] { return 2; }); };
  CHECK(rt.run(main()) + rt.run(main()) == 4);
}

TEST_CASE("a single shard submits to itself") {
  corio::runtime rt({.shards = 1, .pin = true, .queue_capacity = 1024, .use_msg_ring = true, .loop = {}});
  auto main = []() -> task<void> {
    CHECK(corio::shard_count() == 1);
    std::uint64_t sum = 0;
    for (std::uint64_t i = 0; i < 1000; ++i) sum += co_await corio::submit_to(0, [i] { return i; });
    CHECK(sum == 1000 * 999 / 2);
    CHECK(co_await corio::submit_to(0, [] { return corio::this_shard(); }) == 0u);
  };
  rt.run(main());
}

TEST_CASE("more shards than cores work with pinning off") {
  const unsigned n = std::thread::hardware_concurrency() * 2 + 1;
  corio::runtime rt({.shards = n, .pin = false, .queue_capacity = 1024, .use_msg_ring = true, .loop = {}});
  CHECK(rt.shard_count() == n);
  auto main = [n]() -> task<void> {
    CHECK(corio::shard_count() == n);
    for (unsigned s = 0; s < n; ++s) CHECK(co_await corio::submit_to(s, [] { return corio::this_shard(); }) == s);
  };
  rt.run(main());
  CHECK(rt.pin_failures() == 0);
}

TEST_CASE("the default runtime has one pinned shard per allowed CPU") {
  corio::runtime rt;
  CHECK(rt.shard_count() >= 1);
  auto main = []() -> task<unsigned> {
    const unsigned last = corio::shard_count() - 1;
    co_return co_await corio::submit_to(last, [] { return corio::this_shard(); });
  };
  CHECK(rt.run(main()) == rt.shard_count() - 1);
  if (rt.pin_failures() != 0) MESSAGE("the kernel refused to pin some shards; they ran unpinned");
}

TEST_CASE("submit_to a shard that does not exist throws out_of_range naming it") {
  corio::runtime rt(two_shards());
  auto main = []() -> task<void> {
    CHECK_THROWS_WITH_AS((void)corio::submit_to(2, [] {}),
                         "corio::submit_to: shard 2 does not exist (the runtime has 2 shards)", std::out_of_range);
    co_return;
  };
  rt.run(main());
}

TEST_CASE("submit_to, this_shard and shard_count outside a runtime throw logic_error") {
  CHECK_THROWS_WITH_AS((void)corio::submit_to(0, [] {}),
                       "corio::submit_to: not called on a shard of a running corio::runtime (call it from "
                       "inside runtime::run)",
                       std::logic_error);
  CHECK_THROWS_WITH_AS(corio::this_shard(), "corio::this_shard: not called on a shard of a running corio::runtime",
                       std::logic_error);
  CHECK_THROWS_AS(corio::shard_count(), std::logic_error);
}

TEST_CASE("run inside a loop throws logic_error") {
  corio::loop lp;
  auto main = []() -> task<void> {
    corio::runtime rt(two_shards());
    auto inner = []() -> task<void> { co_return; };
    CHECK_THROWS_WITH_AS(rt.run(inner()), "corio::runtime::run: this thread already runs a loop or a runtime",
                         std::logic_error);
    co_return;
  };
  lp.run(main());
}
