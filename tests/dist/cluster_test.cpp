// redis::client and dist's queues and task pool on a 3-master Redis Cluster the test starts
// (redis_cluster.hpp: loopback, free ports, temporary directories, requirepass + masterauth):
// seeds and cluster detection; key_slot against CLUSTER KEYSLOT; commands routed to the node
// of their slot; cross-slot misuse refused before sending; ASK followed with ASKING, once,
// without touching the slot map, MOVED followed and remembered (a slot migrated by hand with
// CLUSTER SETSLOT and MIGRATE); a lying server's MOVED is a clear error; 8 queues and 8 task
// pools whose hash tags land on all masters carry every value and task; `redis-cli --cluster
// reshard` moving two queues' slots under a producer and a consumer loses and repeats no
// value; a pool's slot migrated by hand mid-run loses no task (each task's result exactly
// once, none waiting out a lease).
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/coro/when_all.hpp>
#include <corio/dist/detail/pool_protocol.hpp>
#include <corio/dist/hash_slot.hpp>
#include <corio/dist/manager.hpp>
#include <corio/dist/redis_client.hpp>
#include <corio/dist/task_pool.hpp>
#include <corio/dist/worker.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../needs_feature.hpp"
#include "../ipc/ipc_test_support.hpp"
#include "fake_redis.hpp"
#include "redis_cluster.hpp"

using namespace std::chrono_literals;
using corio::redis::client;
using corio::redis::key_slot;
using corio_test::redis_cluster;

namespace {

template <class F>
void on_loop(F f) {
  corio::loop lp;
  lp.run(f());
}

corio::redis::options options_for(const redis_cluster& c) {
  return corio::redis::options(c.seeds()).password(c.password());
}

// Moves `slot` from node `from` to node `to` by hand, as redis-cli --cluster reshard does:
// IMPORTING on the target, MIGRATING on the source, the slot's keys MIGRATEd one by one
// with a pause between them (the window where a client meets ASK, and TRYAGAIN for scripts
// whose keys are split), then SETSLOT NODE on every node (from then on MOVED).
void migrate_slot(redis_cluster& c, int slot, int from, int to, std::chrono::milliseconds pause) {
  const std::string s = std::to_string(slot);
  REQUIRE(c.cli(to, "cluster setslot " + s + " importing " + c.id(from)) == "OK");
  REQUIRE(c.cli(from, "cluster setslot " + s + " migrating " + c.id(to)) == "OK");
  std::this_thread::sleep_for(pause);
  for (;;) {
    std::istringstream keys(c.cli(from, "cluster getkeysinslot " + s + " 1000"));
    std::vector<std::string> batch;
    for (std::string k; std::getline(keys, k);)
      if (!k.empty()) batch.push_back(k);
    if (batch.empty()) break;
    for (const std::string& k : batch) {
      const std::string r =
          c.cli(from, "migrate 127.0.0.1 " + std::to_string(c.node(to).port()) + " '" + k + "' 0 5000 AUTH '" +
                          c.password() + "'");
      REQUIRE_MESSAGE((r == "OK" || r == "NOKEY"), "MIGRATE " << k << ": " << r);
      std::this_thread::sleep_for(pause);
    }
  }
  for (int i : {to, from})
    REQUIRE(c.cli(i, "cluster setslot " + s + " node " + c.id(to)) == "OK");
  for (int i = 0; i < c.size(); ++i)
    if (i != to && i != from) (void)c.cli(i, "cluster setslot " + s + " node " + c.id(to));
}

// `n` names whose hash tags land on every master, at least n / masters on each, with the
// live server's CLUSTER KEYSLOT checked against key_slot for each.
std::vector<std::string> names_over_masters(redis_cluster& c, const std::string& prefix, int n) {
  std::vector<std::string> names;
  std::map<int, int> per_master;
  const int each = n / c.size();
  for (int i = 0; static_cast<int>(names.size()) < n; ++i) {
    const std::string name = prefix + std::to_string(i);
    const int slot = key_slot("{" + name + "}:tasks");
    REQUIRE(c.cli(0, "cluster keyslot '{" + name + "}:tasks'") == std::to_string(slot));
    const int owner = c.owner(slot);
    REQUIRE(owner >= 0);
    if (per_master[owner] >= each && static_cast<int>(names.size()) < each * c.size()) continue;
    ++per_master[owner];
    names.push_back(name);
  }
  REQUIRE(per_master.size() == static_cast<std::size_t>(c.size()));
  return names;
}

// Worker processes serving the pools `names` ("square"), SIGKILLed and reaped at the end.
class cluster_workers {
 public:
  cluster_workers(const redis_cluster& c, std::vector<std::string> names, int processes) {
    for (int p = 0; p < processes; ++p)
      pids_.push_back(corio_test::fork_child([&c, names] {
        corio::dist::manager m(options_for(c));
        m.on_warning([](const std::string&) {});
        std::vector<std::unique_ptr<corio::dist::worker>> ws;
        for (const auto& name : names) {
          ws.push_back(std::make_unique<corio::dist::worker>(
              m, name, corio::dist::worker_options{.concurrency = 4, .lease = 20s}));
          ws.back()->define("square", [](int x) { return x * x; });
        }
        corio::loop lp;
        lp.run([&]() -> corio::task<void> {
          corio::task_group g;
          for (auto& w : ws) g.spawn(w->async_run());
          co_await g.wait();
        }());
        return 0;
      }));
  }
  ~cluster_workers() {
    corio_test::kill_and_reap_all(pids_);
  }

