// dist::task_pool and dist::worker against a redis-server the test starts, with worker
// processes it forks: results and remote errors across processes; a worker SIGKILLed mid-task
// (redelivered after the lease, delivery count 2, one result); a worker SIGSTOPped past its
// lease and continued after another finished the task (no second result); a poison task
// that kills every worker it reaches (dead-lettered after max_deliveries, the pool flows on);
// a foreign task whose reply stream is not the pool's (dead-lettered unrun); refused
// credentials and a missing ACL permission (a clear auth_error within 2 s); lying fake
// servers (results ids that stand still or go back, wrong script and XREADGROUP shapes, a
// bad MOVED): redis::unexpected_reply or the cluster_error within seconds, never a loop or
// std::terminate; a worker stopped during its pause after an error reply; a result Redis
// refuses to record (a warning: the worker goes on serving); a reply key overwritten by SET
// (a foreign write: its results dropped and counted undeliverable, the batch's other
// streams written, its tasks acknowledged and deleted, a burial dead-lettered all the same,
// the submitter reading it failing its futures with WRONGTYPE).
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/dist/detail/pool_protocol.hpp>
#include <corio/dist/task_pool.hpp>
#include <corio/dist/worker.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "../needs_feature.hpp"
#include "../ipc/ipc_test_support.hpp"
#include "fake_redis.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;
using corio::dist::manager;
using corio::dist::task_pool;
using corio::dist::worker;
using corio::dist::worker_options;
using corio_test::options_for;
using corio_test::redis_server;
using steady = std::chrono::steady_clock;

