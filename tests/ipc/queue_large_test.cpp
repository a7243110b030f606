// queue<T> with values larger than a ring slot, at the default options: 1 byte to 256 MiB
// between processes, order with small values mixed in, several producers at once,
// producers and consumers SIGKILLed in the middle of a large value, and memory that
// cannot be had. The value arena (ipc/detail/value_arena.hpp) is watched through its
// memfd: once nothing is in flight it holds at most the pages it keeps for reuse
// (queue_options::arena_keep_bytes / capacity per slot), and none of a dead process.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"

#include <corio/ipc/queue.hpp>
#include <corio/runtime/loop.hpp>

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio::queue;
using corio_test::fork_child;
using corio_test::raw_pipe;

namespace {

constexpr std::size_t KiB = std::size_t{1} << 10;
constexpr std::size_t MiB = std::size_t{1} << 20;

// A value whose every byte depends on its position and on a seed: a byte from another
// value, a shifted copy or a hole (zeros) shows.
char pattern_byte(std::size_t i, unsigned seed) { return static_cast<char>((i * 131 + (i >> 12) + seed * 7) | 1); }

std::string pattern_string(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = pattern_byte(i, seed);
  return s;
}

bool has_pattern(const std::string& s, std::size_t n, unsigned seed) {
  if (s.size() != n)
    return false;
  for (std::size_t i = 0; i < n; ++i)
    if (s[i] != pattern_byte(i, seed))
      return false;
  return true;
}

// Bytes allocated in this process's value arenas (the memfds named corio-queue-values):
// the pages of large values in flight. -1 when none is open.
long long arena_bytes() {
  long long total = -1;
  DIR* dir = ::opendir("/proc/self/fd");
  REQUIRE(dir != nullptr);
  while (const dirent* e = ::readdir(dir)) {
    const std::string link_path = std::string("/proc/self/fd/") + e->d_name;
    char target[256] = {};
    if (::readlink(link_path.c_str(), target, sizeof target - 1) <= 0 ||
        std::strstr(target, "memfd:corio-queue-values") == nullptr)
      continue;
    struct stat st {};
    if (::stat(link_path.c_str(), &st) == 0)
      total = (total < 0 ? 0 : total) + static_cast<long long>(st.st_blocks) * 512;
  }
  ::closedir(dir);
  return total;
}

// Whether process pid has the value arena mapped: a consumer inside a large get.
bool maps_arena(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find("corio-queue-values") != std::string::npos)
      return true;
  return false;
}

// Polls cond every 100 us until it holds (true) or `limit` passes (false).
template <class Cond>
bool poll_until(Cond cond, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

int reap(pid_t pid) { return corio_test::reap_or_kill_within(pid, 60s, "child " + std::to_string(pid)); }

bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

// Limits this process's address space (RLIMIT_AS) to what it maps now plus `headroom`.
bool limit_address_space(std::size_t headroom) {
  std::ifstream statm("/proc/self/statm");
  unsigned long long pages = 0;
  statm >> pages;
  const rlim_t limit = pages * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + headroom;
  const rlimit as{limit, limit};
  return ::setrlimit(RLIMIT_AS, &as) == 0;
}

// Runs f; 0 when it threw std::system_error with ENOMEM (its what() in message), 2 for
// another system_error, 1 when it did not throw.
template <class F>
int enomem_status(F f, std::string& message) {
  try {
    f();
  } catch (const std::system_error& e) {
    message = e.what();
    return e.code() == std::errc::not_enough_memory ? 0 : 2;
  }
  return 1;
}

}  // namespace

TEST_CASE("default options take 1-byte, slot-sized and 1 MiB values; the arena keeps 64 KiB a slot once they "
          "are taken") {
  queue<std::string> q;
  CHECK(q.slot_bytes() == 256);
  CHECK(q.capacity() == 1024);
  CHECK(arena_bytes() == 0);
  q.put("x");
  q.put(pattern_string(248, 1));  // 8-byte length + 248: the last size that fits a slot
  q.put(pattern_string(249, 2));  // the first that does not
  q.put(pattern_string(MiB, 3));
  CHECK(q.size() == 4);
  CHECK(arena_bytes() >= static_cast<long long>(MiB));
  CHECK(q.get() == "x");
  CHECK(has_pattern(q.get(), 248, 1));
  CHECK(has_pattern(q.get(), 249, 2));
  CHECK(has_pattern(q.get(), MiB, 3));
  // Kept for the next values of those slots: a page of the 249-byte value's, the first
  // 64 KiB (64 MiB / 1024 slots) of the 1 MiB value's.
  CHECK(arena_bytes() == static_cast<long long>(4 * KiB + 64 * KiB));

  queue<std::vector<std::byte>> bytes;
  std::vector<std::byte> v(MiB);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::byte>(pattern_byte(i, 4));
  bytes.put(v);
  CHECK(bytes.get() == v);
  CHECK(q.lost() == 0);
}

