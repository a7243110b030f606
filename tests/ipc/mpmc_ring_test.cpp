// mpmc_ring: sizes, empty/full, FIFO order, wraparound, stale hints, oversize and
// small-buffer errors, attach checks, claims of dead processes (producer, consumer, zombie,
// reused pid, racing recoverers) and of live ones, many threads and 4 + 4 processes with
// every message delivered exactly once (checksums).
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"

#include <corio/ipc/mpmc_ring.hpp>
#include <corio/ipc/shm_region.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using corio::mpmc_ring;
using corio_test::aligned_block;
using corio_test::bytes_of;
using corio_test::exit_status;
using corio_test::fork_child;
using corio_test::raw_pipe;
using side = corio::mpmc_ring::side;

namespace {

// Waits until pid has died (killed or exited) without reaping it: it stays a zombie.
void wait_dead_unreaped(pid_t pid) {
  siginfo_t info{};
  REQUIRE(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) == 0);
}

// Reaps pid and checks that SIGKILL ended it.
void reap_killed(pid_t pid) {
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
}

corio::detail::mpmc_slot* slot_in(std::span<std::byte> memory, std::size_t stride, std::size_t index) {
  return reinterpret_cast<corio::detail::mpmc_slot*>(memory.data() + mpmc_ring::header_bytes + index * stride);
}


std::string pop_string(mpmc_ring& r) {
  std::string out = "<none>";
  r.try_pop_with([&](std::span<const std::byte> m) { out.assign(reinterpret_cast<const char*>(m.data()), m.size()); });
  return out;
}

// A message that proves its own integrity: producer id, sequence number, a length that
// varies with the sequence, filler bytes derived from both, and a checksum over it all.
struct message_codec {
  static std::size_t make(std::uint32_t producer, std::uint32_t seq, std::byte* out, std::size_t max) {
    const std::size_t filler = (seq * 7u + producer) % (max - 16 + 1);
    std::memcpy(out, &producer, 4);
    std::memcpy(out + 4, &seq, 4);
    std::uint64_t sum = producer * 1'000'003ull + seq;
    for (std::size_t i = 0; i < filler; ++i) {
      const auto b = static_cast<std::uint8_t>((producer * 31 + seq + i) & 0xFF);
      out[16 + i] = std::byte{b};
      sum = sum * 131 + b;
    }
    std::memcpy(out + 8, &sum, 8);
    return 16 + filler;
  }
  // The (producer, seq) pair, after checking length and checksum.
  static std::pair<std::uint32_t, std::uint32_t> check(std::span<const std::byte> m, std::size_t max) {
    if (m.size() < 16)
      throw std::runtime_error("short message");
    std::uint32_t producer, seq;
    std::uint64_t sum;
    std::memcpy(&producer, m.data(), 4);
    std::memcpy(&seq, m.data() + 4, 4);
    std::memcpy(&sum, m.data() + 8, 8);
    if (m.size() != 16 + (seq * 7u + producer) % (max - 16 + 1))
      throw std::runtime_error("wrong length");
    std::uint64_t want = producer * 1'000'003ull + seq;
    for (std::size_t i = 16; i < m.size(); ++i) want = want * 131 + std::to_integer<std::uint8_t>(m[i]);
    if (want != sum)
      throw std::runtime_error("checksum mismatch");
    return {producer, seq};
  }
};

}  // namespace

TEST_CASE("bytes_for rounds slots up to a power of two and each slot up to 8 bytes") {
  CHECK(mpmc_ring::stride_for(0) == 8);
  CHECK(mpmc_ring::stride_for(8) == 16);
  CHECK(mpmc_ring::stride_for(9) == 24);
  CHECK(mpmc_ring::stride_for(256) == 264);
  CHECK(mpmc_ring::bytes_for(1, 8) == 192 + 2 * 16);
  CHECK(mpmc_ring::bytes_for(3, 8) == 192 + 4 * 16);
  CHECK(mpmc_ring::bytes_for(1024, 256) == 192 + 1024 * 264);
  CHECK_THROWS_AS((void)mpmc_ring::bytes_for(std::size_t{1} << 31, 8), std::invalid_argument);
CHECK_THROWS_AS((void)mpmc_ring::bytes_for(std::size_t{1} << 50, 8), std::invalid_argument);
}

