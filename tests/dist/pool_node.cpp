// One "host" of tests/dist/netns_test.py and a worker of tests/soak/dist_chaos_test.cpp: a
// task-pool worker or a master, on a Redis given on the command line.
//
//   pool_node worker ADDRESS PASSWORD LEASE_MS      serves "slow" (sleeps its argument, in ms)
//                                                   on pool "netns", 2 at a time
//   pool_node master ADDRESS PASSWORD TASKS MS      submits TASKS slow(MS), waits for all,
//       prints "results N sum S redelivered R" (R: results whose task took 2+ deliveries)
//   pool_node echo ADDRESS PASSWORD LEASE_MS POOL   serves "echo" (returns its long) on POOL,
//       256 at a time; dies with the thread that started it (PR_SET_PDEATHSIG)
#include <corio/dist/task_pool.hpp>
#include <corio/dist/worker.hpp>

#include <signal.h>
#include <sys/prctl.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: pool_node worker ADDRESS PASSWORD LEASE_MS | master ADDRESS PASSWORD TASKS MS | "
               "echo ADDRESS PASSWORD LEASE_MS POOL\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) return usage();
  try {
    const std::string role = argv[1];
    corio::dist::manager m(corio::redis::options(argv[2]).password(argv[3]));
    const auto lease = [&] { return std::chrono::milliseconds(std::stoi(argv[4])); };
    if (role == "worker" && argc == 5) {
      corio::dist::worker w(m, "netns", {.concurrency = 2, .lease = lease()});
      w.define("slow", [](int ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return ms;
      });
      w.run();
      return 0;
    }
    if (role == "echo" && argc == 6) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      m.on_warning([](const std::string&) {});  // the test's Redis has no persistence, on purpose
      corio::dist::worker w(m, argv[5], {.concurrency = 256, .lease = lease()});
      w.define("echo", [](long x) -> corio::task<long> { co_return x; });
      w.run();
      return 0;
    }
    if (role != "master" || argc != 6) return usage();
    corio::dist::task_pool pool(m, "netns");
    std::vector<corio::dist::remote_future<int>> fs;
    for (int i = 0; i < std::stoi(argv[4]); ++i) fs.push_back(pool.submit<int>("slow", std::stoi(argv[5])));
    long sum = 0;
    int redelivered = 0;
    for (auto& f : fs) {
      sum += f.get();
      redelivered += f.deliveries() > 1;
    }
    std::printf("results %zu sum %ld redelivered %d\n", fs.size(), sum, redelivered);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pool_node: %s\n", e.what());
    return 1;
  }
}