namespace {

// Worker processes, SIGKILLed and reaped when the test ends however it ends.
class worker_processes {
 public:
  worker_processes(const redis_server& s, worker_options o, int started_fd = -1)
      : server_(s), options_(o), started_fd_(started_fd) {}
  ~worker_processes() {
    corio_test::kill_and_reap_all(pids_);
  }
  pid_t start() {
    const pid_t pid = corio_test::fork_child([this] {
      manager m(options_for(server_));
      worker w(m, "test", options_);
      const int fd = started_fd_;
      w.define("square", [](int x) { return x * x; });
      // On the worker's loop, through a timer: it sees the worker's stop token.
      w.define("square_later", [](int x) -> corio::task<int> {
        co_await corio::sleep_for(1ms);
        co_return x * x;
      });
      w.define("fail", [](std::string what) -> int { throw std::out_of_range("no such image: " + what); });
      w.define("slow", [fd](int ms) {
        if (fd >= 0) {  // tell the test who runs it
          const std::string line = std::to_string(::getpid()) + "\n";
          (void)!::write(fd, line.data(), line.size());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return ms;
      });
      w.define("crash", [](int) -> int {
        ::raise(SIGKILL);
        return 0;
      });
      w.run();
      return 0;
    });
    pids_.push_back(pid);
    return pid;
  }
  // True once `pid` has died (reaped).
  bool dead(pid_t pid) {
    int status = 0;
    return ::waitpid(pid, &status, WNOHANG) == pid && (erase(pid), true);
  }

 private:
  void erase(pid_t pid) { std::erase(pids_, pid); }
  const redis_server& server_;
  worker_options options_;
  int started_fd_;
  std::vector<pid_t> pids_;
};

// The pid a "slow" task's worker wrote when it started (5 s at most).
pid_t runner_of(corio_test::raw_pipe& p) {
  std::string line;
  const auto give_up = steady::now() + 5s;
  char c;
  while (steady::now() < give_up) {
    const ssize_t n = ::read(p.read_end(), &c, 1);
    if (n == 1 && c == '\n') return std::stoi(line);
    if (n == 1) line.push_back(c);
  }
  FAIL("no worker started the task within 5 s");
  return -1;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds within) {
  const auto give_up = steady::now() + within;
  while (!pred()) {
    if (steady::now() > give_up) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// eventually() inside a coroutine: awaits check() (a task<bool>) every 20 ms until it
// answers true; false when `within` passed first. (The answer is named before the test:
// GCC 12 miscompiles a negated co_await as a loop's only condition.)
template <class Check>
corio::task<bool> eventually_on_loop(Check check, std::chrono::milliseconds within) {
  const auto give_up = steady::now() + within;
  for (;;) {
    const bool done = co_await check();
    if (done) co_return true;
    if (steady::now() > give_up) co_return false;
    co_await corio::sleep_for(20ms);
  }
}

}  // namespace

REDIS_TEST_CASE("tasks run on two worker processes; an exception comes back as remote_error") {
  redis_server server({.aof = true});
  worker_processes workers(server, {.concurrency = 4, .lease = 5s});
  workers.start();
  workers.start();
  manager m(options_for(server));
  task_pool pool(m, "test");
  std::vector<corio::dist::remote_future<int>> futures;
  for (int i = 0; i < 200; ++i) futures.push_back(pool.submit<int>("square", i));
  long sum = 0;
  for (auto& f : futures) {
    sum += f.get();
    CHECK(f.deliveries() == 1);
  }
  CHECK(sum == 2646700);  // sum of i^2 for i < 200

  auto bad = pool.submit<int>("fail", std::string("ImageUrl_3"));
  try {
    (void)bad.get();
    FAIL("no error");
  } catch (const corio::remote_error& e) {
    CHECK(e.type_name() == "std::out_of_range");
    CHECK(e.message() == "no such image: ImageUrl_3");
  }
  CHECK_THROWS_WITH_AS((void)pool.submit<int>("nope", 1).get(),
                       "std::invalid_argument: no function named \"nope\" on this worker", corio::remote_error);
  const auto stats = pool.stats();
  CHECK(stats.at("written") == 202);
  CHECK(stats.at("duplicates") == 0);

  // Awaitable forms on a loop of the caller's (a pool per loop: it collects on one).
  task_pool on_loop(m, "test");
  corio::loop lp;
  const int v = lp.run([&]() -> corio::task<int> {
    auto f = co_await on_loop.async_submit<int>("square", 12);
    const int got = co_await f.async_get();
    co_await on_loop.async_close();
    co_return got;
  }());
  CHECK(v == 144);
}

// One worker, lease 500 ms, running a "slow" task of `ms`: the scene of the takeover tests.
struct slow_task_scene {
  explicit slow_task_scene(int ms)
      : workers(server, {.concurrency = 2, .lease = 500ms}, started.write_end()),
        first(workers.start()),
        m(options_for(server)),
        pool(m, "test"),
        f(pool.submit<int>("slow", ms)) {
    REQUIRE(runner_of(started) == first);
  }
  // After `first` is gone or stalled: a second worker finishes the task, delivery 2.
  void second_worker_finishes(int ms) {
    const pid_t second = workers.start();
    const auto start = steady::now();
    REQUIRE(f.wait_for(10s));
    CHECK(steady::now() - start < 5s);
    CHECK(runner_of(started) == second);
    CHECK(f.get() == ms);
    CHECK(f.deliveries() == 2);
  }
  redis_server server{{.aof = true}};
  corio_test::raw_pipe started;
  worker_processes workers;
  pid_t first;
  manager m;
  task_pool pool;
  corio::dist::remote_future<int> f;
};

REDIS_TEST_CASE("a worker SIGKILLed mid-task: the task is redelivered after the lease and has one result") {
  slow_task_scene scene(1500);
  ::kill(scene.first, SIGKILL);
  REQUIRE(eventually([&] { return scene.workers.dead(scene.first); }, 5000ms));
  scene.second_worker_finishes(1500);
  const auto stats = scene.pool.stats();
  CHECK(stats.at("written") == 1);
  CHECK(stats.at("duplicates") == 0);
}

REDIS_TEST_CASE("a worker stopped past its lease and continued after another finished adds no second result") {
  slow_task_scene scene(1000);
  ::kill(scene.first, SIGSTOP);
  scene.second_worker_finishes(1000);
  ::kill(scene.first, SIGCONT);
  // The stalled worker finishes its run; its result is dropped as a duplicate.
  CHECK(eventually([&] { return scene.pool.stats().at("duplicates") == 1; }, 10000ms));
  CHECK(scene.pool.stats().at("written") == 1);
}

REDIS_TEST_CASE("a poison task that kills its workers goes to the dead letters; the pool flows on") {
  redis_server server({.aof = true});
  worker_processes workers(server, {.concurrency = 1, .lease = 300ms, .max_deliveries = 2});
  pid_t current = workers.start();
  manager m(options_for(server));
  task_pool pool(m, "test");
  auto poison = pool.submit<int>("crash", 0);
  int killed = 0;
  const auto give_up = steady::now() + 20s;
  while (!poison.wait_for(50ms)) {
    REQUIRE(steady::now() < give_up);
    if (workers.dead(current)) {  // a supervisor's job: replace the dead worker
      ++killed;
      current = workers.start();
    }
  }
  CHECK(killed == 2);
  CHECK_THROWS_WITH_AS((void)poison.get(),
                       "corio::dist::task_pool: the task was delivered 3 times and its worker died each time (moved "
                       "to {test}:dead)",
                       corio::dist::dead_letter);
  CHECK(pool.submit<int>("square", 3).get() == 9);
  CHECK(pool.stats().at("dead") == 1);
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    CHECK((co_await c.command("XLEN", "{test}:dead")).integer == 1);
  }());
}

REDIS_TEST_CASE("a task whose reply stream is not its pool's goes to the dead letters unrun, without writing there") {
  redis_server server;
  worker_processes workers(server, {.concurrency = 1, .lease = 1s});
  workers.start();
  manager m(options_for(server));
  task_pool pool(m, "test");
  CHECK(pool.submit<int>("square", 4).get() == 16);  // the workers are serving
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    // Not from a corio submitter: in a cluster its result could not be written in the
    // pool's slot, so it is buried at once.
    co_await c.command("XADD", "{test}:tasks", "*", "tid", "foreign-1", "fn", "square", "args", "x", "reply",
                       "elsewhere:results");
    const bool buried = co_await eventually_on_loop(
        [&]() -> corio::task<bool> { co_return (co_await c.command("XLEN", "{test}:dead")).integer != 0; }, 10s);
    REQUIRE_MESSAGE(buried, "the foreign task was not dead-lettered within 10 s");
    const corio::resp::reply dead = co_await c.command("XRANGE", "{test}:dead", "-", "+");
    REQUIRE(dead.elements.size() == 1);
    const auto& f = dead.elements[0].elements[1].elements;
    REQUIRE(f.size() == 12);
    CHECK(f[1].str == "foreign-1");
    CHECK(f[11].str == "its reply stream is not one of the pool's keys");
    CHECK((co_await c.command("EXISTS", "elsewhere:results")).integer == 0);
    CHECK((co_await c.command("XLEN", "{test}:tasks")).integer == 0);
  }());
  CHECK(pool.stats().at("dead") == 1);
  CHECK(pool.submit<int>("square", 5).get() == 25);  // the pool flows on
}

