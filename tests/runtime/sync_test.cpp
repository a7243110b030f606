// sync: async mutex, semaphore, event and channel on one loop; FIFO order, backpressure,
// close semantics, and cancellation of waits (from the loop thread and from another).
#include <doctest/doctest.h>

#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task_group.hpp>
#include <corio/coro/when_any.hpp>
#include <corio/runtime/channel.hpp>
#include <corio/runtime/event.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/mutex.hpp>
#include <corio/runtime/semaphore.hpp>
#include <corio/runtime/timer.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio::task;

namespace {

// Yields to the loop `n` times (sleep_for(0) is a NOP round trip).
task<void> yield_times(int n) {
  for (int i = 0; i < n; ++i) co_await corio::sleep_for(0ms);
}

}  // namespace

TEST_CASE("mutex excludes coroutines that suspend while holding it") {
  corio::loop lp;
  corio::mutex m;
  int inside = 0, max_inside = 0, entries = 0;
  auto worker = [&]() -> task<void> {
    for (int i = 0; i < 20; ++i) {
      auto guard = co_await m.lock();
      ++inside;
      max_inside = std::max(max_inside, inside);
      ++entries;
      co_await yield_times(2);  // others run meanwhile and must queue
      --inside;
    }
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int i = 0; i < 50; ++i) g.spawn(worker);
    co_await g.wait();
  };
  lp.run(main());
  CHECK(entries == 1000);
  CHECK(max_inside == 1);
  CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex hands ownership to waiters in the order they arrived") {
  corio::loop lp;
  corio::mutex m;
  std::vector<int> order;
  auto waiter = [&](int id) -> task<void> {
    auto guard = co_await m.lock();
    order.push_back(id);
  };
  auto main = [&]() -> task<void> {
    auto first = co_await m.lock();
    corio::task_group g;
    for (int id = 0; id < 5; ++id) g.spawn(waiter(id));
    CHECK_FALSE(m.try_lock());
    first.unlock();
    // Ownership went to waiter 0; a newcomer cannot barge in before it runs.
    CHECK(m.is_locked());
    CHECK_FALSE(m.try_lock());
    co_await g.wait();
  };
  lp.run(main());
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
  CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex try_lock and the guard's move, unlock and release") {
  corio::mutex m;
  CHECK(m.try_lock());
  CHECK_FALSE(m.try_lock());
  corio::mutex_guard a(m, std::adopt_lock);
  corio::mutex_guard b = std::move(a);
  CHECK_FALSE(a.owns_lock());
  CHECK(b.owns_lock());
  CHECK(b.get() == &m);
  b.unlock();
  CHECK_FALSE(m.is_locked());
  CHECK(m.try_lock());
  corio::mutex_guard c(m, std::adopt_lock);
  CHECK(c.release() == &m);
  CHECK(m.is_locked());  // released, not unlocked
  m.unlock();
}

