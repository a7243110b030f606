// spsc_ring: empty/full/wrap/exact-fit edges, oversize, publish visibility, two threads,
// two processes, random frame sizes with content checks.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"

#include <corio/ipc/shm_region.hpp>
#include <corio/ipc/spsc_ring.hpp>

#include <sys/mman.h>
#include <sys/wait.h>
#include <csignal>
#include <unistd.h>

#include <cstddef>
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

namespace {

// Ring memory whose data area ends exactly where an inaccessible page begins: a read or a
// write one byte past the ring faults at once (also without ASan), and the test dies.
struct guarded_ring_memory {
  static constexpr std::size_t capacity = 256;  // max_payload 124
  static constexpr std::size_t page = 4096;
  std::byte* base;
  guarded_ring_memory() {
    void* p = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    base = static_cast<std::byte*>(p);
    REQUIRE(::mprotect(base + page, page, PROT_NONE) == 0);
  }
  ~guarded_ring_memory() { ::munmap(base, 2 * page); }
  guarded_ring_memory(const guarded_ring_memory&) = delete;
  guarded_ring_memory& operator=(const guarded_ring_memory&) = delete;
  std::span<std::byte> span() const { return {base + page - spsc_ring::bytes_for(capacity), spsc_ring::bytes_for(capacity)}; }
};

// A producer that does not follow the protocol: it writes the shared header and the data
// area directly, as a buggy or hostile process mapping the same memory could.
struct hostile_writer {
  std::span<std::byte> memory;
  void set_index(std::size_t offset, std::uint64_t v) const { std::memcpy(memory.data() + offset, &v, 8); }
  void write_index(std::uint64_t v) const { set_index(offsetof(corio::detail::spsc_ring_header, write_index), v); }
  void read_index(std::uint64_t v) const { set_index(offsetof(corio::detail::spsc_ring_header, read_index), v); }
  // A frame header (the 4-byte length) at ring index `at`.
  void length(std::uint64_t at, std::uint32_t len) const {
    std::memcpy(memory.data() + spsc_ring::header_bytes + (at % guarded_ring_memory::capacity), &len, 4);
  }
};

// Reads every byte of a frame (through a volatile, so the reads happen), so a span
// reaching past the ring faults.
std::uint64_t touch(std::span<const std::byte> f) {
  std::uint64_t sum = 0;
  for (const std::byte& b : f)
    sum += static_cast<std::uint64_t>(*static_cast<const volatile std::byte*>(&b));
  return sum;
}

struct bad_header {
  const char* what;
  std::uint64_t read, write;  // the indices the hostile producer leaves
  std::uint64_t frame_at;     // where it writes a length (when len != 0)
  std::uint32_t len;
  std::uint64_t pad_at;       // where it writes a padding marker (when != ~0)
  std::string error;          // what the consumer's peek and drain throw
};

std::string corrupt_length(std::uint64_t len, std::uint64_t index) {
  return "corio::spsc_ring: corrupt frame length " + std::to_string(len) + " at index " + std::to_string(index) +
         " (the memory is not a spsc_ring written by its producer)";
}

}  // namespace

TEST_CASE("every frame header a hostile producer writes makes peek and drain throw, never reach past the ring") {
  constexpr std::uint64_t none = ~std::uint64_t{0};
  const std::vector<bad_header> cases = {
      {"a length that runs past the end of the data area, within the published bytes", 224, 224 + 128, 224, 100, none,
       corrupt_length(100, 224)},
      {"a length that runs 8 bytes past the data area", 160, 160 + 128, 160, 100, none, corrupt_length(100, 160)},
      {"a huge length", 0, 64, 0, 0xFFFFFFF0u, none, corrupt_length(0xFFFFFFF0u, 0)},
      {"a length above max_payload that stays within the published bytes and the data area", 0, 256, 0, 200, none,
       corrupt_length(200, 0)},
      {"a length above max_payload after a wrap, within the published bytes", 192, 256 + 136, 256, 128, 192,
       corrupt_length(128, 256)},
      {"a length that runs past the published index", 0, 16, 0, 100, none, corrupt_length(100, 0)},
      {"a padding marker with nothing published after it", 224, 256, 0, 0, 224, corrupt_length(0xFFFFFFFFu, 224)},
      {"a frame after a padding marker that runs past the published index", 224, 256 + 16, 256, 100, 224,
       corrupt_length(100, 256)},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    guarded_ring_memory m;
    (void)spsc_ring::format(m.span());
    const hostile_writer h{m.span()};
    h.read_index(c.read);
    h.write_index(c.write);
    if (c.pad_at != none)
      h.length(c.pad_at, corio::detail::spsc_ring_padding);
    if (c.len != 0)
      h.length(c.frame_at, c.len);
    auto peeker = spsc_ring::attach(m.span());
    CHECK_THROWS_WITH_AS((void)touch(*peeker.peek()), c.error.c_str(), std::runtime_error);
    auto drainer = spsc_ring::attach(m.span());
    std::uint64_t sum = 0;
    CHECK_THROWS_WITH_AS(drainer.drain([&](std::span<const std::byte> f) { sum += touch(f); }), c.error.c_str(),
                         std::runtime_error);
  }
}

