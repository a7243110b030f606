// The sharded multi-process executor: calls routed by key to worker processes, each
// running its own event loop. The same key always lands on the same worker.
#include <corio/coro/when_all.hpp>
#include <corio/ipc/executor.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;

int worker_pid() { return static_cast<int>(::getpid()); }

// A coroutine run in a worker: while it sleeps, the worker runs other calls.
corio::task<std::string> greet(std::string name) {
  co_await corio::sleep_for(100ms);
  co_return "Hello, " + name + "!";
}

corio::task<void> main_task(corio::executor& ex) {
  const int a = co_await ex.submit(std::string("alice"), &worker_pid);
  const int b = co_await ex.submit(std::string("alice"), &worker_pid);
  std::printf("same key, same worker: %s\n", a == b ? "yes" : "no");

  std::vector<corio::task<std::string>> calls;
  for (const char* name : {"Ann", "Bob", "Cid"}) calls.push_back(ex.submit(name, &greet, std::string(name)));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> greetings = co_await corio::when_all(std::move(calls));
  for (const std::string& s : greetings) std::printf("%s\n", s.c_str());
  const auto took = std::chrono::steady_clock::now() - start;
  std::printf("three 100 ms calls took less than 300 ms: %s\n", took < 300ms ? "yes" : "no");

  try {
    co_await ex.submit(0, [](int x) -> int { throw std::invalid_argument("bad x " + std::to_string(x)); }, 7);
  } catch (const corio::remote_error& e) {
    std::printf("remote error: %s\n", e.what());
  }

  const std::vector<int> pids = co_await ex.broadcast(&worker_pid);
  std::printf("broadcast reached %zu workers\n", pids.size());
  co_await ex.shutdown();
  std::printf("shut down\n");
}

int main() {
  corio::executor ex({.workers = 2});
  corio::loop lp;
  lp.run(main_task(ex));
}
