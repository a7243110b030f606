// The classic coroutine producer/consumer: no threads, no locks. The producer hands each
// item to the consumer with send(), the consumer answers through its next co_yield, and
// the producer closes it when done (Python: c.send(n) ... c.close()).
#include <corio/coro/generator.hpp>

#include <cstdio>
#include <optional>
#include <string>

corio::generator<std::string, int> consumer() {
  std::string reply;
  for (;;) {
    std::optional<int> n = co_yield reply;
    if (!n) co_return;
    std::printf("[CONSUMER] Consuming %d...\n", *n);
    reply = "200 OK";
  }
}

void produce(corio::generator<std::string, int>& c) {
  c.next();  // Python: c.send(None), run up to the first yield
  for (int n = 1; n <= 5; ++n) {
    std::printf("[PRODUCER] Producing %d...\n", n);
    std::optional<std::string> r = c.send(n);
    std::printf("[PRODUCER] Consumer return: %s\n", r->c_str());
  }
  c.close();
}

int main() {
  auto c = consumer();
  produce(c);
}