 private:
  std::vector<pid_t> pids_;
};

}  // namespace

REDIS_CLUSTER_TEST_CASE("a client given a dead seed first finds the cluster, routes by slot, and key_slot agrees with CLUSTER KEYSLOT") {
  redis_cluster cl;
  const std::string seeds = "127.0.0.1:" + std::to_string(corio_test::free_port()) + "," + cl.seeds();
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(corio::redis::options(seeds).password(cl.password()));
    CHECK(c.cluster());
    CHECK(c.address() == cl.node(0).address());
    std::mt19937 rng(7);
    for (int i = 0; i < 300; ++i) {
      std::string key = "k" + std::to_string(rng());
      if (i % 3 == 0) key = "x{" + std::to_string(rng() % 1000) + "}y";
      if (i % 7 == 0) key = "{}" + key + "{";
      CHECK((co_await c.command("CLUSTER", "KEYSLOT", key)).integer == key_slot(key));
      co_await c.command("SET", key, std::to_string(i));
      CHECK((co_await c.command("GET", key)).str == std::to_string(i));
    }
    CHECK(c.stats().moved == 0);  // the map from the handshake was right
    CHECK(c.stats().asked == 0);
    CHECK(c.stats().nodes == 3);
  });
  for (int i = 0; i < 3; ++i) CHECK(std::stoi(cl.cli(i, "dbsize")) > 50);  // every master got keys
}

REDIS_CLUSTER_TEST_CASE("cluster misuse is a clear error: keys of two slots before sending, SELECT at connect, a bad password") {
  redis_cluster cl;
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(options_for(cl));
    const auto before = c.stats().commands;
    CHECK_THROWS_AS(co_await c.command("MGET", "a", "b"), corio::redis::cross_slot_error);
    CHECK_THROWS_AS(co_await c.command("EVAL", "return 1", "2", "{q}:a", "{r}:b"), corio::redis::cross_slot_error);
    CHECK(c.stats().commands == before);  // nothing was sent
    CHECK((co_await c.command("EVAL", "return #KEYS", "2", "{q}:a", "{q}:b")).integer == 2);
    try {
      (void)co_await client::connect(options_for(cl).db(1));
      FAIL("SELECT 1 accepted");
    } catch (const corio::redis::server_error& e) {
      CHECK(std::string(e.what()).find("SELECT") != std::string::npos);
      CHECK(std::string(e.what()).find("cluster") != std::string::npos);
    }
    try {
      (void)co_await client::connect(corio::redis::options(cl.seeds()).password("wrong-pw-123"));
      FAIL("a wrong password accepted");
    } catch (const corio::redis::auth_error& e) {
      CHECK(std::string(e.what()).find("wrong-pw-123") == std::string::npos);
    }
  });
}

