// The async primitives across threads: a plain thread and a coroutine on the main loop
// feed one channel, a coroutine on a second loop (its own thread) sums what arrives and
// sends the total back through a oneshot, and a broadcast gives every subscriber every
// announcement. tokio's mpsc, oneshot and broadcast, with coroutines on several loops.
#include <corio/runtime/broadcast.hpp>
#include <corio/runtime/channel.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/oneshot.hpp>

#include <cstdio>
#include <string>
#include <thread>

int main() {
  corio::channel<int> numbers(16);  // any thread, any loop; backpressure at 16
  auto [total_tx, total_rx] = corio::oneshot<long>();

  std::thread summer([&numbers, tx = std::move(total_tx)]() mutable {
    corio::loop lp;  // a second loop: its coroutine resumes on this thread
    lp.run([&]() -> corio::task<void> {
      long sum = 0;
      while (auto v = co_await numbers.receive()) sum += *v;  // ends after close()
      tx.send(sum);
    }());
  });
  std::thread plain([&numbers] {
    for (int i = 1; i <= 1000; ++i) numbers.blocking_send(i);  // blocks while full
  });
  corio::loop lp;
  lp.run([&]() -> corio::task<void> {
    for (int i = 1001; i <= 2000; ++i) co_await numbers.send(i);  // suspends while full
  }());
  plain.join();
  numbers.close();
  std::printf("sum of 1..2000 = %ld\n", total_rx.blocking_receive());
  summer.join();

  corio::broadcast<std::string> news(8);
  auto first = news.subscribe();
  auto second = news.subscribe();
  news.send("hello");
  news.send("goodbye");
  news.close();
  std::thread listener([&first] {
    while (auto v = first.blocking_receive()) std::printf("listener heard %s\n", v->c_str());
  });
  listener.join();
  while (auto v = second.try_receive()) std::printf("main heard %s\n", v->c_str());
}