REDIS_TEST_CASE("redis-server SIGKILLed and restarted mid-run (AOF always): every task has exactly one result") {
  redis_server server({.aof = true});
  worker_processes workers(server, {.concurrency = 4, .lease = 1000ms});
  workers.start();
  workers.start();
  manager m(options_for(server));
  task_pool pool(m, "test");
  std::vector<corio::dist::remote_future<int>> futures;
  for (int i = 0; i < 120; ++i) futures.push_back(pool.submit<int>("slow", 20));  // 0.3 s of work per worker slot
  REQUIRE(futures[10].wait_for(10s));
  const auto ready = std::count_if(futures.begin(), futures.end(), [](const auto& f) { return f.ready(); });
  CHECK(ready < 120);  // killed mid-run
  server.restart(SIGKILL);
  const auto start = steady::now();
  long sum = 0;
  for (auto& f : futures) {
    REQUIRE(f.wait_for(30s));
    sum += f.get();
  }
  MESSAGE("all results " << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start).count()
                         << " ms after the restart");
  CHECK(sum == 120 * 20);
  const auto stats = pool.stats();
  CHECK(stats.at("written") == 120);
}

REDIS_TEST_CASE("the task stream deleted under idle workers (a restart without persistence) is re-created; tasks flow on") {
  redis_server server({.aof = true});
  worker_processes workers(server, {.concurrency = 2, .lease = 500ms});
  workers.start();
  manager m(options_for(server));
  task_pool pool(m, "test");
  CHECK(pool.submit<int>("square", 5).get() == 25);
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    co_await c.command("DEL", "{test}:tasks");  // the group goes with it
  }());
  std::this_thread::sleep_for(600ms);  // the worker's blocking read meets NOGROUP meanwhile
  auto f = pool.submit<int>("square", 6);
  REQUIRE(f.wait_for(10s));
  CHECK(f.get() == 36);
}

REDIS_TEST_CASE("wrong password, unknown user, a missing ACL permission: a clear auth_error within 2 s") {
  redis_server server({.aof = true});
  {
    manager admin(options_for(server));
    corio::loop lp;
    lp.run([&]() -> corio::task<void> {
      auto c = co_await corio::redis::client::connect(options_for(server));
      // Everything but scripts: a worker cannot take tasks.
      co_await c.command("ACL", "SETUSER", "noscript", "on", ">noscript-pw", "~*", "&*", "+@all", "-@scripting");
    }());
  }
  struct attempt {
    corio::redis::options o;
    std::string code;
  };
  const std::vector<attempt> attempts = {
      {corio::redis::options(server.address()).password("wrong-password-77"), "WRONGPASS"},
      {corio::redis::options(server.address()).user("ghost").password("wrong-password-77"), "WRONGPASS"},
      {corio::redis::options(server.address()).user("noscript").password("noscript-pw"), "NOPERM"},
  };
  for (const auto& a : attempts) {
    manager m(a.o);
    worker w(m, "test");
    w.define("square", [](int x) { return x * x; });
    const auto start = steady::now();
    try {
      w.run();
      FAIL("the worker ran");
    } catch (const corio::redis::auth_error& e) {
      CHECK(e.code() == a.code);
      CHECK(std::string(e.what()).find("wrong-password-77") == std::string::npos);
      MESSAGE(std::string(e.what()));
    }
    CHECK(steady::now() - start < 2s);
  }
  manager m(corio::redis::options(server.address()).password("wrong-password-77"));
  task_pool pool(m, "test");
  CHECK_THROWS_AS((void)pool.submit<int>("square", 1), corio::redis::auth_error);
}

REDIS_TEST_CASE("a thousand submits started in one loop turn share one connection (and the collector has one)") {
  redis_server server;
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto admin = co_await corio::redis::client::connect(options_for(server));
    auto connections = [&]() -> corio::task<long> {
      const std::string info = (co_await admin.command("INFO", "stats")).str;
      const auto at = info.find("total_connections_received:");
      co_return std::stol(info.substr(at + 27));
    };
    const long before = co_await connections();
    manager m(options_for(server));
    m.on_warning([](const std::string&) {});
    task_pool pool(m, "test");
    corio::task_group g;
    for (int i = 0; i < 1000; ++i) g.spawn([&pool, i]() -> corio::task<void> { (void)co_await pool.async_submit<int>("square", i); });
    co_await g.wait();
    CHECK((co_await admin.command("XLEN", "{test}:tasks")).integer == 1000);
    CHECK(co_await connections() - before == 2);
    co_await pool.async_close();
  }());
}