REDIS_CLUSTER_TEST_CASE("ASK is followed with ASKING, once, leaving the slot map; MOVED is followed and remembered") {
  redis_cluster cl;
  const int slot = key_slot("ask");
  const int from = cl.owner(slot);
  const int to = (from + 1) % 3;
  const std::string s = std::to_string(slot);
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(options_for(cl));
    co_await c.command("SET", "{ask}:gone", "v1");
    co_await c.command("SET", "{ask}:stays", "v2");
    REQUIRE(cl.cli(to, "cluster setslot " + s + " importing " + cl.id(from)) == "OK");
    REQUIRE(cl.cli(from, "cluster setslot " + s + " migrating " + cl.id(to)) == "OK");
    const std::string port = std::to_string(cl.node(to).port());
    REQUIRE(cl.cli(from, "migrate 127.0.0.1 " + port + " '{ask}:gone' 0 5000 AUTH '" + cl.password() + "'") == "OK");

    CHECK((co_await c.command("GET", "{ask}:gone")).str == "v1");  // ASK, then ASKING + GET on `to`
    CHECK(c.stats().asked == 1);
    CHECK((co_await c.command("GET", "{ask}:stays")).str == "v2");  // still on `from`: no redirection
    CHECK(c.stats().asked == 1);
    CHECK((co_await c.command("GET", "{ask}:gone")).str == "v1");  // the map was not changed by ASK
    CHECK(c.stats().asked == 2);
    CHECK(c.stats().moved == 0);
    // A new key of the migrating slot is made on the target (ASK for a missing key).
    co_await c.command("SET", "{ask}:new", "v3");
    CHECK(c.stats().asked == 3);
    CHECK(cl.cli(to, "cluster countkeysinslot " + s) == "2");

    REQUIRE(cl.cli(from, "migrate 127.0.0.1 " + port + " '{ask}:stays' 0 5000 AUTH '" + cl.password() + "'") == "OK");
    for (int i : {to, from, 3 - to - from}) REQUIRE(cl.cli(i, "cluster setslot " + s + " node " + cl.id(to)) == "OK");
    CHECK((co_await c.command("GET", "{ask}:stays")).str == "v2");  // MOVED to `to`
    CHECK(c.stats().moved == 1);
    CHECK((co_await c.command("GET", "{ask}:stays")).str == "v2");  // remembered
    CHECK((co_await c.command("GET", "{ask}:new")).str == "v3");
    CHECK(c.stats().moved == 1);
    CHECK(c.stats().asked == 3);
  });
  CHECK(cl.owner(slot) == to);
}

REDIS_CLUSTER_TEST_CASE("a node lost: its command fails as connection_error within reconnect_for and the map is read again elsewhere") {
  redis_cluster cl;
  // A key on a node other than the seed that answers (node 0).
  std::string key;
  for (int i = 0; key.empty(); ++i)
    if (cl.owner(key_slot("lost" + std::to_string(i))) == 2) key = "lost" + std::to_string(i);
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(options_for(cl).reconnect_for(300ms).backoff(10ms, 50ms));
    co_await c.command("SET", key, "v");
    CHECK(c.stats().map_refreshes == 0);
    cl.node(2).stop(SIGKILL);
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(co_await c.command("GET", key), corio::redis::connection_error);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    for (int i = 0; i < 100 && c.stats().map_refreshes == 0; ++i) co_await corio::sleep_for(10ms);
    CHECK(c.stats().map_refreshes == 1);
    CHECK((co_await c.command("PING")).str == "PONG");  // the others still serve
  });
}

