// dist::queue<T> through dist::manager against a redis-server the test starts: queue<T>'s
// vocabulary outside a loop (blocking) and inside one (awaitables), a value put by another
// process waking a blocked get, bounded queues, the 512 MiB limit, the lease that hands a
// never-acknowledged value out again, a vanished consumer group re-created and reported,
// the configuration warnings at connect, and a lying server's take answer.
#include <doctest/doctest.h>

#include <corio/dist/manager.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../needs_feature.hpp"
#include "../ipc/ipc_test_support.hpp"
#include "fake_redis.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;
using corio::dist::manager;
using corio_test::options_for;
using corio_test::redis_server;
using steady = std::chrono::steady_clock;

namespace {

struct job {
  int id;
  double weight;
  std::string url;
  template <class Ar>
  void corio_fields(Ar& ar) {
    ar(id, weight, url);
  }
  friend bool operator==(const job&, const job&) = default;
};

// A manager that records its warnings instead of printing them.
struct quiet_manager {
  explicit quiet_manager(const redis_server& s) : m(options_for(s)) {
    m.on_warning([this](const std::string& w) { warnings.push_back(w); });
  }
  manager m;
  std::vector<std::string> warnings;
};

}  // namespace

REDIS_TEST_CASE("put and get outside a loop keep order; size, empty, try_get and a timeout") {
  redis_server server({.aof = true});
  quiet_manager qm(server);
  auto q = qm.m.queue<std::string>("task_queue");
  CHECK(q.empty());
  for (int i = 0; i < 10; ++i) q.put("ImageUrl_" + std::to_string(i));
  CHECK(q.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(q.get() == "ImageUrl_" + std::to_string(i));
  CHECK(q.empty());
  CHECK_FALSE(q.try_get().has_value());
  const auto start = steady::now();
  CHECK_THROWS_WITH_AS(q.get(true, 300ms), "corio::dist::queue \"task_queue\" get: no value within the timeout",
                       corio::queue_empty);
  CHECK(steady::now() - start >= 300ms);
  CHECK(steady::now() - start < 3s);
  CHECK(qm.warnings.empty());  // AOF on, noeviction: nothing to warn about

  auto jobs = qm.m.queue<job>("jobs");
  const job j{7, 0.5, "http://example.com/7"};
  jobs.put(j);
  CHECK(jobs.get() == j);
  // 16 MiB in one value.
  auto blobs = qm.m.queue<std::string>("blobs");
  const std::string big(16 << 20, 'x');
  blobs.put(big);
  CHECK(blobs.get() == big);
}

REDIS_TEST_CASE("a get blocked in one process is woken by a put from another") {
  redis_server server({.aof = true});
  const pid_t child = corio_test::fork_child([&] {
    std::this_thread::sleep_for(300ms);
    manager m(options_for(server));
    m.queue<int>("numbers").put(42);
    return 0;
  });
  quiet_manager qm(server);
  auto q = qm.m.queue<int>("numbers");
  const auto start = steady::now();
  CHECK(q.get(true, 10s) == 42);
  const auto waited = steady::now() - start;
  CHECK(waited >= 250ms);
  CHECK(waited < 2s);
  CHECK(corio_test::exit_status(child) == 0);
}

REDIS_TEST_CASE("async_put and async_get inside a loop, two managers as two hosts") {
  redis_server server({.aof = true});
  quiet_manager master(server), worker(server);
  auto tasks = master.m.queue<std::string>("task_queue");
  auto results = master.m.queue<std::string>("result_queue");
  auto wtasks = worker.m.queue<std::string>("task_queue");
  auto wresults = worker.m.queue<std::string>("result_queue");
  std::vector<std::string> got;
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    for (int i = 0; i < 100; ++i) co_await tasks.async_put("ImageUrl_" + std::to_string(i));
    for (int i = 0; i < 100; ++i) {
      std::string t = co_await wtasks.async_get(true, 5s);
      co_await wresults.async_put(t + "------>completed!");
    }
    for (int i = 0; i < 100; ++i) got.push_back(co_await results.async_get(true, 5s));
    CHECK(co_await tasks.async_size() == 0);
  }());
  REQUIRE(got.size() == 100);
  CHECK(got[0] == "ImageUrl_0------>completed!");
  CHECK(got[99] == "ImageUrl_99------>completed!");
  // The blocking form on a loop thread is refused with a message that says what to do.
  lp.run([&]() -> corio::task<void> {
    CHECK_THROWS_WITH_AS(tasks.put("x"),
                         "corio::dist::queue::put blocks, and this thread runs a corio loop: co_await its async_ form instead",
                         std::logic_error);
    co_return;
  }());
}