TEST_CASE("large values of every encoding path: nested containers, trivially copyable objects, async_put in a loop") {
  // std::vector<std::string> is encoded into a scratch buffer first; a trivially copyable
  // object goes as its own bytes; std::string straight from the object (codec_flat); and
  // async_put keeps its value in the coroutine frame while it waits for room.
  queue<std::vector<std::string>> nested(2);
  std::vector<std::string> lines;
  for (unsigned i = 0; i < 1000; ++i) lines.push_back(pattern_string(1000 + i, i));
  nested.put(lines);
  CHECK(nested.get() == lines);

  struct blob {
    std::array<char, 100'000> bytes;
  };
  static_assert(corio::detail::codec_memcpy<blob>);
  queue<blob> blobs(2);
  auto b = std::make_unique<blob>();
  for (std::size_t i = 0; i < b->bytes.size(); ++i) b->bytes[i] = pattern_byte(i, 11);
  blobs.put(*b);
  CHECK(blobs.get().bytes == b->bytes);

  queue<std::string> q(2);
  q.put("first");
  q.put("second");  // full: async_put waits for room
  const pid_t child = fork_child([&] {
    std::this_thread::sleep_for(100ms);
    const bool ok = q.get(true, 30s) == "first" && q.get(true, 30s) == "second" &&
                    has_pattern(q.get(true, 30s), 2 * MiB, 12) && q.get(true, 30s) == "small";
    return ok ? 0 : 1;
  });
  corio::loop lp;
  auto putter = [&]() -> corio::task<void> {
    co_await q.async_put(pattern_string(2 * MiB, 12));
    co_await q.async_put("small");
  };
  lp.run(putter());
  CHECK(exited_with(reap(child), 0));
  CHECK(q.empty());
}

TEST_CASE("with arena_keep_bytes = 0 every get frees its value's pages; values written over kept pages stay intact") {
  queue<std::string> none(4, {.arena_keep_bytes = 0});
  none.put(pattern_string(MiB, 9));
  CHECK(arena_bytes() >= static_cast<long long>(MiB));
  CHECK(has_pattern(none.get(), MiB, 9));
  CHECK(arena_bytes() == 0);
  // Capacity 2, 1 MiB kept a slot: lap after lap, values shorter and longer than what the
  // slot kept, below and above the 1 MiB (the first two laps write with pwrite, later
  // ones through the kept mapping when they fit).
  queue<std::string> q(2, {.arena_keep_bytes = 2 * MiB});
  const std::vector<std::size_t> sizes = {100 * KiB, 50 * KiB, 3 * MiB, 10 * KiB, MiB, 300, MiB - 1, 2 * MiB, 4 * KiB};
  int intact = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    q.put(pattern_string(sizes[i], static_cast<unsigned>(i)));
    intact += has_pattern(q.get(), sizes[i], static_cast<unsigned>(i));
    CHECK(arena_bytes() <= static_cast<long long>(2 * MiB));
  }
  CHECK(intact == static_cast<int>(sizes.size()));
}

TEST_CASE("a 256 MiB string crosses from a forked child to its parent intact, and memory stays bounded") {
  constexpr std::size_t n = 256 * MiB;
  queue<std::string> q(4);
  const pid_t child = fork_child([&] {
    q.put(pattern_string(n, 5));
    q.put("after");
    return 0;
  });
  const std::string got = q.get(true, 60s);
  CHECK(has_pattern(got, n, 5));
  CHECK(q.get(true, 60s) == "after");
  CHECK(exited_with(reap(child), 0));
  CHECK(arena_bytes() == static_cast<long long>(16 * MiB));  // kept: 64 MiB / 4 slots
  // The parent held the mapping and the decoded string (2 x 256 MiB), never a third copy.
  rusage ru{};
  REQUIRE(::getrusage(RUSAGE_SELF, &ru) == 0);
  MESSAGE("parent peak RSS: " << ru.ru_maxrss / 1024 << " MiB");
  if (!corio_test::sanitized)
    CHECK(ru.ru_maxrss < 700 * 1024);
}