TEST_CASE("a hand-off chain of ten thousand lock waiters runs in constant stack") {
  corio::loop lp;
  corio::mutex m;
  int done = 0;
  auto waiter = [&]() -> task<void> {
    auto guard = co_await m.lock();
    ++done;  // unlocks without suspending: the next owner is scheduled, not resumed inline
  };
  auto main = [&]() -> task<void> {
    auto first = co_await m.lock();
    corio::task_group g;
    for (int i = 0; i < 10'000; ++i) g.spawn(waiter);
    first.unlock();
    co_await g.wait();
  };
  lp.run(main());
  CHECK(done == 10'000);
}

TEST_CASE("a lock wait cancelled on the loop thread throws and leaves the queue intact") {
  corio::loop lp;
  corio::mutex m;
  std::vector<int> order;
  std::string error;
  auto waiter = [&](int id) -> task<void> {
    try {
      auto guard = co_await m.lock();
      order.push_back(id);
    } catch (const corio::operation_cancelled& e) {
      error = e.what();
    }
  };
  auto main = [&]() -> task<void> {
    auto held = co_await m.lock();
    corio::task_group stays, cancelled;
    stays.spawn(waiter(1));
    cancelled.spawn(waiter(2));
    stays.spawn(waiter(3));
    cancelled.request_stop();  // waiter 2 leaves the queue at once
    co_await cancelled.wait();
    CHECK(error == "mutex lock: Operation canceled");
    held.unlock();
    co_await stays.wait();
  };
  lp.run(main());
  CHECK(order == std::vector<int>{1, 3});
  CHECK_FALSE(m.is_locked());
}

TEST_CASE("a lock wait cancelled from another thread leaves the queue and resumes on its loop") {
  corio::loop lp;
  corio::mutex m;
  std::vector<int> order;
  bool cancelled_seen = false;
  auto waiter = [&](int id) -> task<void> {
    try {
      auto guard = co_await m.lock();
      order.push_back(id);
    } catch (const corio::operation_cancelled&) {
      cancelled_seen = true;
    }
  };
  auto main = [&]() -> task<void> {
    auto held = co_await m.lock();
    corio::task_group stays, cancelled;
    cancelled.spawn(waiter(1));
    stays.spawn(waiter(2));
    std::thread other([&] { cancelled.request_stop(); });
    other.join();
    co_await cancelled.wait();  // the waiter resumed through a post to this loop
    CHECK(cancelled_seen);
    held.unlock();
    co_await stays.wait();
  };
  lp.run(main());
  CHECK(order == std::vector<int>{2});
  CHECK_FALSE(m.is_locked());
}

TEST_CASE("a cross-thread cancel racing a hand-off either gets the lock or nothing") {
  corio::loop lp;
  corio::mutex m;
  int granted = 0, cancelled = 0;
  auto waiter = [&]() -> task<void> {
    try {
      auto guard = co_await m.lock();
      ++granted;
    } catch (const corio::operation_cancelled&) {
      ++cancelled;
    }
  };
  auto main = [&]() -> task<void> {
    for (int round = 0; round < 300; ++round) {
      auto held = co_await m.lock();
      corio::task_group g;
      g.spawn(waiter);
      std::thread other([&] { g.request_stop(); });
      held.unlock();  // races the stop request
      other.join();
      co_await g.wait();
      REQUIRE_FALSE(m.is_locked());
    }
  };
  lp.run(main());
  CHECK(granted + cancelled == 300);
}

TEST_CASE("semaphore admits at most its count and wakes waiters in FIFO order") {
  corio::loop lp;
  corio::semaphore slots(2);
  int inside = 0, max_inside = 0;
  std::vector<int> order;
  auto worker = [&](int id) -> task<void> {
    co_await slots.acquire();
    order.push_back(id);
    ++inside;
    max_inside = std::max(max_inside, inside);
    co_await yield_times(3);
    --inside;
    slots.release();
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int id = 0; id < 6; ++id) g.spawn(worker(id));
    CHECK(slots.available() == 0);
    CHECK(slots.has_waiters());
    co_await g.wait();
  };
  lp.run(main());
  CHECK(max_inside == 2);
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
  CHECK(slots.available() == 2);
}

TEST_CASE("semaphore release(n) wakes n waiters and counts the rest") {
  corio::loop lp;
  corio::semaphore s(0);
  int woke = 0;
  auto waiter = [&]() -> task<void> {
    co_await s.acquire();
    ++woke;
  };
  auto main = [&]() -> task<void> {
    CHECK_FALSE(s.try_acquire());
    corio::task_group g;
    for (int i = 0; i < 3; ++i) g.spawn(waiter);
    s.release(5);
    CHECK(s.available() == 2);  // three units went straight to the waiters
    co_await g.wait();
    CHECK(s.try_acquire());
    CHECK(s.available() == 1);
  };
  lp.run(main());
  CHECK(woke == 3);
  CHECK_THROWS_AS(corio::semaphore(-1), std::invalid_argument);
}

TEST_CASE("a cancelled semaphore acquire takes no unit") {
  corio::loop lp;
  corio::semaphore s(0);
  auto main = [&]() -> task<void> {
    auto acquire = [&]() -> task<void> { co_await s.acquire(); };
    auto r = co_await corio::when_any(acquire(), corio::sleep_for(10ms));
    CHECK(r.index() == 1);
    CHECK_FALSE(s.has_waiters());
    s.release();
    CHECK(s.available() == 1);
  };
  lp.run(main());
}

TEST_CASE("event set wakes every waiter, in order, and later waits pass at once") {
  corio::loop lp;
  corio::event ev;
  std::vector<int> order;
  auto waiter = [&](int id) -> task<void> {
    co_await ev.wait();
    order.push_back(id);
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int id = 0; id < 4; ++id) g.spawn(waiter(id));
    co_await yield_times(2);
    CHECK(order.empty());
    CHECK_FALSE(ev.is_set());
    ev.set();
    ev.reset();  // the wake-ups already given stand
    co_await g.wait();
    CHECK(order == std::vector<int>{0, 1, 2, 3});
    ev.set();
    co_await ev.wait();  // set: no suspension
    CHECK(ev.is_set());
  };
  lp.run(main());
}