TEST_CASE("a lying server's MOVED is cluster_error, and redirections that never end stop after 16") {
  std::atomic<int> own_port{0};  // set once the server runs: its thread reads it
  corio_test::fake_redis garbage([](const std::vector<std::string_view>&, int) -> std::string {
    return "-MOVED 99999 somewhere\r\n";
  });
  corio_test::fake_redis loop_server([&own_port](const std::vector<std::string_view>& argv, int) -> std::string {
    if (argv[0] == "ASKING") return "+OK\r\n";
    return "-MOVED 5 127.0.0.1:" + std::to_string(own_port.load()) + "\r\n";
  });
  own_port = loop_server.port();
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(corio::redis::options(garbage.address()));
    CHECK_FALSE(c.cluster());
    try {
      co_await c.command("GET", "k");
      FAIL("no error");
    } catch (const corio::redis::cluster_error& e) {
      CHECK(std::string(e.what()).find("MOVED 99999 somewhere") != std::string::npos);
    }
    client d = co_await client::connect(corio::redis::options(loop_server.address()));
    try {
      co_await d.command("GET", "k");
      FAIL("no error");
    } catch (const corio::redis::cluster_error& e) {
      CHECK(std::string(e.what()).find("redirected 16 times") != std::string::npos);
    }
    CHECK(d.cluster());  // the MOVED turned it into a cluster client
    CHECK(d.stats().moved == 16);
  });
  CHECK(loop_server.commands() == 17);
}

REDIS_CLUSTER_TEST_CASE("8 queues whose hash tags land on all 3 masters carry their values") {
  redis_cluster cl;
  const std::vector<std::string> names = names_over_masters(cl, "queue", 8);
  corio::dist::manager m(options_for(cl));
  m.on_warning([](const std::string&) {});
  for (const auto& name : names) {
    auto q = m.queue<std::string>(name);
    for (int i = 0; i < 20; ++i) q.put(name + "/" + std::to_string(i));
  }
  for (const auto& name : names) {
    auto q = m.queue<std::string>(name);
    CHECK(q.size() == 20);
    std::set<std::string> got;
    for (int i = 0; i < 20; ++i) got.insert(q.get(true, std::chrono::seconds(5)));
    CHECK(got.size() == 20);
    CHECK(got.count(name + "/19") == 1);
    CHECK(q.empty());
  }
  CHECK(m.stats().moved == 0);
  for (int i = 0; i < 3; ++i) CHECK(std::stoi(cl.cli(i, "dbsize")) >= 2);
}