TEST_CASE("a new ring is empty and pops nothing") {
  aligned_block m(mpmc_ring::bytes_for(4, 32));
  auto r = mpmc_ring::format(m.span(), 4, 32);
  CHECK(r.capacity() == 4);
  CHECK(r.max_payload() == 32);
  CHECK(r.size() == 0);
  CHECK(r.empty());
  CHECK(pop_string(r) == "<none>");
  std::array<std::byte, 32> buf{};
  CHECK_FALSE(r.try_pop(buf).has_value());
}

TEST_CASE("one thread gets its messages back in order, including empty ones") {
  aligned_block m(mpmc_ring::bytes_for(8, 32));
  auto r = mpmc_ring::format(m.span(), 8, 32);
  CHECK(r.try_push(bytes_of("first")));
  CHECK(r.try_push(bytes_of("")));
  CHECK(r.try_push(bytes_of("third message")));
  CHECK(r.size() == 3);
  std::array<std::byte, 32> buf{};
  auto n = r.try_pop(buf);
  REQUIRE(n.has_value());
  CHECK(std::string(reinterpret_cast<const char*>(buf.data()), *n) == "first");
  n = r.try_pop(buf);
  REQUIRE(n.has_value());
  CHECK(*n == 0);
  CHECK(pop_string(r) == "third message");
  CHECK(pop_string(r) == "<none>");
  CHECK(r.size() == 0);
}

TEST_CASE("a full ring refuses a push and accepts it again after a pop") {
  aligned_block m(mpmc_ring::bytes_for(4, 16));
  auto r = mpmc_ring::format(m.span(), 4, 16);
  for (int i = 0; i < 4; ++i) CHECK(r.try_push(bytes_of("m" + std::to_string(i))));
  CHECK(r.size() == 4);
  CHECK_FALSE(r.try_push(bytes_of("overflow")));
  CHECK(pop_string(r) == "m0");
  CHECK(r.try_push(bytes_of("m4")));
  CHECK_FALSE(r.try_push(bytes_of("overflow")));
  for (int i = 1; i <= 4; ++i) CHECK(pop_string(r) == "m" + std::to_string(i));
  CHECK(pop_string(r) == "<none>");
}

TEST_CASE("positions wrap around the slots many times with order and contents intact") {
  aligned_block m(mpmc_ring::bytes_for(4, 24));
  auto r = mpmc_ring::format(m.span(), 4, 24);
  int next_pop = 0;
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(r.try_push(bytes_of("value-" + std::to_string(i))));
    if (i % 3 == 2)  // 3 is prime to 4: batches start at every slot offset in turn
      for (int k = 0; k < 3; ++k) CHECK(pop_string(r) == "value-" + std::to_string(next_pop++));
  }
  while (next_pop < 1000) CHECK(pop_string(r) == "value-" + std::to_string(next_pop++));
  CHECK(pop_string(r) == "<none>");
}

TEST_CASE("a message larger than max_payload throws length_error naming both sizes and claims nothing") {
  aligned_block m(mpmc_ring::bytes_for(4, 16));
  auto r = mpmc_ring::format(m.span(), 4, 16);
  CHECK(r.try_push(bytes_of(std::string(16, 'x'))));
  const std::string big(17, 'y');
  CHECK_THROWS_WITH_AS(r.try_push(bytes_of(big)),
                       "corio::mpmc_ring: a 17-byte message does not fit a slot (largest message: 16 bytes); "
                       "format the ring with larger slots, or keep larger messages outside it (try_push_external)",
                       std::length_error);
  CHECK(r.size() == 1);
  CHECK(pop_string(r) == std::string(16, 'x'));
  CHECK(pop_string(r) == "<none>");
}

TEST_CASE("try_pop refuses a buffer smaller than max_payload instead of truncating") {
  aligned_block m(mpmc_ring::bytes_for(4, 16));
  auto r = mpmc_ring::format(m.span(), 4, 16);
  CHECK(r.try_push(bytes_of("abc")));
  std::array<std::byte, 8> small{};
  CHECK_THROWS_WITH_AS((void)r.try_pop(small),
                       "corio::mpmc_ring::try_pop: a 8-byte buffer cannot hold every message (need max_payload = 16 "
                       "bytes)",
                       std::invalid_argument);
  CHECK(pop_string(r) == "abc");
}