TEST_CASE("a result value reads back as written; a deliveries count that is no int64 makes it an error result") {
  using corio::dist::detail::pool_parse_result;
  const std::string value = corio::dist::detail::pool_result_value("ok", 3, "a b");
  CHECK(value == "ok 3 a b");
  const auto p = pool_parse_result(value);  // views into value
  CHECK(p.status == "ok");
  CHECK(p.deliveries == 3);
  CHECK(p.payload == "a b");
  // From a lying server: 23 digits (an int64 overflow), not a number, no count at all.
  for (const std::string_view v : {"ok 99999999999999999999999 x", "ok 1x x", "ok x"}) {
    const auto q = pool_parse_result(v);
    CHECK(q.status == "error");
    CHECK(q.deliveries == 0);
    CHECK(q.payload.empty());
  }
}

TEST_CASE("a renew count above the leases asked for (a lying server) is redis::error, not a wrapped count") {
  corio_test::fake_redis liar([](const std::vector<std::string_view>& argv, int) -> std::string {
    if (argv[0] == "SCRIPT") return corio_test::script_sha(argv);
    return ":5\r\n";  // the renew script's EVALSHA: 5 of 2 renewed
  });
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    corio::redis::client c = co_await corio::redis::client::connect(corio::redis::options(liar.address()));
    const corio::dist::detail::pool_keys k("p");
    const std::vector<std::string> entries = {"1-1", "1-2"};
    try {
      co_await corio::dist::detail::pool_renew(c, k, "me", entries);
      FAIL("no error");
    } catch (const corio::redis::error& e) {
      CHECK(std::string(e.what()) == "corio::dist: the renew script answered 5 for 2 leases");
    }
  }());
}

TEST_CASE("a complete script answering other than 1, 0 or [2, type] per result, or a bury script other than 0 or "
          "1, is unexpected_reply, not a result taken for a duplicate") {
  using corio_test::bulk;
  // The complete script's answers for one result: a 2 without the type, a type that is no
  // string, one an XADD would write, and a megabyte that would go into a warning.
  const std::string lies[] = {"*1\r\n:2\r\n", "*1\r\n*2\r\n:2\r\n:7\r\n", "*1\r\n*2\r\n:2\r\n" + bulk("stream"),
                              "*1\r\n*2\r\n:2\r\n" + bulk(std::string(1 << 20, 'x'))};
  const std::string told[] = {"2", "[2, 7]", "[2, \"stream\"]", "[2, \"" + std::string(32, 'x') + "\"...]"};
  std::atomic<std::size_t> lie{0};
  corio_test::fake_redis liar([&](const std::vector<std::string_view>& argv, int) -> std::string {
    if (argv[0] == "SCRIPT") return corio_test::script_sha(argv);
    return argv.at(4) == "{p}:dead" ? "$1\r\n1\r\n" : lies[lie];  // EVALSHA sha n tasks dead|stats ...
  });
  namespace pd = corio::dist::detail;
  const pd::pool_keys k("p");
  pd::pool_task t;  // built out here: GCC 12 mishandles braced aggregates inside a coroutine
  t.entry = "1-1";
  t.reply = k.results("me");
  std::vector<pd::pool_result> results(1);
  results[0].task = t;
  results[0].status = "ok";
  const std::string tail = " (a broken or lying server?)";
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(corio::redis::options(liar.address()));
    for (std::size_t i = 0; i < std::size(lies); lie = ++i) {
      CAPTURE(told[i]);
      try {
        co_await pd::pool_complete(c, k, results);
        FAIL("no error");
      } catch (const corio::redis::unexpected_reply& e) {
        CHECK(std::string(e.what()) == "corio::dist::task_pool \"p\": the complete script answered " + told[i] +
                                           " for a result, not 1 (written), 0 (a duplicate) or [2, the reply key's "
                                           "type] (undeliverable)" + tail);
      }
    }
    try {
      co_await pd::pool_bury(c, k, t, "why");
      FAIL("no error");
    } catch (const corio::redis::unexpected_reply& e) {
      CHECK(std::string(e.what()) == "corio::dist::task_pool \"p\": the bury script answered \"1\", not 1 (buried) "
                                     "or 0 (finished meanwhile)" + tail);
    }
  }());
}

REDIS_TEST_CASE("a fetch after a restart that lost the group and the scripts (NOSCRIPT) reports the group re-created") {
  redis_server server({.aof = true});
  namespace pd = corio::dist::detail;
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    const pd::pool_keys k("lost");
    co_await pd::pool_ensure_group(c, k);
    CHECK((co_await pd::pool_fetch(c, k, "A", 20s, 3, 1)).what == pd::fetched::kind::none);  // the claim's SHA1 cached
    co_await c.command("DEL", k.tasks);  // the group goes with it
    co_await c.command("SCRIPT", "FLUSH");
    // EVALSHA meets NOSCRIPT, XREADGROUP NOGROUP, then the EVAL re-creates the group: {2}.
    CHECK((co_await pd::pool_fetch(c, k, "A", 20s, 3, 1)).what == pd::fetched::kind::group_recreated);
    CHECK((co_await pd::pool_fetch(c, k, "A", 20s, 3, 1)).what == pd::fetched::kind::none);
  }());
}

