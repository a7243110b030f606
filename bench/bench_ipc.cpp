// ipc benchmarks: 8-byte messages between two threads through shared memory.
//   BM_raw_spsc_spin — the floor: a bare ring of fixed 8-byte slots, head and tail on
//                      separate cache lines, cached indices, index published every 64.
//   BM_spsc_ring_8B  — corio::spsc_ring (length-prefixed frames) in a shm_region, same
//                      batching (publish every 64, the consumer drains what it sees).
//   BM_spsc_ring_4KiB — the same ring carrying 4 KiB frames (bytes_per_second too).
// All three: the benchmark thread consumes, a second thread produces; the same backoff
// when full/empty.
//   BM_pingpong_spin  — round trips between two processes through shared memory, both
//                       spinning: the cross-core, cross-process latency floor.
//   BM_pingpong_sleep — the same, but each side sleeps in event_count::wait_until until
//                       the other notifies: the price of a futex sleep and wake-up.
#include <corio/runtime/detail/cpu_relax.hpp>
#include <corio/ipc/event_count.hpp>
#include <corio/ipc/shm_region.hpp>
#include <corio/ipc/spsc_ring.hpp>

#include "bench_ipc_support.hpp"

#include <benchmark/benchmark.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr std::uint64_t batch = 1024;   // messages per benchmark iteration
constexpr std::uint64_t publish_every = 64;

using corio::detail::cpu_relax;
using corio_bench::cpu_pin;
using corio_bench::pin_to_nth_cpu;