REDIS_TEST_CASE("a bounded queue refuses a put when full; a value above 512 MiB is refused in the caller") {
  redis_server server({.aof = true});
  quiet_manager qm(server);
  auto q = qm.m.queue<int>("bounded", {.maxsize = 2});
  CHECK(q.try_put(1));
  CHECK(q.try_put(2));
  CHECK_FALSE(q.try_put(3));
  CHECK_THROWS_AS(q.put(3, true, 100ms), corio::queue_full);
  CHECK(q.get() == 1);
  CHECK(q.try_put(3));
  CHECK(q.size() == 2);
  q.clear();
  CHECK(q.empty());
  CHECK(q.try_put(4));
  CHECK(q.get() == 4);

  corio::dist::detail::stream_queue raw(nullptr, "huge", 0, 1000ms);
  CHECK_NOTHROW(raw.check_size(corio::dist::detail::max_value_bytes));
  CHECK_THROWS_WITH_AS(raw.check_size(corio::dist::detail::max_value_bytes + 1),
                       "corio::dist::queue \"huge\" put: the value encodes to 536870913 bytes, above Redis' limit of "
                       "536870912 bytes for one value (proto-max-bulk-len)",
                       std::length_error);
}

REDIS_TEST_CASE("a value taken and never acknowledged is handed out again after the lease") {
  redis_server server({.aof = true});
  quiet_manager qm(server);
  auto q = qm.m.queue<std::string>("leased", {.maxsize = 0, .lease = 300ms});
  q.put("orphan");
  CHECK(q.size() == 1);
  // A consumer that dies after taking the entry: it reads it in the group and never acks.
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    const auto r = co_await c.command("XREADGROUP", "GROUP", "corio", "ghost", "COUNT", "1", "STREAMS", "{leased}:queue", ">");
    CHECK(r.elements.size() == 1);
  }());
  CHECK(q.size() == 0);  // in flight, not queued
  const auto start = steady::now();
  CHECK(q.get(true, 5s) == "orphan");
  CHECK(steady::now() - start >= 250ms);
  CHECK(q.size() == 0);
  CHECK_FALSE(q.try_get().has_value());  // acknowledged and deleted: not a third time
}

REDIS_TEST_CASE("a consumer group that vanished is re-created and reported, not spun on") {
  redis_server server({.aof = true});
  quiet_manager qm(server);
  auto q = qm.m.queue<int>("fragile");
  q.put(1);
  CHECK(q.get() == 1);
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    co_await c.command("DEL", "{fragile}:queue");  // what a restart without persistence does
  }());
  q.put(2);
  CHECK(q.get() == 2);
  REQUIRE(qm.warnings.size() == 1);
  CHECK(qm.warnings[0].find("the consumer group of queue \"fragile\"") != std::string::npos);
}

REDIS_TEST_CASE("a Redis that may lose data is reported at connect") {
  redis_server server({.aof = false, .extra = {"maxmemory-policy allkeys-lru"}});
  quiet_manager qm(server);
  qm.m.connect();
  REQUIRE(qm.warnings.size() == 2);
  CHECK(qm.warnings[0] == "corio: redis " + server.address() +
                              " has maxmemory-policy allkeys-lru: under memory pressure it may evict queued values; "
                              "set it to noeviction");
  CHECK(qm.warnings[1].find("has no persistence") != std::string::npos);
}