REDIS_CLUSTER_TEST_CASE("8 queues over 3 masters keep every value exactly once while redis-cli --cluster reshard moves two of them") {
  redis_cluster cl;
  // reshard moves the lowest slots of its source first: two queues in slots 0..63 move.
  const int from = cl.owner(0);
  const int to = (from + 1) % 3;
  std::vector<std::string> names;
  for (int i = 0; names.size() < 2; ++i)
    if (key_slot("rq" + std::to_string(i)) < 64) names.push_back("rq" + std::to_string(i));
  for (const auto& name : names_over_masters(cl, "queue", 6)) names.push_back(name);
  constexpr int rounds = 200;
  std::atomic<int> produced{0};
  std::string reshard_out;
  corio::redis::client_stats producer_stats;
  std::thread producer([&] {
    corio::dist::manager p(options_for(cl));
    p.on_warning([](const std::string&) {});
    std::vector<corio::dist::queue<std::string>> qs;
    for (const auto& name : names) qs.push_back(p.queue<std::string>(name));
    for (int r = 0; r < rounds; ++r) {
      for (std::size_t q = 0; q < qs.size(); ++q) qs[q].put(names[q] + "/" + std::to_string(r));
      produced = r + 1;
      std::this_thread::sleep_for(5ms);
    }
    producer_stats = p.stats();
  });
  std::thread resharder([&] {
    while (produced < 50) std::this_thread::sleep_for(1ms);
    reshard_out = cl.cli(0, "--cluster reshard " + cl.node(0).address() + " --cluster-from " + cl.id(from) +
                                " --cluster-to " + cl.id(to) + " --cluster-slots 64 --cluster-yes");
  });
  corio::dist::manager c(options_for(cl));
  c.on_warning([](const std::string&) {});
  std::vector<corio::dist::queue<std::string>> qs;
  for (const auto& name : names) qs.push_back(c.queue<std::string>(name));
  std::vector<std::multiset<std::string>> got(names.size());
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  for (bool all = false; !all && std::chrono::steady_clock::now() < give_up;) {
    all = true;
    for (std::size_t q = 0; q < qs.size(); ++q) {
      if (got[q].size() >= static_cast<std::size_t>(rounds)) continue;
      all = false;
      if (std::optional<std::string> v = qs[q].try_get()) got[q].insert(std::move(*v));
    }
  }
  producer.join();
  resharder.join();
  CHECK(reshard_out.find("Moving slot 63 from") != std::string::npos);
  for (std::size_t q = 0; q < qs.size(); ++q) {
    CAPTURE(names[q]);
    CHECK(got[q].size() == static_cast<std::size_t>(rounds));
    CHECK(std::set<std::string>(got[q].begin(), got[q].end()).size() == got[q].size());  // no value twice
    CHECK(got[q].count(names[q] + "/0") == 1);
    CHECK(got[q].count(names[q] + "/" + std::to_string(rounds - 1)) == 1);
    CHECK(qs[q].empty());
  }
  for (int i = 0; i < 2; ++i) CHECK(cl.owner(key_slot(names[static_cast<std::size_t>(i)])) == to);
  CHECK(c.stats().moved + producer_stats.moved >= 1);
  MESSAGE("the consumer followed " << c.stats().moved << " MOVED and " << c.stats().asked << " ASK, the producer "
                                   << producer_stats.moved << " MOVED and " << producer_stats.asked << " ASK");
}

REDIS_CLUSTER_TEST_CASE("8 task pools over 3 masters carry every task, and a slot migrated mid-run loses none") {
  redis_cluster cl;
  const std::vector<std::string> names = names_over_masters(cl, "pool", 8);
  const std::string victim = names[0];
  const int slot = key_slot(victim);
  const int from = cl.owner(slot);
  const int to = (from + 1) % 3;
  cluster_workers workers(cl, names, 2);

  corio::dist::manager m(options_for(cl));
  m.on_warning([](const std::string&) {});
  std::vector<std::unique_ptr<corio::dist::task_pool>> pools;
  for (const auto& name : names) pools.push_back(std::make_unique<corio::dist::task_pool>(m, name));
  std::vector<std::vector<corio::dist::remote_future<int>>> futures(names.size());
  constexpr int per_round = 1;
  auto submit_round = [&](int i) {
    for (std::size_t p = 0; p < pools.size(); ++p)
      for (int k = 0; k < per_round; ++k) futures[p].push_back(pools[p]->submit<int>("square", i));
  };
  int next = 0;
  for (; next < 60; ++next) submit_round(next);
  // The slot of the first pool moves while tasks are submitted, run and collected.
  std::thread mover([&] { migrate_slot(cl, slot, from, to, 15ms); });
  const auto moving_until = std::chrono::steady_clock::now() + 20s;
  for (; next < 400 && std::chrono::steady_clock::now() < moving_until; ++next) {
    if (next >= 120 && cl.owner(slot) == to) break;
    submit_round(next);
    std::this_thread::sleep_for(5ms);
  }
  mover.join();
  const int last = next + 20;
  for (; next < last; ++next) submit_round(next);  // after the move: MOVED for the first pool

  const auto collect_start = std::chrono::steady_clock::now();
  std::int64_t redelivered = 0;
  for (std::size_t p = 0; p < pools.size(); ++p) {
    CAPTURE(names[p]);
    REQUIRE(futures[p].size() == static_cast<std::size_t>(next * per_round));
    for (std::size_t i = 0; i < futures[p].size(); ++i) {
      REQUIRE_MESSAGE(futures[p][i].wait_for(60s), "task " << i << " of pool " << names[p] << " got no result");
      CHECK(futures[p][i].get() == static_cast<int>(i * i));
      redelivered += futures[p][i].deliveries() > 1;
    }
    const auto stats = pools[p]->stats();
    CHECK(stats.at("written") == next * per_round);  // each task's result recorded exactly once
    CHECK(stats.at("dead") == 0);
  }
  CHECK(redelivered == 0);  // no script refused mid-migration (its task would wait out a lease)
  CHECK(cl.owner(slot) == to);
  const auto s = m.stats();
  CHECK(s.moved >= 1);
  MESSAGE("tasks per pool " << next << ", " << redelivered << " redelivered; results collected "
                            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                                     collect_start).count()
                            << " ms after the last submit; the submitter's clients followed " << s.moved
                            << " MOVED and " << s.asked << " ASK, refreshed the slot map " << s.map_refreshes
                            << " times");
}

