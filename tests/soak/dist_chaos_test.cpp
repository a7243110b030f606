// The distributed task pool under chaos (issue 11): CORIO_DIST_CHAOS_TASKS tasks (default
// 1,000,000) through 4 worker processes (tests/dist/pool_node.cpp, "echo", lease 1 s)
// while a supervisor thread SIGKILLs a random worker every CORIO_DIST_CHAOS_KILL_MS
// (default 2000) and starts a replacement. Checks:
// - every task id's future gets its own id back, each exactly once (a bitmap of ids), and
//   the pool's Redis counter of results written equals the number of tasks: N distinct ids
//   answered and N results written means no id got a second result;
// - some tasks were taken over from killed workers (deliveries >= 2): the chaos happened;
// - no pending entries are left (XPENDING), the task and result streams are empty;
// - Redis' used_memory (INFO memory) is back within 2 MiB of where it started: nothing
//   per task stays behind (a key, a stream entry or a pending entry per task would leave
//   tens of MiB after 1,000,000 tasks).
// A lost result fails within 30 s (no result came for 30 s: the count and the first
// missing ids are printed), never a hang; a worker that exits by itself fails the test.
//
// In the soak suite, normal build only (tests/meson.build): 15-40 s at today's speed on 2
// shared cores. By hand, shorter:
//     export CORIO_POOL_NODE=build/debug/tests/pool_node
//     CORIO_DIST_CHAOS_TASKS=50000 CORIO_DIST_CHAOS_KILL_MS=300 build/debug/tests/test_dist_chaos
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/coro/when_any.hpp>
#include <corio/dist/task_pool.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/semaphore.hpp>
#include <corio/runtime/timer.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../needs_feature.hpp"
#include "../dist/redis_server.hpp"
#include "../ipc/ipc_test_support.hpp"

extern char** environ;

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

constexpr int worker_count = 4;
constexpr std::int64_t memory_slack = 2 << 20;  // bytes
constexpr auto no_progress_limit = 30s;

long env_number(const char* name, long fallback) {
  const char* s = std::getenv(name);
  return s && *s ? std::stol(s) : fallback;
}

// The worker processes and the thread that kills and replaces them.
class supervisor {
 public:
  supervisor(std::string node, const corio_test::redis_server& s, std::chrono::milliseconds every)
      : node_(std::move(node)), address_(s.address()), password_(s.password()), every_(every) {
    for (pid_t& p : pids_) p = spawn();
    thread_ = std::thread([this] { run(); });
  }
  ~supervisor() {
    stop_ = true;
    thread_.join();
    corio_test::kill_and_reap_all(pids_);
  }
  int kills() const { return kills_; }
  // Workers that exited by themselves (a crash, an error): "pid: status".
  std::string self_exits() const {
    const std::lock_guard lock(mutex_);
    return self_exits_;
  }

 private:
  pid_t spawn() {
    const std::string lease = "1000", pool = "chaos";
    std::vector<char*> argv = {node_.data(), const_cast<char*>("echo"), address_.data(), password_.data(),
                               const_cast<char*>(lease.c_str()), const_cast<char*>(pool.c_str()), nullptr};
    pid_t pid = -1;
    const int e = ::posix_spawn(&pid, node_.c_str(), nullptr, nullptr, argv.data(), environ);
    if (e != 0) throw std::runtime_error("posix_spawn " + node_ + ": " + std::strerror(e));
    return pid;
  }
  void run() {
    std::mt19937 random(12345);
    auto next_kill = steady::now() + every_;
    while (!stop_) {
      std::this_thread::sleep_for(20ms);
      for (pid_t& p : pids_) {  // a worker that died without being killed is a failure
        int status = 0;
        if (::waitpid(p, &status, WNOHANG) == p) {
          const std::lock_guard lock(mutex_);
          self_exits_ += std::to_string(p) + ": status " + std::to_string(status) + "; ";
          p = spawn();
        }
      }
      if (steady::now() < next_kill) continue;
      next_kill += every_;
      pid_t& victim = pids_[random() % worker_count];
      ::kill(victim, SIGKILL);
      ::waitpid(victim, nullptr, 0);  // ours, not reaped before: the pid cannot be reused yet
      victim = spawn();
      ++kills_;
    }
  }

  std::string node_, address_, password_;
  std::chrono::milliseconds every_;
  std::array<pid_t, worker_count> pids_{};
  std::atomic<bool> stop_{false};
  std::atomic<int> kills_{0};
  mutable std::mutex mutex_;
  std::string self_exits_;
  std::thread thread_;
};

std::int64_t info_number(const std::string& info, const std::string& name) {
  const auto at = info.find("\r\n" + name + ":");
  if (at == std::string::npos) throw std::runtime_error("INFO has no " + name);
  return std::stoll(info.substr(at + name.size() + 3));
}

}  // namespace

