// The seeds' distributed manager, client side (seed 004): take urls from the task queue,
// "download" each, put the result in the result queue; exit when no task came for 10 s
// (the seed's get(True, timeout=10)). Run several, on any hosts that reach the Redis.
//
// Usage: distributed_worker [--address HOST:PORT] [--password PW] [--host-name NAME]
//                           [--timeout SECONDS]
//   HOST: a name (localhost, redis.internal) or a number, resolved at every connect
//   defaults: 127.0.0.1:6379, the password from REDISCLI_AUTH, the address, 10
#include <corio/dist/manager.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include "dist/args.hpp"

int main(int argc, char** argv) {
  const auto a = dist_example::parse_args(
      argc, argv, "[--address HOST:PORT] [--password PW] [--host-name NAME] [--timeout SECONDS]",
      {{"host-name", ""}, {"timeout", "10"}});
  const std::string host = a.extra.at("host-name").empty() ? a.address : a.extra.at("host-name");
  try {
    const auto timeout = std::chrono::duration<double>(std::stod(a.extra.at("timeout")));
    std::printf("try to connect to %s\n", host.c_str());
    std::fflush(stdout);
    corio::dist::manager manager(a.redis());
    auto task = manager.queue<std::string>("task_queue");
    auto result = manager.queue<std::string>("result_queue");
    for (;;) {
      std::string image_url;
      try {
        image_url = task.get(true, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
      } catch (const corio::queue_empty&) {
        break;
      }
      std::printf("run task download %s\n", image_url.c_str());
      std::fflush(stdout);
      result.put(image_url + "------>completed!");
    }
    std::puts("worker exit!");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distributed_worker: %s\n", e.what());
    return 1;
  }
}
