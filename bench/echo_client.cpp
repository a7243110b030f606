// echo_client: corio's own load generator for the echo benchmark. Opens CONNECTIONS TCP
// connections to ADDRESS; each sends a SIZE-byte message and waits for the whole echo,
// again and again, for SECONDS. Every echoed byte is checked. Prints one JSON object,
// {"echo_LABEL": {"items_per_second": round trips per second, ...}}, the format of the
// peers' figures that bench/summarize.py reads.
//
// Usage: echo_client LABEL ADDRESS [CONNECTIONS=64] [SIZE=64] [SECONDS=3]
#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using steady = std::chrono::steady_clock;

struct totals {
  long long round_trips = 0;
  long long mismatches = 0;
};

corio::task<void> connection(corio::address to, std::size_t size, steady::time_point end, totals& t,
                             int id) {
  corio::tcp_stream s = co_await corio::tcp_stream::connect(to);
  std::vector<std::byte> out(size), in(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((i + static_cast<std::size_t>(id)) & 0xff);
  while (steady::now() < end) {
    co_await s.write_all(out);
    co_await s.read_exact(in);
    if (std::memcmp(in.data(), out.data(), size) != 0) ++t.mismatches;
    ++t.round_trips;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s LABEL ADDRESS [CONNECTIONS] [SIZE] [SECONDS]\n", argv[0]);
    return 2;
  }
  const std::string label = argv[1];
  const corio::address to = corio::address::parse(argv[2]);
  const int connections = argc > 3 ? std::atoi(argv[3]) : 64;
  const auto size = static_cast<std::size_t>(argc > 4 ? std::atoi(argv[4]) : 64);
  const double seconds = argc > 5 ? std::atof(argv[5]) : 3.0;

  corio::loop lp;
  totals t;
  const auto start = steady::now();
  const auto end = start + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
  auto main_task = [&]() -> corio::task<void> {
    corio::task_group g;
    for (int i = 0; i < connections; ++i) g.spawn(connection(to, size, end, t, i));
    co_await g.wait();
  };
  try {
    lp.run(main_task());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_client %s: %s\n", label.c_str(), e.what());
    return 1;
  }
  const double elapsed = std::chrono::duration<double>(steady::now() - start).count();
  std::printf(
      "{\"echo_%s\": {\"items_per_second\": %.1f, \"round_trips\": %lld, \"connections\": %d, "
      "\"message_bytes\": %zu, \"seconds\": %.3f, \"mismatches\": %lld}}\n",
      label.c_str(), static_cast<double>(t.round_trips) / elapsed, t.round_trips, connections, size,
      elapsed, t.mismatches);
  return t.mismatches == 0 ? 0 : 1;
}