namespace {

// An XREAD answer of one entry of the results stream `stream`: id, one field pair.
std::string results_entry(std::string_view stream, std::string_view id) {
  using corio_test::bulk;
  return "*1\r\n*2\r\n" + bulk(stream) + "*1\r\n*2\r\n" + bulk(id) + "*2\r\n" + bulk("not-a-tid") + bulk("ok 1 x");
}

// A Redis that answers a submitter as Redis does, except the collector's XREAD:
// read(stream, id asked after).
corio_test::fake_redis results_liar(std::function<std::string(std::string_view, std::string_view)> read) {
  return corio_test::manager_fake([read = std::move(read)](const std::vector<std::string_view>& argv) {
    if (argv[0] == "XADD") return corio_test::bulk("1-1");
    if (argv[0] == "XREAD") return read(argv.at(6), argv.at(7));  // XREAD COUNT n BLOCK ms STREAMS key id
    return std::string(argv[0] == "XTRIM" ? ":0\r\n" : "+OK\r\n");
  });
}

// w.run(), stopped after `d` if it has not ended by then: a worker that should have
// failed fails the test in seconds (it returns normally) instead of hanging.
void run_at_most(worker& w, std::chrono::milliseconds d) {
  std::stop_source stop;
  std::atomic<bool> ended{false};
  std::thread watchdog([&] {
    for (const auto give_up = steady::now() + d; !ended && steady::now() < give_up;)
      std::this_thread::sleep_for(10ms);
    stop.request_stop();
  });
  struct join {
    std::atomic<bool>& ended;
    std::thread& t;
    ~join() {
      ended = true;
      t.join();
    }
  } joined{ended, watchdog};
  w.run(stop.get_token());
}

}  // namespace

TEST_CASE("a results stream whose entry ids stand still, go back or are no ids fails the futures with "
          "unexpected_reply, not a loop" * doctest::timeout(30)) {
  struct lie {
    std::string what;
    std::function<std::string(std::string_view, std::string_view)> read;
    std::string message;
  };
  const std::string who = "corio::dist::task_pool \"lied\": XREAD answered ";
  const std::string tail = " (a broken or lying server?)";
  const lie lies[] = {
      {"the id asked after, again", [](auto stream, auto after) { return results_entry(stream, after); },
       who + "the entry id 0-0, not after 0-0 (the last one read)" + tail},
      {"5-0, then 4-0",
       [](auto stream, auto after) { return results_entry(stream, after == "0-0" ? "5-0" : "4-0"); },
       who + "the entry id 4-0, not after 5-0 (the last one read)" + tail},
      {"no ms-seq", [](auto stream, auto) { return results_entry(stream, "x-1"); },
       who + "the entry id \"x-1\", not ms-seq" + tail},
      {"a sequence past 2^64", [](auto stream, auto) { return results_entry(stream, "1-18446744073709551616"); },
       who + "the entry id \"1-18446744073709551616\", not ms-seq" + tail},
      {"an integer", [](auto, auto) { return std::string(":1\r\n"); },
       who + "1, not [[its results stream, [entries]]]" + tail},
      {"another stream", [](auto, auto after) { return results_entry("{lied}:tasks", after); },
       who + "[[\"{lied}:tasks\", [[\"0-0\", [\"not-a-tid\", \"ok 1 x\"]]]]], not [[its results stream, [entries]]]" +
           tail},
  };
  for (const lie& l : lies) {
    CAPTURE(l.what);
    corio_test::fake_redis liar = results_liar(l.read);
    manager m{corio::redis::options(liar.address())};
    m.on_warning([](const std::string&) {});
    task_pool pool(m, "lied");
    const auto start = steady::now();
    corio::dist::remote_future<int> f = pool.submit<int>("square", 7);
    REQUIRE_MESSAGE(f.wait_for(5s), "the future was not failed within 5 s: the collector loops");
    CHECK_THROWS_WITH_AS(f.get(), l.message.c_str(), corio::redis::unexpected_reply);
    CHECK(steady::now() - start < 5s);
  }
}

TEST_CASE("a worker whose claim script or XREADGROUP answers a wrong shape, or a lying MOVED, ends with that "
          "error, not a crash or a spin" * doctest::timeout(30)) {
  using corio_test::bulk;
  struct lie {
    std::string evalsha, message;
    std::string xreadgroup = "*-1\r\n";  // nil: nothing new
  };
  const std::string tail = " (a broken or lying server?)";
  const auto read = [](std::string_view id, std::string fields) {
    return "*1\r\n*2\r\n" + bulk("{lied}:tasks") + "*1\r\n*2\r\n" + bulk(id) + fields;
  };
  const lie lies[] = {
      {"*1\r\n:7\r\n", "corio::dist::task_pool \"lied\": the claim script answered [7], not {0}, {2} or {1 or 3, "
                       "deliveries, {entry}}" + tail},
      {"*3\r\n:1\r\n:0\r\n*0\r\n", "corio::dist::task_pool \"lied\": the claim script answered [1, 0, []], not {0}, "
                                   "{2} or {1 or 3, deliveries, {entry}}" + tail},
      {"+OK\r\n", "corio::dist::task_pool \"lied\": the claim script answered +\"OK\", not {0}, {2} or {1 or 3, "
                  "deliveries, {entry}}" + tail},
      // Escaped the worker's catch clauses before, past its live task groups: std::terminate.
      {"-MOVED 99999 127.0.0.1:1\r\n", "redis cluster: cannot follow a redirection (bad slot) \"MOVED 99999 "
                                      "127.0.0.1:1\""},
      // New tasks whose entry id is none, or whose fields do not pair up.
      {"*1\r\n:0\r\n", "corio::dist::task_pool \"lied\": XREADGROUP answered the entry [\"x\", [\"tid\", \"1\"]], "
                       "not [ms-seq id, [field, value, ...]]" + tail,
       read("x", "*2\r\n" + bulk("tid") + bulk("1"))},
      {"*1\r\n:0\r\n", "corio::dist::task_pool \"lied\": XREADGROUP answered the entry [\"1-1\", [\"tid\"]], not "
                       "[ms-seq id, [field, value, ...]]" + tail,
       read("1-1", "*1\r\n" + bulk("tid"))},
      {"*1\r\n:0\r\n", "corio::dist::task_pool \"lied\": XREADGROUP answered 5, not nil or [[{lied}:tasks, "
                       "[entries]]]" + tail, ":5\r\n"},
  };
  for (const lie& l : lies) {
    CAPTURE(l.evalsha);
    corio_test::fake_redis liar = corio_test::manager_fake([&](const std::vector<std::string_view>& argv) {
      if (argv[0] == "EVALSHA") return l.evalsha;
      return argv[0] == "XREADGROUP" ? l.xreadgroup : std::string("+OK\r\n");
    });
    manager m{corio::redis::options(liar.address())};
    m.on_warning([](const std::string&) {});
    worker w(m, "lied");
    const auto start = steady::now();
    CHECK_THROWS_WITH_AS(run_at_most(w, 5s), l.message.c_str(), corio::redis::error);
    CHECK(steady::now() - start < 5s);
  }
}

