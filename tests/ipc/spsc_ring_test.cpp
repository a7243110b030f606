// spsc_ring: empty/full/wrap/exact-fit edges, oversize, publish visibility, two threads,
// two processes, random frame sizes with content checks.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"

#include <corio/ipc/shm_region.hpp>
#include <corio/ipc/spsc_ring.hpp>

#include <sys/wait.h>
#include <csignal>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using corio::spsc_ring;
using corio_test::aligned_block;
using corio_test::bytes_of;

namespace {

std::string string_of(std::span<const std::byte> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

std::string read_one(spsc_ring& r) {
  std::string out = "<none>";
  r.try_read([&](std::span<const std::byte> f) { out = string_of(f); });
  return out;
}

std::span<const std::byte> u64_bytes(const std::uint64_t& v) { return std::as_bytes(std::span(&v, 1)); }

constexpr std::uint64_t message_count = 10'000'000;

}  // namespace

TEST_CASE("bytes_for rounds the capacity up to a power of two plus the header") {
  CHECK(spsc_ring::bytes_for(1) == 192 + 64);
  CHECK(spsc_ring::bytes_for(64) == 192 + 64);
  CHECK(spsc_ring::bytes_for(65) == 192 + 128);
  CHECK(spsc_ring::bytes_for(4096) == 192 + 4096);
}

TEST_CASE("a new ring is empty and has nothing to read") {
  aligned_block m(spsc_ring::bytes_for(64));
  auto r = spsc_ring::format(m.span());
  CHECK(r.capacity() == 64);
  CHECK(r.max_payload() == 28);
  CHECK_FALSE(r.peek().has_value());
  CHECK(read_one(r) == "<none>");
  CHECK(r.drain([](auto) { FAIL("no frame expected"); }) == 0);
}

TEST_CASE("a written frame stays invisible until publish") {
  aligned_block m(spsc_ring::bytes_for(64));
  auto r = spsc_ring::format(m.span());
  CHECK(r.try_write(bytes_of("abc")));
  CHECK(r.try_write(bytes_of("")));
  CHECK_FALSE(r.peek().has_value());
  r.publish();
  CHECK(read_one(r) == "abc");
  CHECK(read_one(r) == "");
  CHECK(read_one(r) == "<none>");
}

TEST_CASE("a full ring refuses a write and accepts it again after a read") {
  aligned_block m(spsc_ring::bytes_for(64));
  auto r = spsc_ring::format(m.span());
  for (int i = 0; i < 4; ++i)  // 8-byte payloads take 16-byte frames: 4 fill 64 bytes
    CHECK(r.try_send(bytes_of("frame-" + std::to_string(i) + "!")));
  CHECK_FALSE(r.try_send(bytes_of("frame-4!")));
  CHECK(read_one(r) == "frame-0!");
  CHECK(r.try_send(bytes_of("frame-4!")));
  CHECK_FALSE(r.try_send(bytes_of("x")));
  for (int i = 1; i < 5; ++i)
    CHECK(read_one(r) == "frame-" + std::to_string(i) + "!");
  CHECK(read_one(r) == "<none>");
}

TEST_CASE("a full try_write publishes the pending frames so the consumer can progress") {
  aligned_block m(spsc_ring::bytes_for(64));
  auto r = spsc_ring::format(m.span());
  for (int i = 0; i < 4; ++i)
    CHECK(r.try_write(bytes_of("pending" + std::to_string(i))));
  CHECK_FALSE(r.peek().has_value());
  CHECK_FALSE(r.try_write(bytes_of("overflow")));
  CHECK(read_one(r) == "pending0");
}

TEST_CASE("frames of exactly the largest payload fill the ring exactly") {
  aligned_block m(spsc_ring::bytes_for(64));
  auto r = spsc_ring::format(m.span());
  const std::string a(28, 'a'), b(28, 'b');
  CHECK(r.try_send(bytes_of(a)));
  CHECK(r.try_send(bytes_of(b)));
  CHECK_FALSE(r.try_send(bytes_of("")));
  CHECK(read_one(r) == a);
  CHECK(read_one(r) == b);
  // The largest payload fits from any position of an empty ring.
  for (int shift = 0; shift < 8; ++shift) {
    CHECK(r.try_send(bytes_of(std::string(std::size_t(shift), 's'))));
    CHECK(read_one(r) == std::string(std::size_t(shift), 's'));
    CHECK(r.try_send(bytes_of(a)));
    CHECK(read_one(r) == a);
  }
}

TEST_CASE("a frame that does not fit before the end wraps to the start behind a padding marker") {
  aligned_block m(spsc_ring::bytes_for(64));
  auto r = spsc_ring::format(m.span());
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 3; ++i)  // 12-byte payloads, 16-byte frames
      CHECK(r.try_send(bytes_of("twelve-bytes")));
    for (int i = 0; i < 3; ++i)
      CHECK(read_one(r) == "twelve-bytes");
    const std::string wrapped = "wraps:" + std::to_string(round) + std::string(20 - 6 - std::to_string(round).size(), '.');
    REQUIRE(wrapped.size() == 20);  // 24-byte frame: does not fit in the 16 bytes left
    CHECK(r.try_send(bytes_of(wrapped)));
    CHECK(read_one(r) == wrapped);
    CHECK(read_one(r) == "<none>");
  }
}