TEST_CASE("event set from another thread through loop::post wakes the waiter") {
  corio::loop lp;
  corio::event ev;
  auto main = [&]() -> task<int> {
    corio::loop& here = corio::loop::this_loop();
    std::thread other([&] { here.post([&] { ev.set(); }); });
    co_await ev.wait();
    other.join();
    co_return 7;
  };
  CHECK(lp.run(main()) == 7);
}

TEST_CASE("a cancelled event wait throws operation_cancelled") {
  corio::loop lp;
  corio::event ev;
  auto main = [&]() -> task<std::string> {
    corio::task_group g;
    std::string what;
    g.spawn([&]() -> task<void> {
      try {
        co_await ev.wait();
      } catch (const corio::operation_cancelled& e) {
        what = e.what();
      }
    });
    g.request_stop();
    co_await g.wait();
    co_return what;
  };
  CHECK(lp.run(main()) == "event wait: Operation canceled");
}

TEST_CASE("channel keeps order and suspends a producer while it is full") {
  corio::loop lp;
  corio::channel<int> ch(2);
  std::vector<std::string> log;
  auto producer = [&]() -> task<void> {
    for (int i = 0; i < 5; ++i) {
      co_await ch.send(i);
      log.push_back("sent " + std::to_string(i));
    }
    ch.close();
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    g.spawn(producer);
    // Two values buffered, the third send suspended: backpressure.
    CHECK(log == std::vector<std::string>{"sent 0", "sent 1"});
    CHECK(ch.full());
    auto v = co_await ch.receive();
    CHECK(v == 0);
    CHECK(ch.size() == 2);  // the waiting sender's value took the free slot at once
    co_await yield_times(1);  // the producer resumes, then blocks on 3
    CHECK(log.back() == "sent 2");
    CHECK(log.size() == 3);
    std::vector<int> rest;
    while (auto x = co_await ch.receive()) rest.push_back(*x);
    CHECK(rest == std::vector<int>{1, 2, 3, 4});
    CHECK(ch.closed());
    CHECK_FALSE((co_await ch.receive()).has_value());
    co_await g.wait();
  };
  lp.run(main());
  CHECK(log.size() == 5);
}

TEST_CASE("channel receivers wait in FIFO order and get values handed over directly") {
  corio::loop lp;
  corio::channel<std::string> ch(1);
  std::vector<std::string> got(3);
  auto receiver = [&](int id) -> task<void> {
    auto v = co_await ch.receive();
    got[static_cast<std::size_t>(id)] = v.value_or("<closed>");
  };
  auto main = [&]() -> task<void> {
    corio::task_group g;
    for (int id = 0; id < 3; ++id) g.spawn(receiver(id));
    co_await ch.send("a");
    CHECK(ch.try_send(std::string("b")));
    CHECK(ch.empty());  // both went straight to waiting receivers
    ch.close();         // receiver 2 ends with no value
    co_await g.wait();
  };
  lp.run(main());
  CHECK(got == std::vector<std::string>{"a", "b", "<closed>"});
}

TEST_CASE("channel close fails suspended and later sends but keeps buffered values") {
  corio::loop lp;
  corio::channel<int> ch(1);
  std::string blocked_error, late_error;
  auto main = [&]() -> task<void> {
    co_await ch.send(1);
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      try {
        co_await ch.send(2);
      } catch (const corio::channel_closed& e) {
        blocked_error = e.what();
      }
    });
    ch.close();
    co_await g.wait();
    try {
      co_await ch.send(3);
    } catch (const corio::channel_closed& e) {
      late_error = e.what();
    }
    int three = 3;
    CHECK_FALSE(ch.try_send(three));
    CHECK(ch.try_receive() == 1);
    CHECK_FALSE(ch.try_receive().has_value());
    CHECK_FALSE((co_await ch.receive()).has_value());
  };
  lp.run(main());
  CHECK(blocked_error == "channel send: the channel is closed");
  CHECK(late_error == "channel send: the channel is closed");
}