TEST_CASE("a worker stopped while it pauses after an error reply returns from run, not std::terminate"
          * doctest::timeout(30)) {
  // Every claim answers -ERR: the worker warns and pauses 200 ms each time; stops at
  // several points of that cycle.
  corio_test::fake_redis failing = corio_test::manager_fake([](const std::vector<std::string_view>& argv) {
    return std::string(argv[0] == "EVALSHA" ? "-ERR not today\r\n" : "+OK\r\n");
  });
  for (const auto after : {30ms, 110ms, 250ms, 420ms}) {
    CAPTURE(after.count());
    manager m{corio::redis::options(failing.address())};
    std::atomic<int> warnings{0};
    m.on_warning([&](const std::string&) { ++warnings; });
    worker w(m, "paused");
    std::stop_source stop;
    std::thread stopper([&] {
      std::this_thread::sleep_for(after);
      stop.request_stop();
    });
    const auto start = steady::now();
    CHECK_NOTHROW(w.run(stop.get_token()));
    stopper.join();
    CHECK(steady::now() - start < 5s);
    if (after > 250ms) CHECK(warnings >= 1);
  }
}

REDIS_TEST_CASE("a result Redis refuses to record is a warning; the worker goes on serving the next tasks") {
  redis_server server;
  // A lease far beyond the test: a later task can only be served by the worker going on,
  // not by a takeover.
  worker_processes workers(server, {.concurrency = 1, .lease = 60s});
  workers.start();
  manager m(options_for(server));
  task_pool pool(m, "test");
  CHECK(pool.submit<int>("square", 4).get() == 16);  // the worker is serving
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    // The stats hash overwritten with a string: the completion script's HINCRBY there,
    // its last write, fails with WRONGTYPE, and the worker's completion throws. (A reply
    // key that holds no stream is no refusal: the next test.)
    co_await c.command("SET", "{test}:stats", "x");
    const corio::resp::reply id = co_await c.command("XADD", "{test}:tasks", "*", "tid", "refused-1", "fn", "square",
                                                     "args", "x", "reply", "{test}:results:elsewhere");
    // Delivered and acknowledged (the script's XACK stands): the worker has met the refusal.
    auto met_refusal = [&]() -> corio::task<bool> {
      const corio::resp::reply groups = co_await c.command("XINFO", "GROUPS", "{test}:tasks");
      REQUIRE(groups.elements.size() == 1);
      std::string last;
      std::int64_t pending = -1;
      const auto& g = groups.elements[0].elements;
      for (std::size_t i = 0; i + 1 < g.size(); i += 2) {
        if (g[i].str == "last-delivered-id") last = g[i + 1].str;
        if (g[i].str == "pending") pending = g[i + 1].integer;
      }
      co_return last == id.str && pending == 0;
    };
    const bool met = co_await eventually_on_loop(met_refusal, 10s);
    REQUIRE_MESSAGE(met, "the refused task was not delivered and acknowledged within 10 s");
  }());
  // Before the fix the worker's task group stayed stopped after the refusal: a later
  // task's timer threw operation_cancelled, which came back as a remote_error.
  for (int i = 0; i < 3; ++i) {
    auto f = pool.submit<int>("square_later", 5 + i);
    REQUIRE_MESSAGE(f.wait_for(10s), "task " << i << " after the refusal was not served within 10 s");
    CHECK(f.get() == (5 + i) * (5 + i));
  }
}