TEST_CASE("a message larger than the ring can ever carry throws length_error") {
  aligned_block m(spsc_ring::bytes_for(64));
  auto r = spsc_ring::format(m.span());
  CHECK_THROWS_WITH_AS(r.try_write(bytes_of(std::string(29, 'x'))),
                       "corio::spsc_ring: a 29-byte message can never fit a ring of 64 bytes (largest payload: 28 bytes)",
                       std::length_error);
  CHECK_THROWS_AS(r.try_send(bytes_of(std::string(1000, 'x'))), std::length_error);
  CHECK(read_one(r) == "<none>");
}

TEST_CASE("format and attach reject bad memory with invalid_argument") {
  aligned_block m(spsc_ring::bytes_for(64));
  CHECK_THROWS_WITH_AS((void)spsc_ring::attach(m.span()), "corio::spsc_ring::attach: the memory holds no formatted ring",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)spsc_ring::format(m.span().first(100)),
                       "corio::spsc_ring::format: 100 bytes is too small (need at least 256)", std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)spsc_ring::format(m.span().subspan(8)), "corio::spsc_ring::format: memory must be 64-byte aligned",
                       std::invalid_argument);
}

TEST_CASE("an attached consumer sees published frames and never an unpublished one") {
  aligned_block m(spsc_ring::bytes_for(256));
  auto producer = spsc_ring::format(m.span());
  CHECK(producer.try_send(bytes_of("published")));
  CHECK(producer.try_write(bytes_of("torn: the producer died before publishing")));
  // A consumer attaching now (as after the producer's death) sees only the published frame.
  auto consumer = spsc_ring::attach(m.span());
  CHECK(consumer.capacity() == 256);
  CHECK(read_one(consumer) == "published");
  CHECK(read_one(consumer) == "<none>");
}