// What either side does when the ring is full or empty: a short pause first (the peer is
// usually a few hundred nanoseconds away), then give the core away (2 shared cores).
void backoff(unsigned& misses) {
  if (++misses % 64 != 0) {
    cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

struct raw_ring {
  static constexpr std::uint64_t slots = 8192;  // 64 KiB of 8-byte slots
  alignas(64) std::atomic<std::uint64_t> head{0};  // producer-owned
  alignas(64) std::atomic<std::uint64_t> tail{0};  // consumer-owned
  alignas(64) std::uint64_t data[slots];
};

void BM_raw_spsc_spin(benchmark::State& state) {
  auto region = corio::shm_region::create(sizeof(raw_ring), "bench-raw-ring");
  auto* ring = new (region.data()) raw_ring;
  const std::uint64_t total = static_cast<std::uint64_t>(state.max_iterations) * batch;
  cpu_pin pin(0);
  std::thread producer([ring, total] {
    pin_to_nth_cpu(1);
    std::uint64_t head = 0, cached_tail = 0;
    unsigned misses = 0;
    for (std::uint64_t i = 1; i <= total; ++i) {
      while (head - cached_tail == raw_ring::slots) {
        ring->head.store(head, std::memory_order_release);
        cached_tail = ring->tail.load(std::memory_order_acquire);
        if (head - cached_tail == raw_ring::slots)
          backoff(misses);
      }
      ring->data[head % raw_ring::slots] = i;
      ++head;
      if (head % publish_every == 0)
        ring->head.store(head, std::memory_order_release);
    }
    ring->head.store(head, std::memory_order_release);
  });
  std::uint64_t tail = 0, sum = 0;
  unsigned misses = 0;
  for (auto _ : state) {
    const std::uint64_t goal = tail + batch;
    while (tail < goal) {
      std::uint64_t head = ring->head.load(std::memory_order_acquire);
      if (head == tail) {
        backoff(misses);
        continue;
      }
      if (head > goal)
        head = goal;
      for (; tail < head; ++tail)
        sum += ring->data[tail % raw_ring::slots];
      ring->tail.store(tail, std::memory_order_release);
    }
  }
  producer.join();
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}

void BM_spsc_ring_8B(benchmark::State& state) {
  auto region = corio::shm_region::create(corio::spsc_ring::bytes_for(128 * 1024), "bench-spsc-ring");
  // 16-byte frames (4-byte length + 8 + padding): 128 KiB holds 8192 of them, like raw_ring.
  auto ring = corio::spsc_ring::format({region.data(), region.size()});
  const std::uint64_t total = static_cast<std::uint64_t>(state.max_iterations) * batch;
  cpu_pin pin(0);
  std::thread producer([&ring, total] {
    pin_to_nth_cpu(1);
    unsigned misses = 0;
    for (std::uint64_t i = 1; i <= total; ++i) {
      const auto bytes = std::as_bytes(std::span(&i, 1));
      while (!ring.try_write(bytes))
        backoff(misses);
      if (i % publish_every == 0)
        ring.publish();
    }
    ring.publish();
  });
  std::uint64_t sum = 0;
  unsigned misses = 0;
  for (auto _ : state) {
    std::uint64_t left = batch;
    while (left != 0) {
      std::size_t n = ring.drain(
          [&](std::span<const std::byte> f) {
            std::uint64_t v;
            std::memcpy(&v, f.data(), 8);
            sum += v;
          },
          left);
      if (n == 0)
        backoff(misses);
      left -= n;
    }
  }
  producer.join();
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}

void BM_spsc_ring_4KiB(benchmark::State& state) {
  constexpr std::size_t frame = 4096;
  constexpr std::uint64_t frames_per_iteration = 64;
  auto region = corio::spsc_ring::bytes_for(1 << 20);  // 1 MiB: ~250 frames in flight
  auto shm = corio::shm_region::create(region, "bench-spsc-ring-4k");
  auto ring = corio::spsc_ring::format({shm.data(), shm.size()});
  const std::uint64_t total = static_cast<std::uint64_t>(state.max_iterations) * frames_per_iteration;
  cpu_pin pin(0);
  std::thread producer([&ring, total] {
    pin_to_nth_cpu(1);
    std::vector<std::byte> payload(frame, std::byte{0x5A});
    unsigned misses = 0;
    for (std::uint64_t i = 1; i <= total; ++i) {
      std::memcpy(payload.data(), &i, sizeof i);
      while (!ring.try_send(payload))  // each 4 KiB frame published at once
        backoff(misses);
    }
  });
  std::uint64_t sum = 0;
  unsigned misses = 0;
  std::vector<std::byte> sink(frame);
  for (auto _ : state) {
    std::uint64_t left = frames_per_iteration;
    while (left != 0) {
      const std::size_t n = ring.drain(
          [&](std::span<const std::byte> f) {
            std::memcpy(sink.data(), f.data(), f.size());  // a consumer that keeps the bytes
            std::uint64_t v;
            std::memcpy(&v, sink.data(), 8);
            sum += v;
          },
          left);
      if (n == 0) backoff(misses);
      left -= n;
    }
  }
  producer.join();
  benchmark::DoNotOptimize(sum);
  const auto frames = static_cast<std::int64_t>(state.iterations() * frames_per_iteration);
  state.SetItemsProcessed(frames);
  state.SetBytesProcessed(frames * static_cast<std::int64_t>(frame));
}

// Two processes take turns: the parent writes ping = i, the child answers pong = i.
struct pingpong_block {
  alignas(64) std::uint64_t ping;
  alignas(64) std::uint64_t pong;
  alignas(64) corio::event_count_state ping_ev;
  alignas(64) corio::event_count_state pong_ev;
};
constexpr std::uint64_t pingpong_stop = ~std::uint64_t{0};

std::uint64_t load_acquire(const std::uint64_t& v) {
  return std::atomic_ref(const_cast<std::uint64_t&>(v)).load(std::memory_order_acquire);
}
void store_release(std::uint64_t& v, std::uint64_t x) { std::atomic_ref(v).store(x, std::memory_order_release); }

template <bool Sleep>
void BM_pingpong(benchmark::State& state) {
  auto shm = corio::shm_region::create(sizeof(pingpong_block), "bench-pingpong");
  auto* b = new (shm.data()) pingpong_block{};
  const pid_t child = ::fork();  // before pinning: the child would inherit a one-CPU mask
  if (child < 0) {
    state.SkipWithError("fork failed");
    return;
  }
  if (child == 0) {
    pin_to_nth_cpu(1);
    corio::event_count ping_ev(b->ping_ev), pong_ev(b->pong_ev);
    std::uint64_t seen = 0;
    for (;;) {
      if constexpr (Sleep) {
        ping_ev.wait_until([&] { return load_acquire(b->ping) != seen; });
      } else {
        while (load_acquire(b->ping) == seen) cpu_relax();
      }
      seen = load_acquire(b->ping);
      if (seen == pingpong_stop) ::_exit(0);
      store_release(b->pong, seen);
      if constexpr (Sleep) pong_ev.notify_all();
    }
  }
  cpu_pin pin(0);
  corio::event_count ping_ev(b->ping_ev), pong_ev(b->pong_ev);
  std::uint64_t i = 0;
  for (auto _ : state) {
    ++i;
    store_release(b->ping, i);
    if constexpr (Sleep) {
      ping_ev.notify_all();
      pong_ev.wait_until([&] { return load_acquire(b->pong) == i; });
    } else {
      while (load_acquire(b->pong) != i) cpu_relax();
    }
  }
  store_release(b->ping, pingpong_stop);
  ping_ev.notify_all();
  int status = 0;
  ::waitpid(child, &status, 0);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_pingpong_spin(benchmark::State& state) { BM_pingpong<false>(state); }
void BM_pingpong_sleep(benchmark::State& state) { BM_pingpong<true>(state); }

}  // namespace

BENCHMARK(BM_raw_spsc_spin)->UseRealTime();
BENCHMARK(BM_spsc_ring_8B)->UseRealTime();
BENCHMARK(BM_spsc_ring_4KiB)->UseRealTime();
BENCHMARK(BM_pingpong_spin)->UseRealTime();
BENCHMARK(BM_pingpong_sleep)->UseRealTime();

BENCHMARK_MAIN();