TEST_CASE("one producer's small and large values arrive in the order it put them") {
  const std::vector<std::size_t> sizes = {1, 300, 5, MiB, 0, 200 * 1024, 248, 249, 3 * MiB, 7, 100 * 1024, 2};
  constexpr int rounds = 20;
  queue<std::string> q(8);
  const pid_t child = fork_child([&] {
    for (int r = 0; r < rounds; ++r)
      for (std::size_t i = 0; i < sizes.size(); ++i) q.put(pattern_string(sizes[i], static_cast<unsigned>(r * 100 + i)));
    return 0;
  });
  int in_order = 0;
  for (int r = 0; r < rounds; ++r)
    for (std::size_t i = 0; i < sizes.size(); ++i)
      in_order += has_pattern(q.get(true, 30s), sizes[i], static_cast<unsigned>(r * 100 + i));
  CHECK(in_order == rounds * static_cast<int>(sizes.size()));
  CHECK(exited_with(reap(child), 0));
  CHECK(arena_bytes() <= static_cast<long long>(64 * MiB));
}

TEST_CASE("several producers put large values at once; two consumers get each exactly once, intact") {
  constexpr unsigned producers = 3;
  constexpr unsigned per_producer = 40;
  queue<std::string> q(4);  // small: producers wait for each other's slots
  queue<std::uint32_t> seen(producers * per_producer);
  auto value_size = [](unsigned id) { return 64 * 1024 + id * 4099; };
  std::vector<pid_t> pids;
  for (unsigned p = 0; p < producers; ++p)
    pids.push_back(fork_child([&, p] {
      for (unsigned s = 0; s < per_producer; ++s) {
        const unsigned id = p * per_producer + s;
        std::string v = pattern_string(value_size(id), id);
        std::memcpy(v.data(), &id, sizeof id);
        q.put(v);
      }
      return 0;
    }));
  for (int c = 0; c < 2; ++c)
    pids.push_back(fork_child([&] {
      try {
        for (;;) {
          const std::string v = q.get();
          unsigned id = 0;
          std::memcpy(&id, v.data(), sizeof id);
          std::string want = pattern_string(value_size(id), id);
          std::memcpy(want.data(), &id, sizeof id);
          seen.put(v == want ? id : 0xffff'ffffu);
        }
      } catch (const corio::queue_closed&) {
        return 0;
      }
    }));
  std::vector<int> count(producers * per_producer, 0);
  int bad = 0;
  for (unsigned k = 0; k < producers * per_producer; ++k) {
    const std::uint32_t id = seen.get(true, 60s);
    if (id < count.size())
      ++count[id];
    else
      ++bad;
  }
  q.close();
  for (pid_t pid : pids) CHECK(exited_with(reap(pid), 0));
  CHECK(bad == 0);
  CHECK(std::count(count.begin(), count.end(), 1) == static_cast<long>(count.size()));
  CHECK(q.lost() == 0);
  CHECK(arena_bytes() <= static_cast<long long>(64 * MiB));
}

TEST_CASE("a producer SIGKILLed in the middle of a large put wedges no consumer; lost() counts it and its "
          "pages are freed") {
  // The producer is killed while the arena fills with its value: only a producer inside
  // its claim writes there. A 256 MiB write takes tens of milliseconds; if the kill still
  // lands after the publish (a stalled test process), the value arrives and we try again.
  constexpr std::size_t n = 256 * MiB;
  bool killed_inside = false;
  for (int attempt = 0; attempt < 3 && !killed_inside; ++attempt) {
    queue<std::string> q(4);
    const std::string big = pattern_string(n, 6);  // before fork: the child only copies it
    const pid_t child = fork_child([&] {
      q.put(big);
      return 0;
    });
    REQUIRE(poll_until([] { return arena_bytes() > 0; }, 30s));
    REQUIRE(::kill(child, SIGKILL) == 0);
    const int status = reap(child);
    q.put("after");
    const auto start = std::chrono::steady_clock::now();
    const std::string first = q.get(true, 10s);  // watches the dead claim, frees it
    if (first.size() == n) {
      CHECK(has_pattern(first, n, 6));
      MESSAGE("the kill landed after the publish; again");
      CHECK(q.get(true, 10s) == "after");
      continue;
    }
    killed_inside = true;
    CHECK(WIFSIGNALED(status));
    CHECK(first == "after");
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(q.lost() == 1);
    CHECK(arena_bytes() == 0);
  }
  CHECK(killed_inside);
}

TEST_CASE("a consumer SIGKILLed while it decodes a large value wedges no producer; lost() counts it and its "
          "pages are freed") {
  constexpr std::size_t n = 256 * MiB;
  bool killed_inside = false;
  for (int attempt = 0; attempt < 3 && !killed_inside; ++attempt) {
    queue<std::string> q(2);
    q.put(pattern_string(n, 7));
    const pid_t child = fork_child([&] {
      (void)q.get();
      ::pause();  // a kill after the get finds it here: the value was not lost
      return 0;
    });
    REQUIRE(poll_until([&] { return maps_arena(child); }, 30s));
    REQUIRE(::kill(child, SIGKILL) == 0);
    reap(child);
    // Capacity 2: the second put needs the dead consumer's slot.
    const auto start = std::chrono::steady_clock::now();
    q.put("a", true, 10s);
    q.put("b", true, 10s);  // position 2: the dead consumer's slot
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    const std::uint64_t lost = q.lost();
    if (lost == 0) {
      MESSAGE("the kill landed after the get; again");
      continue;
    }
    killed_inside = true;
    CHECK(lost == 1);
    CHECK(q.get() == "a");
    CHECK(q.get() == "b");
    CHECK(arena_bytes() == 0);
  }
  CHECK(killed_inside);
}

TEST_CASE("a get that cannot map a large value (RLIMIT_AS) throws system_error naming its size") {
  constexpr std::size_t n = 256 * MiB;
  queue<std::string> q(4);
  q.put(pattern_string(n, 8));
  q.put("next");
  raw_pipe out;
  const pid_t child = fork_child([&] {
    // Address space for what the child has now plus 64 MiB: no room for a 256 MiB mapping.
    if (!limit_address_space(64 * MiB))
      return 4;
    std::string message;
    const int rc = enomem_status([&] { (void)q.get(); }, message);
    message += "\n" + q.get();  // the queue works on: the next value arrives
    (void)!::write(out.write_end(), message.data(), message.size());
    return rc;
  });
  out.close_write();
  const std::string said = out.read_all();
  CHECK(exited_with(reap(child), 0));
  CHECK(said.find("268435464-byte value") != std::string::npos);
  CHECK(said.find("the value is lost") != std::string::npos);
  CHECK(said.substr(said.find('\n') + 1) == "next");
  MESSAGE(said);
  CHECK(q.empty());
  CHECK(arena_bytes() == static_cast<long long>(16 * MiB));  // kept: the put wrote it all, the punch spared 16 MiB
}

// Skipped in sanitizer builds: their allocator aborts on an allocation that fails
// instead of throwing std::bad_alloc.
TEST_CASE("a put or async_put whose encoding cannot be had (RLIMIT_AS) throws system_error (ENOMEM) saying so; "
          "nothing is queued" *
          doctest::skip(corio_test::sanitized)) {
  // A vector of strings is encoded into a buffer before it is stored (a string alone is
  // not: it goes to the arena straight from the object and never needs the memory).
  queue<std::vector<std::string>> q(4);
  raw_pipe out;
  const pid_t child = fork_child([&] {
    std::vector<std::string> big(64, std::string(4 * MiB, 'v'));  // 256 MiB, before the limit
    corio::loop lp;                                                // and its ring
    if (!limit_address_space(64 * MiB))
      return 4;
    std::string message;
    const int rc = enomem_status([&] { q.put(big); }, message);
    std::string async_message;  // moved into the task's frame: only the encoding needs memory
    const int async_rc = enomem_status([&] { lp.run(q.async_put(std::move(big))); }, async_message);
    message += "\n" + async_message;
    (void)!::write(out.write_end(), message.data(), message.size());
    return rc != 0 ? rc : async_rc;
  });
  out.close_write();
  const std::string said = out.read_all();
  CHECK(exited_with(reap(child), 0));
  const std::string enomem = "corio::queue::put: out of memory encoding the value into a buffer; nothing was queued";
  CHECK(said.rfind(enomem, 0) == 0);
  REQUIRE(said.find('\n') != std::string::npos);
  CHECK(said.substr(said.find('\n') + 1) == said.substr(0, said.find('\n')));  // async_put: the same error
  MESSAGE(said);
  CHECK(q.empty());
  CHECK(arena_bytes() == 0);
}