namespace {

namespace pd = corio::dist::detail;

// One task of pool k per reply key (tids t0, t1, ...), fetched by consumer "A": pending in
// its name, as a worker holds them.
corio::task<std::vector<pd::pool_task>> held_tasks(corio::redis::client& c, const pd::pool_keys& k,
                                                   std::vector<std::string> replies) {
  co_await pd::pool_ensure_group(c, k);
  for (std::size_t i = 0; i < replies.size(); ++i)
    co_await c.command("XADD", k.tasks, "*", "tid", "t" + std::to_string(i), "fn", "square", "args", "a", "reply",
                       replies[i]);
  pd::fetched f = co_await pd::pool_fetch(c, k, "A", 20s, 3, static_cast<unsigned>(replies.size()));
  REQUIRE(f.tasks.size() == replies.size());
  co_return std::move(f.tasks);
}

// Every task of pool k acknowledged and deleted: none pending, the stream empty.
corio::task<void> check_all_finished(corio::redis::client& c, const pd::pool_keys& k) {
  CHECK((co_await c.command("XLEN", k.tasks)).integer == 0);
  CHECK((co_await c.command("XPENDING", k.tasks, pd::pool_group)).elements.at(0).integer == 0);
}

using counters = std::map<std::string, std::int64_t>;

counters pool_stats(const redis_server& server) {
  manager m(options_for(server));
  m.on_warning([](const std::string&) {});
  task_pool pool(m, "test");
  return pool.stats();
}

}  // namespace

REDIS_TEST_CASE("results for two reply streams, one overwritten by SET: the other is written, both tasks acknowledged "
                "and deleted, the lost result counted undeliverable") {
  redis_server server;
  const pd::pool_keys k("test");
  const std::string good = k.results("good"), bad = k.results("bad");
  const std::vector<std::string> replies = {good, bad};  // out here: GCC 12 and braces inside a coroutine
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    const std::vector<pd::pool_task> held = co_await held_tasks(c, k, replies);
    co_await c.command("SET", bad, "not a stream");  // a foreign write
    // Given good first; the script takes them by reply key, "bad" first: the outcomes
    // come back in the order given all the same.
    std::vector<pd::pool_result> done(2);
    for (std::size_t i = 0; i < 2; ++i) {
      done[i].task = held[i];
      done[i].status = "ok";
      done[i].payload = "v" + std::to_string(i);
    }
    const std::vector<pd::pool_outcome> outcomes = co_await pd::pool_complete(c, k, done);
    REQUIRE(outcomes.size() == 2);
    CHECK(outcomes[0].what == pd::pool_outcome::kind::written);
    CHECK(outcomes[0].held.empty());
    CHECK(outcomes[1].what == pd::pool_outcome::kind::undeliverable);
    CHECK(outcomes[1].held == "string");
    const corio::resp::reply written = co_await c.command("XRANGE", good, "-", "+");
    REQUIRE(written.elements.size() == 1);
    const auto& fields = written.elements[0].elements.at(1).elements;
    REQUIRE(fields.size() == 2);
    CHECK(fields[0].str == "t0");
    CHECK(fields[1].str == "ok 1 v0");
    CHECK((co_await c.command("GET", bad)).str == "not a stream");
    co_await check_all_finished(c, k);
    // Sent again (a worker that stalled past its lease): the XACK decides, both duplicates.
    const std::vector<pd::pool_outcome> again = co_await pd::pool_complete(c, k, done);
    REQUIRE(again.size() == 2);
    CHECK(again[0].what == pd::pool_outcome::kind::duplicate);
    CHECK(again[1].what == pd::pool_outcome::kind::duplicate);
    CHECK((co_await c.command("XLEN", good)).integer == 1);
  }());
  CHECK(pool_stats(server) == counters{{"written", 1}, {"duplicates", 2}, {"undeliverable", 1}, {"dead", 0}});
}

REDIS_TEST_CASE("a task buried while its reply key holds a string is dead-lettered all the same; the string stays") {
  redis_server server;
  const pd::pool_keys k("test");
  const std::string bad = k.results("bad");
  const std::vector<std::string> replies = {bad};
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    const std::vector<pd::pool_task> held = co_await held_tasks(c, k, replies);
    co_await c.command("SET", bad, "not a stream");  // a foreign write
    CHECK(co_await pd::pool_bury(c, k, held[0], "why"));
    const corio::resp::reply dead = co_await c.command("XRANGE", k.dead, "-", "+");
    REQUIRE(dead.elements.size() == 1);
    const auto& f = dead.elements[0].elements.at(1).elements;
    REQUIRE(f.size() == 12);
    CHECK(f[1].str == "t0");
    CHECK(f[7].str == bad);
    CHECK(f[11].str == "why");
    CHECK((co_await c.command("GET", bad)).str == "not a stream");
    co_await check_all_finished(c, k);
  }());
  CHECK(pool_stats(server) == counters{{"written", 0}, {"duplicates", 0}, {"undeliverable", 0}, {"dead", 1}});
}

REDIS_TEST_CASE("a burial while the dead-letter stream holds a string writes nothing and fails with WRONGTYPE "
                "naming it; the task stays pending") {
  redis_server server;
  const pd::pool_keys k("test");
  const std::vector<std::string> replies = {k.results("s1")};
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    const std::vector<pd::pool_task> held = co_await held_tasks(c, k, replies);
    co_await c.command("SET", k.dead, "not a stream");  // a foreign write
    try {
      co_await pd::pool_bury(c, k, held[0], "why");
      FAIL("no error");
    } catch (const corio::redis::server_error& e) {
      CHECK(e.code() == "WRONGTYPE");
      INFO(e.what());  // EVALSHA, or EVAL where this process had loaded the script on another server
      CHECK(std::string(e.what()).ends_with(": WRONGTYPE the dead-letter stream {test}:dead holds a string, "
                                            "not a stream (a foreign write?): task " + held[0].entry + " left pending"));
    }
    CHECK((co_await c.command("XLEN", k.tasks)).integer == 1);
    CHECK((co_await c.command("XPENDING", k.tasks, pd::pool_group)).elements.at(0).integer == 1);
    CHECK((co_await c.command("EXISTS", k.results("s1"), k.stats)).integer == 0);
    CHECK((co_await c.command("GET", k.dead)).str == "not a stream");
  }());
}

