// The reliable distributed pool: a master submits 1,000 tasks by name ("square") and sums
// the results; the workers are two processes started here, but they could run on any host
// that reaches the Redis (each with its own manager), as examples/distributed_worker does
// for the queue pair. docs/distributed.md explains leases, takeover and dead letters.
//
// Usage: distributed_pool [--address HOST:PORT] [--password PW]
//   HOST: a name (localhost, redis.internal) or a number, resolved at every connect
//   defaults: 127.0.0.1:6379, the password from REDISCLI_AUTH
#include <corio/dist/task_pool.hpp>
#include <corio/dist/worker.hpp>
#include <corio/ipc/process.hpp>

#include <cstdio>
#include <exception>
#include <vector>

#include "dist/args.hpp"

// A worker process: registers its functions by name and serves until terminated.
void serve(dist_example::args a) {
  corio::dist::manager m(a.redis());
  corio::dist::worker w(m, "squares", {.concurrency = 16});
  w.define("square", [](long x) { return x * x; });
  w.run();
}

int main(int argc, char** argv) {
  const auto a = dist_example::parse_args(argc, argv, "[--address HOST:PORT] [--password PW]", {});
  try {
    std::vector<corio::process> workers;
    for (int i = 0; i < 2; ++i) workers.emplace_back(serve, a).start();

    corio::dist::manager m(a.redis());
    corio::dist::task_pool pool(m, "squares");
    std::vector<corio::dist::remote_future<long>> results;
    for (long i = 0; i < 1000; ++i) results.push_back(pool.submit<long>("square", i));
    long sum = 0;
    for (auto& r : results) sum += r.get();
    std::printf("sum of the squares of 0..999, computed by 2 worker processes: %ld\n", sum);

    for (auto& w : workers) {
      w.terminate();
      w.join();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distributed_pool: %s\n", e.what());
    return 1;
  }
}
