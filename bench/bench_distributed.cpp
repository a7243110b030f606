// Distributed round trips through Redis: master -> Redis -> worker process -> Redis ->
// master, 8-byte arguments. BM_remote_roundtrip/N runs dist::task_pool against N
// processes serving with dist::worker (leases, exactly-once results: the real thing);
// BM_raw_redis_floor/N is the floor of the same Redis, a pipelined XADD + XREADGROUP + XACK
// loop with none of the pool's guarantees. items_per_second = completed round trips per
// second. The peer, Python's multiprocessing.managers doing the seed's put/get loop, is
// bench/peers/python_managers.py.
//
// Redis: CORIO_REDIS=HOST:PORT (and REDISCLI_AUTH) when set, otherwise a redis-server of
// the benchmark's own (temporary directory, free port, password; no persistence, the
// setting a throughput run is made with), ready once it answers with its pid
// (tests/dist/redis_server.hpp). Connects wait up to 10 s: the machine may be busy. A
// round that has not finished in 60 s (a worker died) fails the run instead of hanging it.
#include <benchmark/benchmark.h>

#include <corio/coro/task_group.hpp>
#include <corio/dist/task_pool.hpp>
#include <corio/dist/worker.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../tests/dist/redis_server.hpp"

namespace {

constexpr int batch = 2000;  // round trips in flight per benchmark iteration
constexpr std::chrono::seconds round_limit{60};

corio::redis::options redis_options() {
  static std::unique_ptr<corio_test::redis_server> own;
  if (const char* at = std::getenv("CORIO_REDIS")) {
    const char* pw = std::getenv("REDISCLI_AUTH");
    return corio::redis::options(at).password(pw ? pw : "").connect_timeout(std::chrono::seconds(10));
  }
  if (!own) own = std::make_unique<corio_test::redis_server>(corio_test::redis_server::config{});
  return corio_test::options_for(*own);
}

// The benchmark's own Redis has no persistence on purpose: no warning about it per run.
void ignore_warning(const std::string&) {}

// A name of its own per call: Google Benchmark calls a benchmark several times, and the
// workers of the previous call, SIGKILLed inside their blocking XREADGROUP, still receive
// the next call's first tasks if they share its stream (Redis does not notice a blocked
// client's closed connection until its block ends: docs/distributed.md); those tasks would
// then wait out the lease and stall the round for 30 s.
std::string unique_name(const char* what) {
  static int calls = 0;
  return std::string(what) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++calls);
}

// Child processes, SIGKILLed and reaped at the end of the benchmark.
class children {
 public:
  template <class F>
  void start(int n, F body) {
    for (int i = 0; i < n; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        body();
        ::_exit(0);
      }
      pids_.push_back(pid);
    }
  }
  ~children() {
    for (pid_t p : pids_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
  }

 private:
  std::vector<pid_t> pids_;
};

void BM_remote_roundtrip(benchmark::State& state) {
  const auto opts = redis_options();
  const std::string name = unique_name("bench-pool");
  children workers;
  workers.start(static_cast<int>(state.range(0)), [&] {
    corio::dist::manager m(opts);
    m.on_warning(ignore_warning);
    corio::dist::worker w(m, name, {.concurrency = 256});
    w.define("echo", [](long x) -> corio::task<long> { co_return x; });
    w.run();
  });
  corio::dist::manager m(opts);
  m.on_warning(ignore_warning);
  corio::dist::task_pool pool(m, name);
  corio::loop lp;
  auto round = [&]() -> corio::task<void> {
    corio::task_group g;
    for (long i = 0; i < batch; ++i)
      g.spawn([&pool, i]() -> corio::task<void> {
        auto f = co_await pool.async_submit<long>("echo", i);
        if (co_await f.async_get() != i) throw std::logic_error("a wrong result");
      });
    co_await g.wait();
  };
  lp.run(corio::with_timeout(round(), round_limit));  // warm-up: workers connected, group made
  for (auto _ : state) lp.run(corio::with_timeout(round(), round_limit));
  lp.run(pool.async_close());
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_remote_roundtrip)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// The floor: tasks XADDed in one pipeline; each worker reads up to 256 at a time with
// XREADGROUP, answers each with an XADD to the results stream and acknowledges them with
// one XACK, all pipelined; the master reads the results with XREAD.
void BM_raw_redis_floor(benchmark::State& state) {
  const auto opts = redis_options();
  const std::string raw = unique_name("raw"), tasks = "{" + raw + "}:tasks", results = "{" + raw + "}:results";
  {
    corio::loop lp;
    lp.run([&]() -> corio::task<void> {
      auto c = co_await corio::redis::client::connect(opts);
      co_await c.command("DEL", tasks, results);  // Google Benchmark may call this more than once
      co_await c.command("XGROUP", "CREATE", tasks, "g", "0", "MKSTREAM");
    }());
  }
  children workers;
  workers.start(static_cast<int>(state.range(0)), [&] {
    corio::loop lp;
    lp.run([&]() -> corio::task<void> {
      auto c = co_await corio::redis::client::connect(opts);
      auto b = co_await corio::redis::client::connect(opts);
      const std::string me = std::to_string(::getpid());
      for (;;) {
        const auto r = co_await b.command("XREADGROUP", "GROUP", "g", me, "COUNT", "256", "BLOCK", "1000", "STREAMS", tasks, ">");
        if (r.elements.empty()) continue;
        std::vector<std::string> ack = {"XACK", tasks, "g"};
        corio::task_group g;
        for (const auto& e : r.elements[0].elements[1].elements) {
          ack.push_back(e.elements[0].str);
          g.spawn([&c, &results, v = e.elements[1].elements[1].str]() -> corio::task<void> {
            co_await c.command("XADD", results, "*", "v", v);
          });
        }
        std::vector<std::string_view> views(ack.begin(), ack.end());
        co_await c.command_argv(views);
        co_await g.wait();
      }
    }());
  });
  corio::loop lp;
  std::optional<corio::redis::client> client;
  std::string last_result = "0-0";
  auto round = [&]() -> corio::task<void> {
    if (!client) client.emplace(co_await corio::redis::client::connect(opts));
    corio::redis::client& c = *client;
    corio::task_group g;
    for (long i = 0; i < batch; ++i)
      g.spawn([&c, &tasks, i]() -> corio::task<void> { co_await c.command("XADD", tasks, "*", "v", std::to_string(i)); });
    co_await g.wait();
    std::string& last = last_result;
    for (int got = 0; got < batch;) {
      const auto r = co_await c.command("XREAD", "COUNT", "4096", "BLOCK", "5000", "STREAMS", results, last);
      if (r.elements.empty()) throw std::runtime_error("the raw floor's workers stopped answering");
      for (const auto& e : r.elements[0].elements[1].elements) last = e.elements[0].str;
      got += static_cast<int>(r.elements[0].elements[1].elements.size());
    }
  };
  lp.run(corio::with_timeout(round(), round_limit));
  for (auto _ : state) lp.run(corio::with_timeout(round(), round_limit));
  lp.run([&]() -> corio::task<void> {  // closed on its loop
    client.reset();
    co_return;
  }());
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_raw_redis_floor)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