// The pool's scripts name every key they write in KEYS. A script whose KEYS held only the
// tasks stream and the stats hash would run on the old node of a half-migrated slot and
// fail there writing the results stream ("Script attempted to access a non local key");
// with the results stream in KEYS the old node answers TRYAGAIN before running, and the
// client retries until the move ends.
REDIS_CLUSTER_TEST_CASE("pool scripts declare their reply streams: with only the results stream migrated, a completion and the burial "
          "of a task taken over too often wait and write once; a burial tells its submitter on every master") {
  namespace pd = corio::dist::detail;
  redis_cluster cl;
  const std::vector<std::string> names = names_over_masters(cl, "proto", 3);
  const pd::pool_keys moving(names[0]);
  const int slot = key_slot(moving.tasks);
  const int from = cl.owner(slot);
  const int to = (from + 1) % 3;
  std::jthread mover;  // joined however the loop ends
  // The field -> value pairs of every entry of a results stream.
  const auto results_of = [](client& c, const std::string& stream) -> corio::task<std::map<std::string, std::string>> {
    const corio::resp::reply r = co_await c.command("XRANGE", stream, "-", "+");
    std::map<std::string, std::string> out;
    for (const auto& e : r.elements)
      for (std::size_t i = 0; i + 1 < e.elements[1].elements.size(); i += 2)
        out[e.elements[1].elements[i].str] = e.elements[1].elements[i + 1].str;
    co_return out;
  };
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(options_for(cl));
    co_await pd::pool_ensure_group(c, moving);
    const std::vector<std::string> tids{"t0", "poison"};
    for (const std::string& tid : tids)
      co_await c.command("XADD", moving.tasks, "*", "tid", tid, "fn", "square", "args", "a", "reply", moving.results("s1"));
    const pd::fetched held = co_await pd::pool_fetch(c, moving, "A", 20s, 1, 2);  // delivery 1 of each
    REQUIRE(held.tasks.size() == 2);
    REQUIRE(held.tasks[0].tid == "t0");
    co_await c.command("XADD", moving.results("s1"), "*", "before", "1");
    // The stats hash exists on the old node too: with only tasks and stats in KEYS, both
    // there, the old node would run a script and then fail on the results stream.
    co_await c.command("HINCRBY", moving.stats, "written", "0");
    co_await corio::sleep_for(300ms);
    // Half a migration: the results stream is on `to`, the rest still on `from`.
    const std::string s = std::to_string(slot);
    REQUIRE(cl.cli(to, "cluster setslot " + s + " importing " + cl.id(from)) == "OK");
    REQUIRE(cl.cli(from, "cluster setslot " + s + " migrating " + cl.id(to)) == "OK");
    REQUIRE(cl.cli(from, "migrate 127.0.0.1 " + std::to_string(cl.node(to).port()) + " '" + moving.results("s1") +
                             "' 0 5000 AUTH '" + cl.password() + "'") == "OK");
    mover = std::jthread([&] {
      std::this_thread::sleep_for(500ms);
      migrate_slot(cl, slot, from, to, 1ms);
    });
    // t0's lease renewed: only "poison" (idle 300 ms) is taken over by B's fetch below.
    const std::vector<std::string> renewing{held.tasks[0].entry};
    REQUIRE(co_await pd::pool_renew(c, moving, "A", renewing) == 1);
    // Named first: GCC 12 destroys an aggregate temporary built inside co_await twice.
    const std::vector<pd::pool_result> done{pd::pool_result{held.tasks[0], "ok", "v0"}};
    auto [buried, first] = co_await corio::when_all(pd::pool_fetch(c, moving, "B", 200ms, 1, 1),  // delivery 2 > max 1
                                                    pd::pool_complete(c, moving, done));
    CHECK(buried.what == pd::fetched::kind::dead_lettered);
    CHECK(buried.tasks.empty());
    REQUIRE(first.size() == 1);
    CHECK(first[0].what == pd::pool_outcome::kind::written);
    const std::vector<pd::pool_outcome> again = co_await pd::pool_complete(c, moving, done);
    REQUIRE(again.size() == 1);
    CHECK(again[0].what == pd::pool_outcome::kind::duplicate);  // the XACK found it acknowledged: no second result
    const std::map<std::string, std::string> got = co_await results_of(c, moving.results("s1"));
    CHECK(got.size() == 3);
    CHECK(got.at("t0") == "ok 1 v0");
    CHECK(got.at("poison").starts_with("dead 2 the task was delivered 2 times"));
    CHECK((co_await c.command("XLEN", moving.dead)).integer == 1);
    CHECK((co_await c.command("XLEN", moving.tasks)).integer == 0);

    // On the other masters, without a migration: EVALSHA there (NOSCRIPT, then EVAL, where
    // the seed's SCRIPT LOAD did not reach).
    for (std::size_t p = 1; p < names.size(); ++p) {
      CAPTURE(names[p]);
      const pd::pool_keys k(names[p]);
      co_await pd::pool_ensure_group(c, k);
      co_await c.command("XADD", k.tasks, "*", "tid", "poison", "fn", "square", "args", "a", "reply", k.results("s1"));
      REQUIRE((co_await pd::pool_fetch(c, k, "A", 20s, 1, 1)).tasks.size() == 1);  // delivery 1, A "dies"
      co_await corio::sleep_for(20ms);
      const pd::fetched f2 = co_await pd::pool_fetch(c, k, "B", 1ms, 1, 1);  // delivery 2 > max 1
      CHECK(f2.what == pd::fetched::kind::dead_lettered);
      CHECK(f2.tasks.empty());
      CHECK((co_await c.command("XLEN", k.dead)).integer == 1);
      CHECK((co_await c.command("XLEN", k.tasks)).integer == 0);
      const std::map<std::string, std::string> told = co_await results_of(c, k.results("s1"));
      CHECK(told.size() == 1);
      CHECK(told.at("poison").starts_with("dead 2 the task was delivered 2 times"));
      CHECK((co_await c.command("HGET", k.stats, "dead")).str == "1");
    }
  });
  if (mover.joinable()) mover.join();
  CHECK(cl.owner(slot) == to);
  for (int i = 0; i < 3; ++i) {  // every master ran scripts by SHA1
    CAPTURE(i);
    CHECK(cl.cli(i, "info commandstats").find("cmdstat_evalsha:calls=") != std::string::npos);
  }
}
