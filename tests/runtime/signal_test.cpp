// Signals through a signalfd read on the loop: delivery, several signals, the mask's
// lifetime, cancellation.
#include <doctest/doctest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/signal.hpp>
#include <corio/runtime/timer.hpp>
#include <stdexcept>

using namespace std::chrono_literals;
using corio::task;

namespace {
bool blocked(int sig) {
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, nullptr, &now);
  return sigismember(&now, sig) == 1;
}
}  // namespace

TEST_CASE("a signal sent to the process is returned by wait") {
  corio::loop lp;
  corio::signal_set set{SIGUSR1};
  CHECK(blocked(SIGUSR1));
  CHECK(set.contains(SIGUSR1));
  CHECK_FALSE(set.contains(SIGUSR2));
  REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
  auto main = [&]() -> task<int> { co_return co_await set.wait(); };
  CHECK(lp.run(main()) == SIGUSR1);
}

TEST_CASE("wait on two signals returns each as it arrives") {
  corio::loop lp;
  corio::signal_set set{SIGUSR1, SIGUSR2};
  auto main = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([]() -> task<void> {
      co_await corio::sleep_for(20ms);
      ::kill(::getpid(), SIGUSR2);
    });
    CHECK(co_await set.wait() == SIGUSR2);  // arrives while the loop sleeps
    co_await g.wait();
    ::raise(SIGUSR1);  // thread-directed: seen because wait reads on this thread
    CHECK(co_await set.wait() == SIGUSR1);
  };
  lp.run(main());
}

TEST_CASE("wait_for_signal blocks the signal while it waits and restores the mask") {
  corio::loop lp;
  REQUIRE_FALSE(blocked(SIGUSR2));
  auto main = []() -> task<int> {
    auto waiting = corio::wait_for_signal({SIGUSR1, SIGUSR2});
    CHECK(blocked(SIGUSR2));  // blocked from the call on, before the co_await
    corio::task_group g;
    g.spawn([]() -> task<void> {
      co_await corio::sleep_for(10ms);
      ::kill(::getpid(), SIGUSR2);
    });
    const int sig = co_await std::move(waiting);
    co_await g.wait();
    co_return sig;
  };
  CHECK(lp.run(main()) == SIGUSR2);
  CHECK_FALSE(blocked(SIGUSR2));
  CHECK_FALSE(blocked(SIGUSR1));
}

TEST_CASE("a signal already blocked before the set stays blocked after it") {
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &one, nullptr);
  { corio::signal_set set{SIGUSR1, SIGUSR2}; }
  CHECK(blocked(SIGUSR2));
  CHECK_FALSE(blocked(SIGUSR1));
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
}

TEST_CASE("a stop request cancels wait with operation_cancelled") {
  corio::loop lp;
  corio::signal_set set{SIGUSR1};
  std::stop_source stop;
  const std::stop_token token = stop.get_token();
  auto main = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await corio::sleep_for(20ms);
      stop.request_stop();
    });
    CHECK_THROWS_AS((void)co_await set.wait({.token = &token, .deadline = {}}), corio::operation_cancelled);
    co_await g.wait();
    CHECK_THROWS_AS((void)co_await set.wait(corio::within(20ms)), corio::timed_out);
  };
  lp.run(main());
}

TEST_CASE("invalid signal sets are rejected") {
  CHECK_THROWS_AS(corio::signal_set({}), std::invalid_argument);
  CHECK_THROWS_AS(corio::signal_set({SIGKILL}), std::invalid_argument);
  CHECK_THROWS_AS(corio::signal_set({0}), std::invalid_argument);
  CHECK_THROWS_AS(corio::signal_set({9999}), std::invalid_argument);
  CHECK_FALSE(blocked(SIGUSR1));
}