TEST_CASE("a callback that throws in try_pop_with still consumes the message and frees the slot") {
  aligned_block m(mpmc_ring::bytes_for(2, 16));
  auto r = mpmc_ring::format(m.span(), 2, 16);
  CHECK(r.try_push(bytes_of("bad")));
  CHECK(r.try_push(bytes_of("good")));
  CHECK_THROWS_AS(r.try_pop_with([](auto) { throw std::runtime_error("decode failed"); }), std::runtime_error);
  CHECK(r.try_push(bytes_of("again")));
  CHECK(pop_string(r) == "good");
  CHECK(pop_string(r) == "again");
}

TEST_CASE("format and attach reject bad memory with invalid_argument") {
  aligned_block m(mpmc_ring::bytes_for(4, 16));
  CHECK_THROWS_AS((void)mpmc_ring::format(m.span().subspan(0, 100), 4, 16), std::invalid_argument);
  CHECK_THROWS_AS((void)mpmc_ring::format(m.span().subspan(8), 2, 16), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)mpmc_ring::attach(m.span()), "corio::mpmc_ring::attach: the memory holds no formatted ring",
                       std::invalid_argument);
  auto r = mpmc_ring::format(m.span(), 4, 16);
  CHECK(r.try_push(bytes_of("shared")));
  auto other = mpmc_ring::attach(m.span());
  CHECK(other.capacity() == 4);
  CHECK(other.max_payload() == 16);
  CHECK(pop_string(other) == "shared");
  CHECK_THROWS_AS((void)mpmc_ring::attach(m.span().subspan(0, 200)), std::invalid_argument);
}

TEST_CASE("a corrupt length in shared memory throws runtime_error instead of reading out of bounds") {
  aligned_block m(mpmc_ring::bytes_for(2, 16));
  auto r = mpmc_ring::format(m.span(), 2, 16);
  CHECK(r.try_push(bytes_of("abc")));
  // Published at position 0 with length 1000.
  slot_in(m.span(), mpmc_ring::stride_for(16), 0)->state = corio::detail::mpmc_state(1, 1000);
  CHECK_THROWS_WITH_AS(r.try_pop_with([](auto) { FAIL("must not be called"); }),
                       "corio::mpmc_ring: corrupt message length 1000 at position 0 (largest message: 16 bytes; the "
                       "memory is not an mpmc_ring written by its producers)",
                       std::runtime_error);
  CHECK(r.try_push(bytes_of("next")));  // the slot was freed
  CHECK(pop_string(r) == "next");
}

TEST_CASE("a hint that stepped back laps behind still leads to the first free slot, in order") {
  aligned_block m(mpmc_ring::bytes_for(4, 16));
  auto r = mpmc_ring::format(m.span(), 4, 16);
  for (int i = 0; i < 41; ++i) {  // 10 laps and a bit: positions 41 (producers), 40 (consumers)
    REQUIRE(r.try_push(bytes_of("v" + std::to_string(i))));
    if (i < 40)
      REQUIRE(pop_string(r) == "v" + std::to_string(i));
  }
  // A claimer descheduled between its claim and its hint store writes an old position
  // late: both hints step back, here by nine laps.
  auto* h = reinterpret_cast<corio::detail::mpmc_ring_header*>(m.span().data());
  corio::detail::store_relaxed(h->enqueue_pos, 3);
  corio::detail::store_relaxed(h->dequeue_pos, 2);
  CHECK(r.size() == 1);  // found by walking from the hints, not read off them
  CHECK(r.try_push(bytes_of("v41")));
  CHECK(r.try_push(bytes_of("v42")));
  CHECK(r.try_push(bytes_of("v43")));
  CHECK_FALSE(r.try_push(bytes_of("full")));  // v40 .. v43 fill the 4 slots: nothing overwritten
  CHECK(r.size() == 4);
  for (int i = 40; i < 44; ++i) CHECK(pop_string(r) == "v" + std::to_string(i));
  CHECK(pop_string(r) == "<none>");
  corio::detail::store_relaxed(h->dequeue_pos, 42);  // a consumer's late store: two behind
  CHECK(r.size() == 0);
  CHECK(r.empty());
  CHECK(r.lost() == 0);
}