REDIS_TEST_CASE("a worker whose task's reply key is overwritten while the task runs counts the result undeliverable, "
                "warns once and does not run the task again") {
  redis_server server;
  const std::string reply = "{test}:results:overwritten";
  std::atomic<int> runs{0};
  std::atomic<bool> overwritten{false};
  // The serving thread's, read after it ended.
  corio::dist::worker_stats stats;
  std::vector<std::string> warnings;
  std::string failure;
  std::stop_source stop;
  std::thread serving([&] {
    try {
      manager m(options_for(server));
      m.on_warning([&](const std::string& w) { warnings.push_back(w); });
      worker w(m, "test", {.concurrency = 1, .lease = 300ms});
      w.define("gated", [&](int x) {
        ++runs;
        for (const auto give_up = steady::now() + 10s; !overwritten && steady::now() < give_up;)
          std::this_thread::sleep_for(5ms);
        return x * x;
      });
      w.run(stop.get_token());
      stats = w.stats();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  struct stopper {
    std::stop_source& stop;
    std::thread& t;
    void now() {
      stop.request_stop();
      if (t.joinable()) t.join();
    }
    ~stopper() { now(); }
  } worker_ends{stop, serving};
  std::string entry;
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    co_await c.command("XADD", reply, "*", "earlier", "result");  // the submitter's stream, as it was
    const std::string args = pd::as_string(corio::encode(std::tuple<int>(7)));
    entry = (co_await c.command("XADD", "{test}:tasks", "*", "tid", "t0", "fn", "gated", "args", args, "reply", reply)).str;
    const bool started = co_await eventually_on_loop([&]() -> corio::task<bool> { co_return runs == 1; }, 10s);
    REQUIRE_MESSAGE(started, "the worker did not start the task within 10 s");
    co_await c.command("SET", reply, "not a stream");  // a foreign write while it runs
    overwritten = true;
    const bool finished = co_await eventually_on_loop(
        [&]() -> corio::task<bool> { co_return (co_await c.command("XLEN", "{test}:tasks")).integer == 0; }, 10s);
    REQUIRE_MESSAGE(finished, "the task was not acknowledged and deleted within 10 s");
    co_await corio::sleep_for(1s);  // three leases: a task left pending would run again
    co_await check_all_finished(c, pd::pool_keys("test"));
    CHECK((co_await c.command("GET", reply)).str == "not a stream");
  }());
  worker_ends.now();
  CHECK(failure.empty());
  CHECK(runs == 1);
  CHECK(stats.tasks == 1);
  CHECK(stats.results == 0);
  CHECK(stats.duplicates == 0);
  CHECK(stats.undeliverable == 1);
  const std::string warning = "corio: worker of {test}:tasks: the result of task " + entry +
                              " was dropped: its reply key \"{test}:results:overwritten\" holds a string, not a "
                              "stream (a foreign write?)";
  CHECK(std::count(warnings.begin(), warnings.end(), warning) == 1);
  CHECK(pool_stats(server) == counters{{"written", 0}, {"duplicates", 0}, {"undeliverable", 1}, {"dead", 0}});
}

REDIS_TEST_CASE("a submitter whose results stream is overwritten by SET fails its waiting futures with WRONGTYPE within "
                "seconds, not a silent wait") {
  redis_server server;
  manager m(options_for(server));
  m.on_warning([](const std::string&) {});
  task_pool pool(m, "test");
  corio::dist::remote_future<int> f = pool.submit<int>("square", 3);  // no worker: it waits
  std::string results;
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    auto c = co_await corio::redis::client::connect(options_for(server));
    const corio::resp::reply task = co_await c.command("XRANGE", "{test}:tasks", "-", "+");
    REQUIRE(task.elements.size() == 1);
    const auto& fields = task.elements[0].elements.at(1).elements;
    REQUIRE(fields.size() == 8);
    results = fields[7].str;  // the reply field: this submitter's results stream
    co_await c.command("SET", results, "not a stream");
  }());
  REQUIRE(results.starts_with("{test}:results:"));
  const auto start = steady::now();
  REQUIRE_MESSAGE(f.wait_for(5s), "the future still waits 5 s after its results stream was overwritten");
  CHECK(steady::now() - start < 5s);
  try {
    (void)f.get();
    FAIL("no error");
  } catch (const corio::redis::server_error& e) {
    CHECK(e.code() == "WRONGTYPE");
    CHECK(std::string(e.what()).starts_with("corio::dist::task_pool \"test\": its results stream \"" + results +
                                            "\" holds another type now (a foreign write?): the results sent there "
                                            "are dropped (redis 127.0.0.1:"));
  }
}
