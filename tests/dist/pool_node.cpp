// One "host" of tests/dist/netns_test.py: a task-pool worker or a master, on a Redis given
// on the command line.
//
//   pool_node worker ADDRESS PASSWORD LEASE_MS      serves "slow" (sleeps its argument, in ms)
//   pool_node master ADDRESS PASSWORD TASKS MS      submits TASKS slow(MS), waits for all,
//       prints "results N sum S redelivered R" (R: results whose task took 2+ deliveries)
#include <corio/dist/task_pool.hpp>
#include <corio/dist/worker.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::fprintf(stderr, "usage: pool_node worker ADDRESS PASSWORD LEASE_MS | master ADDRESS PASSWORD TASKS MS\n");
    return 2;
  }
  try {
    const std::string role = argv[1];
    corio::dist::manager m(corio::redis::options(argv[2]).password(argv[3]));
    if (role == "worker") {
      corio::dist::worker w(m, "netns", {.concurrency = 2, .lease = std::chrono::milliseconds(std::stoi(argv[4]))});
      w.define("slow", [](int ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return ms;
      });
      w.run();
      return 0;
    }
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