TEST_CASE("a length above max_payload is refused by drain after frames of a valid size") {
  // drain checks a length against max_payload only when the frame size changes: the
  // corrupt frame comes after valid ones, within the published bytes and the data area.
  guarded_ring_memory m;
  auto producer = spsc_ring::format(m.span());
  for (int i = 0; i < 3; ++i)
    REQUIRE(producer.try_send(bytes_of("eight ch")));  // 16-byte frames at 0, 16, 32
  const hostile_writer h{m.span()};
  h.length(48, 150);  // a 160-byte frame at 48: ends at 208, before the data area's end
  h.write_index(48 + 160);
  auto consumer = spsc_ring::attach(m.span());
  std::vector<std::string> seen;
  CHECK_THROWS_WITH_AS(consumer.drain([&](std::span<const std::byte> f) { seen.push_back(string_of(f)); }),
                       corrupt_length(150, 48).c_str(), std::runtime_error);
  CHECK(seen == std::vector<std::string>{"eight ch", "eight ch", "eight ch"});
}

TEST_CASE("attach refuses indices no producer could have left") {
  guarded_ring_memory m;
  (void)spsc_ring::format(m.span());
  const hostile_writer h{m.span()};
  auto attach_error = [&](std::uint64_t read, std::uint64_t write) {
    h.read_index(read);
    h.write_index(write);
    try {
      (void)spsc_ring::attach(m.span());
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("<attached>");
  };
  const std::string rule =
      ": the producer's index must be a multiple of 8 and the write index at most capacity bytes ahead of the read "
      "index (the memory is not a spsc_ring used by its protocol)";
  const std::string consumer_rule =
      ": the consumer's index must be a multiple of 8 and the write index at most capacity bytes ahead of the read "
      "index (the memory is not a spsc_ring used by its protocol)";
  // An unaligned read index 3 bytes before the end would read a length across the end.
  CHECK(attach_error(253, 261) == "corio::spsc_ring: corrupt read index 253 (write index 261, capacity 256)" + consumer_rule);
  CHECK(attach_error(0, 12) == "corio::spsc_ring: corrupt write index 12 (read index 0, capacity 256)" + rule);
  CHECK(attach_error(0, 264) == "corio::spsc_ring: corrupt write index 264 (read index 0, capacity 256)" + rule);
  CHECK(attach_error(64, 8) == "corio::spsc_ring: corrupt write index 8 (read index 64, capacity 256)" + rule);
  CHECK(attach_error(256, 512) == "<attached>");  // full, at the second lap: valid
  CHECK(attach_error(~std::uint64_t{7}, 8) == "<attached>");  // 16 bytes published across the 64-bit wrap: valid
}

TEST_CASE("a write index that moves backwards, jumps ahead or turns unaligned is refused by the consumer") {
  struct move {
    const char* what;
    std::uint64_t write;
    std::string error;
  };
  const std::vector<move> moves = {
      {"backwards", 8, "corio::spsc_ring: corrupt write index 8 (read index 16, capacity 256)"},
      {"more than capacity ahead", 16 + 264, "corio::spsc_ring: corrupt write index 280 (read index 16, capacity 256)"},
      {"unaligned", 20, "corio::spsc_ring: corrupt write index 20 (read index 16, capacity 256)"},
  };
  for (const auto& mv : moves) {
    INFO(mv.what);
    for (bool use_drain : {false, true}) {
      guarded_ring_memory m;
      auto ring = spsc_ring::format(m.span());
      REQUIRE(ring.try_send(bytes_of("first")));
      CHECK(read_one(ring) == "first");  // read index 16 now
      const hostile_writer h{m.span()};
      h.length(16, 8);  // a plausible frame where the consumer looks next
      h.write_index(mv.write);
      try {
        if (use_drain)
          (void)ring.drain([](std::span<const std::byte> f) { (void)touch(f); });
        else
          (void)ring.peek();
        FAIL("the consumer accepted write index " << mv.write);
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).rfind(mv.error, 0) == 0);
      }
    }
  }
}

TEST_CASE("a read index that moves ahead of the producer or turns unaligned is refused by the producer") {
  for (std::uint64_t bad_read : {std::uint64_t{64 * 16 + 16}, std::uint64_t{5}}) {
    CAPTURE(bad_read);
    aligned_block m(spsc_ring::bytes_for(1024));
    auto ring = spsc_ring::format(m.span());
    for (int i = 0; i < 64; ++i)  // 64 frames of 16 bytes: full
      REQUIRE(ring.try_send(bytes_of("full! 8B")));
    const hostile_writer h{m.span()};
    h.read_index(bad_read);
    CHECK_THROWS_WITH_AS(ring.try_send(bytes_of("more")),
                         ("corio::spsc_ring: corrupt read index " + std::to_string(bad_read) +
                          " (write index 1024, capacity 1024): the consumer's index must be a multiple of 8 and the "
                          "write index at most capacity bytes ahead of the read index (the memory is not a spsc_ring "
                          "used by its protocol)")
                             .c_str(),
                         std::runtime_error);
  }
}

TEST_CASE("indices that cross 2^64 keep every check and every frame right") {
  // No producer runs that long, but a peer can leave such indices: the checks compare
  // distances, never raw indices, so the wrap changes nothing.
  guarded_ring_memory m;
  (void)spsc_ring::format(m.span());
  const hostile_writer h{m.span()};
  h.read_index(~std::uint64_t{0} - 127);  // 2^64 - 128: the wrap comes after 128 bytes
  h.write_index(~std::uint64_t{0} - 127);
  auto r = spsc_ring::attach(m.span());
  std::vector<std::string> sent, seen;
  for (int i = 0; i < 200; ++i) {
    const std::string s(std::size_t(i % 60), static_cast<char>('a' + i % 26));
    REQUIRE(r.try_send(bytes_of(s)));
    sent.push_back(s);
    if (i % 3 == 2) {
      r.drain([&](std::span<const std::byte> f) { seen.push_back(string_of(f)); });
    } else if (i % 3 == 1) {
      seen.push_back(read_one(r));
    }
  }
  r.drain([&](std::span<const std::byte> f) { seen.push_back(string_of(f)); });
  CHECK(seen == sent);
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