TEST_CASE("a take script answer of the wrong shape from a lying server is redis::error, not a crash") {
  // SCRIPT LOAD and XGROUP as a server answers them; the take script's EVALSHA with {1}
  // (taken, but no id and no value).
  corio_test::fake_redis liar([](const std::vector<std::string_view>& argv, int) -> std::string {
    if (argv[0] == "SCRIPT") return corio_test::script_sha(argv);
    if (argv[0] == "EVALSHA") return "*1\r\n:1\r\n";
    if (argv[0] == "CONFIG") return "*0\r\n";
    return "+OK\r\n";
  });
  manager m{corio::redis::options(liar.address())};
  m.on_warning([](const std::string&) {});
  auto q = m.queue<std::string>("lied_to");
  CHECK_THROWS_WITH_AS(q.get(), "corio::dist::queue \"lied_to\": the take script answered 1 elements, not {1, id, "
                                "value}, {0, id} or {2}", corio::redis::error);
}

// Each lie once looped or waited without end (a put polling "full", a get re-running the
// take script or XREAD); the timeouts given, and the case's 30 s limit, make a regression
// fail with a message, not hang.
TEST_CASE("a queue's lying scripts and XREAD are unexpected_reply within seconds, not a loop or a wait forever"
          * doctest::timeout(30)) {
  using corio_test::bulk;
  struct lie {
    std::string what;
    std::string take, put, read;  // the take script's, the bounded put script's and XREAD's answers
    std::string message;
    int warnings = 0;  // how many times the group was reported re-created
  };
  const std::string who = "corio::dist::queue \"lied_to\": ";
  const std::string tail = " (a broken or lying server?)";
  const std::string entry_3_0 = "*1\r\n*2\r\n" + bulk("{lied_to}:queue") + "*1\r\n*2\r\n" + bulk("3-0") + "*2\r\n" +
                                bulk("v") + bulk("x");
  const lie lies[] = {
      {"{2} (group re-created) every time", "*1\r\n:2\r\n", "", "*-1\r\n",
       who + "the take script answered {2} (group re-created) twice in a row" + tail, 1},
      {"nothing to take after an id that is none", "*2\r\n:0\r\n" + bulk("nope"), "", "*-1\r\n",
       who + "the take script answered the entry id \"nope\", not ms-seq" + tail},
      {"nothing after 5-0, and XREAD brings 3-0", "*2\r\n:0\r\n" + bulk("5-0"), "", entry_3_0,
       who + "XREAD answered [[\"{lied_to}:queue\", [[\"3-0\", [\"v\", \"x\"]]]]], not nil or [[stream, [[an id "
             "after 5-0, ...]]]]" + tail},
      {"a bounded put answered 7", "", ":7\r\n", "",
       who + "the bounded put script answered 7, not 1 (added) or 0 (full)" + tail},
  };
  for (const lie& l : lies) {
    CAPTURE(l.what);
    corio_test::fake_redis liar = corio_test::manager_fake([&](const std::vector<std::string_view>& argv) {
      if (argv[0] == "EVALSHA") return argv.size() == 6 ? l.put : l.take;  // EVALSHA sha 1 key max value
      if (argv[0] == "XREAD") return l.read;
      return std::string("+OK\r\n");
    });
    manager m{corio::redis::options(liar.address())};
    int warnings = 0;  // of the group re-created (not those of the configuration check)
    m.on_warning([&](const std::string& w) { warnings += w.find("consumer group") != std::string::npos; });
    const auto start = steady::now();
    if (!l.put.empty()) {
      auto q = m.queue<std::string>("lied_to", {.maxsize = 10});
      // Before: 7 read as "full", polled until the timeout (forever without one).
      CHECK_THROWS_WITH_AS(q.put("x", true, 5s), l.message.c_str(), corio::redis::unexpected_reply);
    } else {
      auto q = m.queue<std::string>("lied_to");
      // Before: a loop without end; with the timeout, queue_empty after 5 s.
      CHECK_THROWS_WITH_AS(q.get(true, 5s), l.message.c_str(), corio::redis::unexpected_reply);
    }
    CHECK(steady::now() - start < 4s);
    CHECK(warnings == l.warnings);
  }
}