CORIO_TEST_IF("1,000,000 tasks while a random worker of 4 is SIGKILLed every 2 s: each id once, nothing pending, memory back",
              corio_test::have_redis_server() && std::getenv("CORIO_POOL_NODE") != nullptr,
              "needs redis-server (scripts/deps.sh installs it) and CORIO_POOL_NODE, the path of tests/pool_node "
              "(meson test sets it)") {
  const char* node = std::getenv("CORIO_POOL_NODE");
  const long n = env_number("CORIO_DIST_CHAOS_TASKS", 1000000);
  const auto kill_every = std::chrono::milliseconds(env_number("CORIO_DIST_CHAOS_KILL_MS", 2000));
  REQUIRE(n > 0);
  // No persistence: what is measured is the pool, not the disk (save points silence the
  // workers' warning; nothing is saved within the run).
  corio_test::redis_server server({.extra = {"save 3600 1"}});
  corio::loop lp;
  std::optional<corio::redis::client> admin;
  auto used_memory = [&] {
    return lp.run([&]() -> corio::task<std::int64_t> {
      co_return info_number((co_await admin->command("INFO", "memory")).str, "used_memory");
    }());
  };
  lp.run([&]() -> corio::task<void> { admin.emplace(co_await corio::redis::client::connect(corio_test::options_for(server))); }());
  const std::int64_t memory_before = used_memory();

  std::vector<std::uint8_t> seen(static_cast<std::size_t>(n));  // the bitmap: results per id
  long done = 0, redelivered = 0;
  int kills = 0;
  const auto start = steady::now();
  {
    supervisor workers(node, server, kill_every);
    corio::dist::manager m(corio_test::options_for(server));
    m.on_warning([](const std::string&) {});
    corio::dist::task_pool pool(m, "chaos");
    auto all = [&]() -> corio::task<void> {
      corio::semaphore window(20000);  // tasks in flight
      corio::task_group g;
      std::exception_ptr stopped;  // the watchdog won: the children end before the group does
      for (long i = 0; i < n && !stopped; ++i) {
        try {
          co_await window.acquire();
        } catch (...) {
          stopped = std::current_exception();
          g.request_stop();
          break;
        }
        g.spawn([](corio::dist::task_pool& p, corio::semaphore& w, std::vector<std::uint8_t>& seen, long& done,
                   long& redelivered, long i) -> corio::task<void> {
          auto f = co_await p.async_submit<long>("echo", i);
          const long v = co_await f.async_get();
          if (v != i) throw std::logic_error("task " + std::to_string(i) + " answered " + std::to_string(v));
          if (seen[static_cast<std::size_t>(i)]++ != 0) throw std::logic_error("task " + std::to_string(i) + " answered twice");
          redelivered += f.deliveries() > 1;
          ++done;
          w.release();
        }(pool, window, seen, done, redelivered, i));
      }
      co_await g.wait();
      if (stopped) std::rethrow_exception(stopped);
    };
    // Fails when no result came for no_progress_limit: a lost result, not a hang.
    auto watch = [&]() -> corio::task<void> {
      long last = -1;
      auto last_change = steady::now();
      for (;;) {
        co_await corio::sleep_for(500ms);
        if (done != last) {
          last = done;
          last_change = steady::now();
        }
        if (steady::now() - last_change < no_progress_limit) continue;
        std::string missing;
        for (long i = 0, shown = 0; i < n && shown < 10; ++i)
          if (seen[static_cast<std::size_t>(i)] == 0 && ++shown) missing += " " + std::to_string(i);
        throw std::runtime_error("no result for 30 s: " + std::to_string(done) + " of " + std::to_string(n) +
                                 " done; the first ids without a result:" + missing);
      }
    };
    lp.run([&]() -> corio::task<void> {
      co_await corio::when_any(all(), watch());
      co_await pool.async_close();
    }());
    kills = workers.kills();
    CHECK_MESSAGE(workers.self_exits().empty(), "workers exited by themselves: " << workers.self_exits());
    const auto stats = pool.stats();
    const double seconds = std::chrono::duration<double>(steady::now() - start).count();
    MESSAGE(n << " tasks in " << seconds << " s (" << static_cast<long>(n / seconds) << " tasks/s), " << kills
              << " workers killed, " << redelivered << " tasks taken over, " << stats.at("duplicates")
              << " late results dropped");
    CHECK(done == n);
    CHECK(stats.at("written") == n);  // with the bitmap: no id has a second result
    CHECK(stats.at("dead") == 0);
  }
  REQUIRE_MESSAGE(kills > 0, "the run ended before the first kill: raise CORIO_DIST_CHAOS_TASKS or lower "
                             "CORIO_DIST_CHAOS_KILL_MS");
  CHECK(redelivered > 0);
  lp.run([&]() -> corio::task<void> {
    const corio::resp::reply pending = co_await admin->command("XPENDING", "{chaos}:tasks", "workers");
    CHECK(pending.elements.at(0).integer == 0);
    CHECK((co_await admin->command("XLEN", "{chaos}:tasks")).integer == 0);
    const corio::resp::reply results = co_await admin->command("KEYS", "{chaos}:results:*");
    for (const auto& key : results.elements) CHECK((co_await admin->command("XLEN", key.str)).integer == 0);
  }());
  const std::int64_t memory_after = used_memory();
  MESSAGE("redis used_memory " << memory_before << " bytes before, " << memory_after << " after");
  CHECK(memory_after - memory_before <= memory_slack);
  lp.run([&]() -> corio::task<void> {
    admin.reset();
    co_return;
  }());
}