TEST_CASE("drain reads the available frames up to a limit") {
  aligned_block m(spsc_ring::bytes_for(1024));
  auto r = spsc_ring::format(m.span());
  for (std::uint64_t i = 0; i < 10; ++i)
    CHECK(r.try_write(u64_bytes(i)));
  r.publish();
  std::vector<std::uint64_t> seen;
  auto take = [&](std::span<const std::byte> f) {
    std::uint64_t v;
    REQUIRE(f.size() == 8);
    std::memcpy(&v, f.data(), 8);
    seen.push_back(v);
  };
  CHECK(r.drain(take, 4) == 4);
  CHECK(r.drain(take) == 6);
  CHECK(r.drain(take) == 0);
  CHECK(seen == std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("a callback that throws in drain leaves its frame in the ring and frees the ones before") {
  aligned_block m(spsc_ring::bytes_for(256));
  auto r = spsc_ring::format(m.span());
  for (const char* s : {"one", "two", "three"})
    CHECK(r.try_write(bytes_of(s)));
  r.publish();
  std::vector<std::string> seen;
  CHECK_THROWS_WITH_AS(r.drain([&](std::span<const std::byte> f) {
    if (string_of(f) == "two")
      throw std::runtime_error("callback failed");
    seen.push_back(string_of(f));
  }),
                       "callback failed", std::runtime_error);
  CHECK(seen == std::vector<std::string>{"one"});
  CHECK(read_one(r) == "two");
  CHECK(read_one(r) == "three");
}

TEST_CASE("a corrupt frame length in shared memory throws runtime_error instead of reading out of bounds") {
  aligned_block m(spsc_ring::bytes_for(64));
  auto r = spsc_ring::format(m.span());
  CHECK(r.try_send(bytes_of("ok")));
  const std::uint32_t bogus = 1000;
  std::memcpy(m.span().data() + spsc_ring::header_bytes, &bogus, 4);  // a peer that is not a ring
  CHECK_THROWS_WITH_AS((void)r.peek(),
                       "corio::spsc_ring: corrupt frame length 1000 at index 0 (the memory is not a spsc_ring written "
                       "by its producer)",
                       std::runtime_error);
  CHECK_THROWS_AS(r.drain([](auto) {}), std::runtime_error);
}

TEST_CASE("a producer process killed mid-frame exposes only the frames it published") {
  auto region = corio::shm_region::create(spsc_ring::bytes_for(4096), "spsc-ring-kill-test");
  auto r = spsc_ring::format({region.data(), region.size()});
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    for (std::uint64_t i = 1; i <= 10; ++i)
      (void)r.try_write(u64_bytes(i));
    r.publish();
    (void)r.try_write(bytes_of("never published"));
    ::raise(SIGKILL);  // dies between the copy and the publishing store
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  std::vector<std::uint64_t> seen;
  r.drain([&](std::span<const std::byte> f) {
    std::uint64_t v = 0;
    if (f.size() == 8)
      std::memcpy(&v, f.data(), 8);
    seen.push_back(v);
  });
  CHECK(seen == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  CHECK(read_one(r) == "<none>");
}

namespace {

// Writes 1..message_count as 8-byte frames, publishing every 64.
void produce_numbers(spsc_ring& r) {
  for (std::uint64_t i = 1; i <= message_count; ++i) {
    corio::spin_until([&] { return r.try_write(u64_bytes(i)); });
    if (i % 64 == 0)
      r.publish();
  }
  r.publish();
}

// Reads message_count 8-byte frames and checks they are 1, 2, 3... with the right sum.
void consume_numbers(spsc_ring& r) {
  std::uint64_t expected = 1, sum = 0;
  bool in_order = true;
  while (expected <= message_count) {
    std::size_t n = r.drain([&](std::span<const std::byte> f) {
      std::uint64_t v;
      std::memcpy(&v, f.data(), 8);
      in_order = in_order && v == expected && f.size() == 8;
      sum += v;
      ++expected;
    });
    if (n == 0)
      std::this_thread::yield();
  }
  CHECK(in_order);
  CHECK(expected == message_count + 1);
  CHECK(sum == message_count * (message_count + 1) / 2);
}

}  // namespace

TEST_CASE("two threads pass 10,000,000 8-byte messages in order") {
  aligned_block m(spsc_ring::bytes_for(64 * 1024));
  auto r = spsc_ring::format(m.span());
  std::thread producer([&] { produce_numbers(r); });
  consume_numbers(r);
  producer.join();
  CHECK(read_one(r) == "<none>");
}

TEST_CASE("a forked child passes 10,000,000 messages through a shm_region") {
  auto region = corio::shm_region::create(spsc_ring::bytes_for(64 * 1024), "spsc-ring-fork-test");
  auto r = spsc_ring::format({region.data(), region.size()});
  const pid_t pid = corio_test::fork_child([&] {
    produce_numbers(r);
    return 0;
  });
  consume_numbers(r);
  CHECK(corio_test::exit_status(pid) == 0);
  CHECK(read_one(r) == "<none>");
}

TEST_CASE("random-size frames of 1 to 4096 bytes arrive intact across two threads") {
  constexpr int frames = 200'000;
  aligned_block m(spsc_ring::bytes_for(16 * 1024));
  auto r = spsc_ring::format(m.span());
  auto content = [](std::uint32_t seq, std::size_t len) {
    std::vector<std::byte> v(len);
    for (std::size_t i = 0; i < len; ++i)
      v[i] = static_cast<std::byte>((seq * 31u + i * 7u) & 0xFF);
    return v;
  };
  std::thread producer([&] {
    std::mt19937 rng(12345);
    std::uniform_int_distribution<std::size_t> size(1, 4096);
    for (std::uint32_t seq = 0; seq < frames; ++seq) {
      auto v = content(seq, size(rng));
      corio::spin_until([&] { return r.try_write(v); });
      if (seq % 3 == 0)
        r.publish();
    }
    r.publish();
  });
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::size_t> size(1, 4096);
  int good = 0, bad = 0;
  for (std::uint32_t seq = 0; seq < frames;) {
    auto expected = content(seq, size(rng));
    std::optional<std::span<const std::byte>> f;
    corio::spin_until([&] { return (f = r.peek()).has_value(); });
    if (f->size() == expected.size() && std::memcmp(f->data(), expected.data(), expected.size()) == 0)
      ++good;
    else
      ++bad;
    r.pop();
    ++seq;
  }
  producer.join();
  CHECK(good == frames);
  CHECK(bad == 0);
  CHECK(read_one(r) == "<none>");
}