TEST_CASE("a producer SIGKILLed between claim and publish exposes nothing, and once recovered its "
          "position is skipped") {
  auto region = corio::shm_region::create(mpmc_ring::bytes_for(4, 16), "mpmc-dead-producer");
  const std::span<std::byte> memory{region.data(), region.size()};
  auto r = mpmc_ring::format(memory, 4, 16);
  CHECK(r.try_push(bytes_of("before")));
  // The child claims position 1 as try_push does, writes half a message, and is killed
  // before it stores the hint or publishes: the worst instant.
  const pid_t child = fork_child([&] {
    auto* slot = slot_in(memory, mpmc_ring::stride_for(16), 1);
    std::uint64_t expected = corio::detail::mpmc_state(1, 0);
    if (!corio::detail::compare_exchange_relaxed(slot->state, expected,
                                                 corio::detail::mpmc_state(1, corio::detail::mpmc_claim_mark())))
      return 1;
    std::memcpy(slot + 1, "torn", 4);
    ::kill(::getpid(), SIGKILL);
    return 2;
  });
  wait_dead_unreaped(child);  // a zombie: dead, though its pid still answers kill(pid, 0)
  CHECK(r.try_push(bytes_of("after")));  // position 2: producers step over the claim
  CHECK(pop_string(r) == "before");
  CHECK(pop_string(r) == "<none>");  // position 1 is never published: no torn read
  const auto claim = r.blocking_claim(side::consumers);
  REQUIRE(claim.has_value());
  CHECK(claim->slot == 1);
  CHECK_FALSE(r.blocking_claim(side::producers).has_value());  // producers have room
  CHECK(r.recover(*claim));
  CHECK_FALSE(r.recover(*claim));  // the claim is gone: nothing to free twice
  CHECK(r.lost() == 1);
  CHECK(pop_string(r) == "after");  // the hole at position 1 is stepped over
  CHECK(pop_string(r) == "<none>");
  for (int i = 0; i < 10; ++i) {  // every slot, the recovered one included, keeps working
    CHECK(r.try_push(bytes_of("x" + std::to_string(i))));
    CHECK(pop_string(r) == "x" + std::to_string(i));
  }
  CHECK(r.size() == 0);
  CHECK(r.lost() == 1);
  reap_killed(child);
}

TEST_CASE("a consumer SIGKILLed inside its claim gives its slot back to producers once recovered, its message lost") {
  auto region = corio::shm_region::create(mpmc_ring::bytes_for(2, 16), "mpmc-dead-consumer");
  auto r = mpmc_ring::format({region.data(), region.size()}, 2, 16);
  CHECK(r.try_push(bytes_of("a")));
  CHECK(r.try_push(bytes_of("b")));
  const pid_t child = fork_child([&] {
    r.try_pop_with([](std::span<const std::byte>) { ::kill(::getpid(), SIGKILL); });
    return 1;
  });
  reap_killed(child);  // reaped: its pid has no process at all now
  CHECK_FALSE(r.try_push(bytes_of("c")));  // full: slot 0 is still claimed
  CHECK_FALSE(r.blocking_claim(side::consumers).has_value());  // "b" is there for consumers
  const auto claim = r.blocking_claim(side::producers);
  REQUIRE(claim.has_value());
  CHECK(claim->slot == 0);
  CHECK(r.recover(*claim));
  CHECK(r.lost() == 1);
  CHECK(r.try_push(bytes_of("c")));
  CHECK_FALSE(r.try_push(bytes_of("d")));
  CHECK(pop_string(r) == "b");
  CHECK(pop_string(r) == "c");
  CHECK(pop_string(r) == "<none>");
}