TEST_CASE("channel try_send leaves the value alone when full") {
  corio::channel<std::unique_ptr<int>> ch(1);
  CHECK(ch.try_send(std::make_unique<int>(1)));
  auto second = std::make_unique<int>(2);
  CHECK_FALSE(ch.try_send(std::move(second)));
  REQUIRE(second != nullptr);  // not moved from
  CHECK(*second == 2);
  CHECK(**ch.try_receive() == 1);
  CHECK(ch.capacity() == 1);
}

TEST_CASE("channel of capacity 0 is a rendezvous") {
  corio::loop lp;
  corio::channel<int> ch(0);
  std::vector<std::string> log;
  auto main = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await ch.send(42);
      log.push_back("sent");
    });
    CHECK(log.empty());  // no receiver yet
    CHECK(ch.try_receive() == 42);
    co_await g.wait();
    int x = 1;
    CHECK_FALSE(ch.try_send(x));  // nobody waits to receive
  };
  lp.run(main());
  CHECK(log == std::vector<std::string>{"sent"});
}

TEST_CASE("cancelled channel waits deliver nothing and lose nothing") {
  corio::loop lp;
  corio::channel<int> ch(1);
  auto main = [&]() -> task<void> {
    // A receive cancelled by a timeout: a later value stays in the channel.
    auto receive = [&]() -> task<std::optional<int>> { co_return co_await ch.receive(); };
    auto r = co_await corio::when_any(receive(), corio::sleep_for(10ms));
    CHECK(r.index() == 1);
    CHECK(ch.try_send(5));
    // A send cancelled while the buffer is full: its value is not delivered.
    auto send = [&]() -> task<void> { co_await ch.send(6); };
    auto s = co_await corio::when_any(send(), corio::sleep_for(10ms));
    CHECK(s.index() == 1);
    CHECK(ch.try_receive() == 5);
    CHECK_FALSE(ch.try_receive().has_value());
  };
  lp.run(main());
}

TEST_CASE("waiting outside a running loop throws std::logic_error") {
  corio::event ev;
  auto waits = [&]() -> task<void> { co_await ev.wait(); };
  auto t = waits();
  CHECK_THROWS_AS(corio::sync_wait(std::move(t)), std::logic_error);
}

TEST_CASE("primitives work on several loops run in turn on one thread") {
  corio::loop a, b;
  corio::event ea, eb;
  auto use = [](corio::event& e) -> task<int> {
    corio::task_group g;
    int woke = 0;
    g.spawn([&]() -> task<void> {
      co_await e.wait();
      ++woke;
    });
    e.set();
    co_await g.wait();
    e.reset();
    co_return woke;
  };
  CHECK(a.run(use(ea)) == 1);
  CHECK(b.run(use(eb)) == 1);
  CHECK(a.run(use(ea)) == 1);
  {
    corio::loop c;  // a loop that lives and dies in between
    CHECK(c.run(use(ea)) == 1);
  }
  corio::loop d;
  CHECK(d.run(use(eb)) == 1);
}

TEST_CASE("a contended wait with its token already stopped throws without queuing") {
  corio::loop lp;
  corio::mutex m;
  corio::semaphore s(0);
  int failures = 0;
  auto main = [&]() -> task<void> {
    auto held = co_await m.lock();
    corio::task_group g;
    g.request_stop();
    g.spawn([&]() -> task<void> {
      try {
        auto guard = co_await m.lock();
      } catch (const corio::operation_cancelled&) {
        ++failures;
      }
      try {
        co_await s.acquire();
      } catch (const corio::operation_cancelled&) {
        ++failures;
      }
    });
    CHECK(failures == 2);  // before any suspension: the waits ended at once
    CHECK_FALSE(s.has_waiters());
    co_await g.wait();
    held.unlock();
    CHECK_FALSE(m.is_locked());  // nobody was queued to receive it
  };
  lp.run(main());
}
