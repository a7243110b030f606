// The seeds' distributed manager, server side (seed 004, "分布式多进程"): put ten urls in
// a task queue that workers on other hosts reach, then print each result they send back.
// Redis holds the queues (docs/distributed.md); start workers with distributed_worker.
//
// Usage: distributed_master [--address HOST:PORT] [--password PW]
//   HOST: a name (localhost, redis.internal) or a number, resolved at every connect
//   defaults: 127.0.0.1:6379, the password from REDISCLI_AUTH
#include <corio/dist/manager.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "dist/args.hpp"

int main(int argc, char** argv) {
  const auto a = dist_example::parse_args(argc, argv, "[--address HOST:PORT] [--password PW]", {});
  try {
    std::puts("initialing the task manager");
    corio::dist::manager manager(a.redis());
    std::puts("get the queue from network...");
    auto task = manager.queue<std::string>("task_queue");
    auto result = manager.queue<std::string>("result_queue");
    task.clear();  // a fresh start, as the seed's new queues are
    result.clear();
    std::puts("put urls to the task queue");
    for (int i = 0; i < 10; ++i) {
      const std::string url = "ImageUrl_" + std::to_string(i);
      std::printf("put %s in task\n", url.c_str());
      task.put(url);
    }
    std::fflush(stdout);
    for (int i = 0; i < 10; ++i) {
      std::printf("result is %s\n", result.get().c_str());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distributed_master: %s\n", e.what());
    return 1;
  }
}