TEST_CASE("a claim of a live process is never recovered, even while it is stopped, and ends with its owner") {
  auto region = corio::shm_region::create(mpmc_ring::bytes_for(2, 16), "mpmc-live-consumer");
  auto r = mpmc_ring::format({region.data(), region.size()}, 2, 16);
  CHECK(r.try_push(bytes_of("slow")));
  CHECK(r.try_push(bytes_of("next")));
  raw_pipe go, inside;
  const pid_t child = fork_child([&] {
    std::string got;
    r.try_pop_with([&](std::span<const std::byte> m) {
      got.assign(reinterpret_cast<const char*>(m.data()), m.size());
      char c = 'i';
      (void)!::write(inside.write_end(), &c, 1);
      (void)!::read(go.read_end(), &c, 1);  // hold the claim until the parent says go
    });
    return got == "slow" ? 0 : 1;
  });
  char c = 0;
  REQUIRE(::read(inside.read_end(), &c, 1) == 1);
  const auto claim = r.blocking_claim(side::producers);
  REQUIRE(claim.has_value());
  CHECK_FALSE(r.recover(*claim));
  REQUIRE(::kill(child, SIGSTOP) == 0);
  siginfo_t info{};
  REQUIRE(::waitid(P_PID, static_cast<id_t>(child), &info, WSTOPPED) == 0);
  CHECK_FALSE(r.recover(*claim));  // stopped is slow, not dead
  CHECK(r.recover_all() == 0);
  REQUIRE(::kill(child, SIGCONT) == 0);
  REQUIRE(::write(go.write_end(), "g", 1) == 1);
  CHECK(exit_status(child) == 0);
  CHECK_FALSE(r.recover(*claim));  // released by its owner: the word moved on
  CHECK(r.lost() == 0);
  CHECK(r.try_push(bytes_of("room")));
  CHECK(pop_string(r) == "next");
  CHECK(pop_string(r) == "room");
}

TEST_CASE("a claim mark whose pid now names a process with another start time counts as dead") {
  aligned_block m(mpmc_ring::bytes_for(4, 16));
  auto r = mpmc_ring::format(m.span(), 4, 16);
  const std::uint32_t mine = corio::detail::mpmc_claim_mark();
  REQUIRE((mine & corio::detail::mpmc_claim_bit) != 0);
  REQUIRE((mine & 0x3f'ffffu) == static_cast<std::uint32_t>(::getpid()));
  const std::uint32_t token = mine >> 22 & 0x1ffu;
  REQUIRE(token != 0);  // /proc/self/stat gave this process a start-time token
  const std::uint32_t reused = (mine & ~(0x1ffu << 22)) | ((token % 511 + 1) << 22);  // same pid, other token
  const std::uint32_t unknown = mine & ~(0x1ffu << 22);                               // token 0: cannot tell
  auto* slot = slot_in(m.span(), mpmc_ring::stride_for(16), 0);
  for (const auto& [mark, dead] : {std::pair{mine, false}, std::pair{unknown, false}, std::pair{reused, true}}) {
    CAPTURE(mark);
    slot->state = corio::detail::mpmc_state(0, mark);  // a producer's claim of position 0
    const auto claim = r.blocking_claim(side::consumers);
    REQUIRE(claim.has_value());
    CHECK(r.recover(*claim) == dead);
  }
  CHECK(r.lost() == 1);
  CHECK(r.try_push(bytes_of("one")));  // position 1: the hole at 0 is published
  CHECK(pop_string(r) == "one");
}

TEST_CASE("of 8 threads recovering one dead claim at once, exactly one frees it and it is counted once") {
  for (int round = 0; round < 20; ++round) {
    aligned_block m(mpmc_ring::bytes_for(2, 16));
    auto r = mpmc_ring::format(m.span(), 2, 16);
    const pid_t child = fork_child([] { return 0; });
    CHECK(exit_status(child) == 0);  // a pid with no process behind it
    CHECK(r.try_push(bytes_of("m")));
    CHECK(r.try_push(bytes_of("m2")));  // full: producers wait for slot 0
    slot_in(m.span(), mpmc_ring::stride_for(16), 0)->state =
        corio::detail::mpmc_state(1, corio::detail::mpmc_claim_bit | static_cast<std::uint32_t>(child));
    std::atomic<int> freed{0};
    std::atomic<bool> start{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        while (!start.load()) std::this_thread::yield();
        if (t % 2 == 0) {
          const auto claim = r.blocking_claim(side::producers);
          if (!claim || !r.recover(*claim))
            return;
          freed.fetch_add(1);
        } else {
          freed.fetch_add(static_cast<int>(r.recover_all()));
        }
      });
    start.store(true);
    for (auto& t : threads) t.join();
    CHECK(freed.load() == 1);
    CHECK(r.lost() == 1);
    CHECK(r.try_push(bytes_of("n")));
    CHECK_FALSE(r.try_push(bytes_of("o")));
    CHECK(pop_string(r) == "m2");
    CHECK(pop_string(r) == "n");
  }
}

TEST_CASE("8 threads, 4 producers and 4 consumers, deliver every message exactly once with intact bytes") {
  constexpr std::uint32_t producers = 4;
  constexpr std::uint32_t per_producer = 50'000;
  constexpr std::size_t max = 64;
  aligned_block m(mpmc_ring::bytes_for(64, max));
  auto r = mpmc_ring::format(m.span(), 64, max);
  std::vector<std::atomic<std::uint8_t>> seen(producers * per_producer);
  std::atomic<std::uint64_t> consumed{0};
  std::atomic<std::uint64_t> errors{0};
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      std::array<std::byte, max> buf{};
      for (std::uint32_t s = 0; s < per_producer; ++s) {
        const std::size_t n = message_codec::make(p, s, buf.data(), max);
        while (!r.try_push({buf.data(), n})) std::this_thread::yield();
      }
    });
  }
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([&] {
      std::array<std::uint32_t, producers> last{};
      last.fill(UINT32_MAX);
      while (consumed.load(std::memory_order_relaxed) < producers * per_producer) {
        bool got = r.try_pop_with([&](std::span<const std::byte> msg) {
          try {
            auto [p, s] = message_codec::check(msg, max);
            // Per producer, one consumer sees increasing sequence numbers (FIFO).
            if (last[p] != UINT32_MAX && s <= last[p])
              errors.fetch_add(1);
            last[p] = s;
            seen[p * per_producer + s].fetch_add(1);
          } catch (const std::exception&) {
            errors.fetch_add(1);
          }
        });
        if (got)
          consumed.fetch_add(1, std::memory_order_relaxed);
        else
          std::this_thread::yield();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(errors.load() == 0);
  CHECK(consumed.load() == producers * per_producer);
  std::size_t once = 0;
  for (auto& s : seen) once += s.load() == 1;
  CHECK(once == producers * per_producer);
  CHECK(r.size() == 0);
}

TEST_CASE("4 producer and 4 consumer processes deliver every message exactly once with intact bytes") {
  constexpr std::uint32_t producers = 4;
  constexpr std::uint32_t consumers = 4;
  constexpr std::uint32_t per_producer = 100'000;
  constexpr std::uint64_t total = std::uint64_t{producers} * per_producer;
  constexpr std::size_t max = 48;
  auto ring_mem = corio::shm_region::create(mpmc_ring::bytes_for(256, max), "mpmc-processes");
  // Per message: how many times it was consumed; then the consumed total and error count.
  auto book = corio::shm_region::create(total + 2 * sizeof(std::uint64_t) + 64, "mpmc-processes-book");
  auto* counts = reinterpret_cast<std::uint64_t*>(book.data());
  auto* seen = reinterpret_cast<std::uint8_t*>(book.data() + 64);
  auto r = mpmc_ring::format({ring_mem.data(), ring_mem.size()}, 256, max);

  std::vector<pid_t> children;
  for (std::uint32_t p = 0; p < producers; ++p) {
    children.push_back(fork_child([&] {
      std::array<std::byte, max> buf{};
      for (std::uint32_t s = 0; s < per_producer; ++s) {
        const std::size_t n = message_codec::make(p, s, buf.data(), max);
        while (!r.try_push({buf.data(), n})) ::sched_yield();
      }
      return 0;
    }));
  }
  for (std::uint32_t c = 0; c < consumers; ++c) {
    children.push_back(fork_child([&] {
      std::atomic_ref<std::uint64_t> consumed(counts[0]);
      std::atomic_ref<std::uint64_t> errors(counts[1]);
      while (consumed.load(std::memory_order_relaxed) < total) {
        const bool got = r.try_pop_with([&](std::span<const std::byte> msg) {
          try {
            auto [p, s] = message_codec::check(msg, max);
            if (p >= producers || s >= per_producer)
              throw std::runtime_error("out of range");
            std::atomic_ref<std::uint8_t>(seen[std::uint64_t{p} * per_producer + s]).fetch_add(1);
          } catch (const std::exception&) {
            errors.fetch_add(1);
          }
        });
        if (got)
          consumed.fetch_add(1, std::memory_order_relaxed);
        else
          ::sched_yield();
      }
      return 0;
    }));
  }
  for (pid_t pid : children) CHECK(exit_status(pid) == 0);
  CHECK(counts[0] == total);
  CHECK(counts[1] == 0);
  std::uint64_t once = 0;
  for (std::uint64_t i = 0; i < total; ++i) once += seen[i] == 1;
  CHECK(once == total);
  CHECK(r.size() == 0);
}

TEST_CASE("external messages: the fill and the consumer's callback see the same slot, in order with inline ones") {
  aligned_block memory(mpmc_ring::bytes_for(4, 16));
  auto r = mpmc_ring::format(memory.span(), 4, 16);
  std::array<std::string, 4> storage;  // what the layer above keeps per slot
  CHECK(r.try_push(bytes_of("small")));
  CHECK(r.try_push_external(5000, [&](std::uint64_t slot) { storage.at(slot) = "large in slot " + std::to_string(slot); }));
  CHECK(r.size() == 2);
  std::vector<std::string> got;
  const auto pop = [&] {
    return r.try_pop_with([&](std::span<const std::byte> m) { got.emplace_back(reinterpret_cast<const char*>(m.data()), m.size()); },
                          [&](std::uint64_t slot, std::uint64_t length) {
                            got.push_back(storage.at(slot) + ", " + std::to_string(length) + " bytes");
                          });
  };
  CHECK(pop());
  CHECK(pop());
  CHECK_FALSE(pop());
  CHECK(got == std::vector<std::string>{"small", "large in slot 1, 5000 bytes"});
  // The one-callback pop refuses an external message (and consumes it).
  CHECK(r.try_push_external(1, [](std::uint64_t) {}));
  CHECK_THROWS_AS(r.try_pop_with([](std::span<const std::byte>) { FAIL("must not be called"); }), std::runtime_error);
  CHECK(r.size() == 0);
  // A slot too small for the length refuses external messages before claiming anything.
  aligned_block tiny(mpmc_ring::bytes_for(2, 4));
  auto t = mpmc_ring::format(tiny.span(), 2, 4);
  CHECK_THROWS_AS(t.try_push_external(9, [](std::uint64_t) { FAIL("must not be called"); }), std::invalid_argument);
  CHECK(t.size() == 0);
}

TEST_CASE("an external fill that throws leaves a hole that consumers pass, not counted lost") {
  aligned_block memory(mpmc_ring::bytes_for(2, 16));
  auto r = mpmc_ring::format(memory.span(), 2, 16);
  CHECK_THROWS_WITH_AS(r.try_push_external(10, [](std::uint64_t) { throw std::runtime_error("no memory"); }),
                       "no memory", std::runtime_error);
  CHECK(r.try_push(bytes_of("next")));
  CHECK(pop_string(r) == "next");
  CHECK(pop_string(r) == "<none>");
  CHECK(r.lost() == 0);
  for (int i = 0; i < 4; ++i) {  // both slots keep working
    CHECK(r.try_push(bytes_of("x" + std::to_string(i))));
    CHECK(pop_string(r) == "x" + std::to_string(i));
  }
}

TEST_CASE("recovery runs the cleanup on a dead claimer's slot while it holds the slot, before freeing it") {
  auto region = corio::shm_region::create(mpmc_ring::bytes_for(2, 16), "mpmc-cleanup");
  auto r = mpmc_ring::format({region.data(), region.size()}, 2, 16);
  CHECK(r.try_push(bytes_of("a")));
  const pid_t child = fork_child([&] {
    r.try_pop_with([](std::span<const std::byte>) { ::kill(::getpid(), SIGKILL); });
    return 1;
  });
  reap_killed(child);
  const auto claim = r.blocking_claim(side::producers);
  CHECK_FALSE(claim.has_value());  // one slot is still free: producers are not blocked yet
  CHECK(r.try_push(bytes_of("b")));
  const auto blocker = r.blocking_claim(side::producers);
  REQUIRE(blocker.has_value());
  struct seen_t {
    mpmc_ring* ring;
    std::uint64_t slot = 99;
    bool claimed_during = false;
  } seen{&r};
  const corio::detail::mpmc_cleanup cleanup = [](void* arg, std::uint64_t slot) noexcept {
    auto* s = static_cast<seen_t*>(arg);
    s->slot = slot;
    // Still held (by us now): producers stay blocked until the cleanup returns.
    s->claimed_during = s->ring->blocking_claim(side::producers).has_value();
  };
  CHECK(r.recover(*blocker, cleanup, &seen));
  CHECK(seen.slot == 0);
  CHECK(seen.claimed_during);
  CHECK(r.lost() == 1);
  CHECK(r.try_push(bytes_of("c")));
  CHECK(pop_string(r) == "b");
  CHECK(pop_string(r) == "c");
}
