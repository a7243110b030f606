#include "value_arena.hpp"

#include "../../runtime/errors.hpp"
#include "../shm_region.hpp"
#include "shared_atomic.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace corio::detail {

namespace {

constexpr std::uint64_t page = 4096;  // extents start on multiples of span (>= a page): aligned

// The largest span "Sizes" allows for slot_count slots, before RLIMIT_FSIZE.
std::uint64_t span_bound(std::uint64_t slot_count) noexcept {
  return std::min(std::uint64_t{1} << 40, (std::uint64_t{1} << 62) / slot_count);
}

// This process's RLIMIT_FSIZE, in bytes; no limit: the largest uint64.
std::uint64_t file_size_limit() noexcept {
  rlimit fsize{};
  if (::getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY)
    return fsize.rlim_cur;
  return ~std::uint64_t{0};
}

std::uint64_t span_for(std::uint64_t slot_count) noexcept {
  const std::uint64_t span = std::bit_floor(std::min(span_bound(slot_count), file_size_limit() / slot_count));
  return span < page ? 0 : span;
}

// Why a received arena does not fit the ring it came with (see the adopting
// constructor); empty when it does.
std::string received_arena_problem(int fd, std::uint64_t slot_count, std::uint64_t span, std::uint64_t keep) {
  const std::string sealing = sealed_memfd_problem(fd);
  if (!sealing.empty())
    return sealing;
  if (span != 0 && (!std::has_single_bit(span) || span < page || span > span_bound(slot_count)))
    return "the announced span of " + std::to_string(span) + " bytes per slot is not 0 or a power of two from " +
           std::to_string(page) + " to " + std::to_string(span_bound(slot_count)) + " bytes";
  if (keep % page != 0 || keep > span)
    return "the announced " + std::to_string(keep) + " kept bytes per slot are not whole pages within the span of " +
           std::to_string(span) + " bytes";
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return std::string("fstat: ") + std::strerror(errno);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size != slot_count * span)
    return "the memfd has " + std::to_string(size) + " bytes, a ring of " + std::to_string(slot_count) +
           " slots with " + std::to_string(span) + " bytes each needs " + std::to_string(slot_count * span);
  if (size > file_size_limit())
    return "its " + std::to_string(size) + " bytes exceed this process's RLIMIT_FSIZE (" +
           std::to_string(file_size_limit()) + " bytes): storing a value there would raise SIGXFSZ";
  return {};
}

std::string bytes_text(std::uint64_t n) { return std::to_string(n) + "-byte value"; }

}  // namespace

value_arena::value_arena(std::uint64_t slot_count, std::uint64_t keep_budget, std::uint64_t* ready,
                         const char* name_for_debug)
    : span_(span_for(slot_count)),
      keep_(std::min(span_, keep_budget / slot_count & ~(page - 1))),
      slot_count_(slot_count),
      ready_(ready),
      kept_maps_(std::make_unique<std::atomic<std::byte*>[]>(slot_count)) {
  fd_ = ::memfd_create(name_for_debug, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd_ < 0)
    throw_errno(errno, std::string("memfd_create for the queue's value arena '") + name_for_debug + "'");
  const auto fail = [&](const char* op) {
    const int e = errno;
    ::close(fd_);
    throw_errno(e, std::string(op) + " the queue's value arena to " + std::to_string(slot_count) + " slots of " +
                       std::to_string(span_) + " bytes");
  };
  if (span_ != 0 && ::ftruncate(fd_, static_cast<off_t>(slot_count * span_)) != 0)
    fail("ftruncate (sparse, nothing is allocated)");
  if (::fcntl(fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    fail("seal");
}

value_arena::value_arena(int& fd, std::uint64_t slot_count, std::uint64_t span, std::uint64_t keep,
                         std::uint64_t* ready)
    : fd_(std::exchange(fd, -1)), span_(span), keep_(keep), slot_count_(slot_count), ready_(ready) {
  const std::string problem = received_arena_problem(fd_, slot_count, span, keep);
  if (!problem.empty()) {
    ::close(fd_);
    throw std::invalid_argument("the queue's value arena: " + problem);
  }
  kept_maps_ = std::make_unique<std::atomic<std::byte*>[]>(slot_count);
}

value_arena::~value_arena() {
  for (std::uint64_t i = 0; i < slot_count_; ++i)
    if (std::byte* p = kept_maps_[i].load(std::memory_order_relaxed))
      ::munmap(p, keep_);
  ::close(fd_);
}

bool value_arena::write_at(std::uint64_t slot, std::uint64_t at, std::span<const std::byte> bytes,
                           std::uint64_t& done) const {
  const auto base = static_cast<off_t>(slot * span_ + at);
  std::size_t written = 0;
  while (written < bytes.size()) {
    // One call moves at most 0x7ffff000 bytes (Linux's limit for any read or write).
    const std::size_t chunk = std::min<std::size_t>(bytes.size() - written, std::size_t{1} << 30);
    const ssize_t n = ::pwrite(fd_, bytes.data() + written, chunk, base + static_cast<off_t>(written));
    if (n > 0) {
      written += static_cast<std::size_t>(n);
      done += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0)
      errno = ENOSPC;
    return false;
  }
  return true;
}

void value_arena::write(std::uint64_t slot, std::span<const std::byte> head, std::span<const std::byte> body) const {
  const std::uint64_t size = head.size() + body.size();
  // Clamped: the word is a peer's (see "And a producer writes through that mapping").
  const std::uint64_t ready = std::min(load_relaxed(ready_[slot]), keep_);
  if (size <= ready) {
    std::byte* to = kept_map(slot);
    std::memcpy(to, head.data(), head.size());
    if (!body.empty())
      std::memcpy(to + head.size(), body.data(), body.size());
    return;
  }
  std::uint64_t done = 0;
  if (!write_at(slot, 0, head, done) || !write_at(slot, head.size(), body, done)) {
    const int e = errno;
    clear(slot, done);
    store_relaxed(ready_[slot], 0);
    throw_errno(e, "corio::queue::put: storing a " + bytes_text(size) + " in shared memory (" +
                       std::to_string(done) + " bytes stored)");
  }
  // Pages now back [0, size); the consumer's punch spares the first keep() bytes.
  store_relaxed(ready_[slot], std::max(ready, std::min(size, keep_)));
}

value_arena::view::~view() {
  if (owned_ && length_ != 0)
    ::munmap(const_cast<std::byte*>(data_), length_);
}

const std::byte* value_arena::map_range(std::uint64_t slot, std::uint64_t length, int flags) const {
  void* p = ::mmap(nullptr, static_cast<std::size_t>(length), PROT_READ, MAP_SHARED | flags, fd_,
                   static_cast<off_t>(slot * span_));
  if (p == MAP_FAILED)
    throw_errno(errno, "corio::queue::get: mapping a " + bytes_text(length) + " from shared memory (the value is lost)");
  return static_cast<const std::byte*>(p);
}

std::byte* value_arena::kept_map(std::uint64_t slot) const {
  // Acquire / release: a thread of this process that claims the slot after another one
  // mapped it sees the mapping's pointer (the claim word orders them too; this says so
  // without relying on it).
  std::atomic<std::byte*>& kept = kept_maps_[slot];
  std::byte* p = kept.load(std::memory_order_acquire);
  if (p == nullptr) {
    // Faults in as values are written and read, then stays.
    void* m = ::mmap(nullptr, keep_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, static_cast<off_t>(slot * span_));
    if (m == MAP_FAILED)
      throw_errno(errno, "corio::queue: mapping the " + std::to_string(keep_) + " kept bytes of a value arena slot");
    p = static_cast<std::byte*>(m);
    kept.store(p, std::memory_order_release);
  }
  return p;
}

value_arena::view value_arena::map(std::uint64_t slot, std::uint64_t length) const {
  if (length == 0)
    return view(nullptr, 0, false);
  if (length <= keep_)
    return view(kept_map(slot), static_cast<std::size_t>(length), false);
  // MAP_POPULATE: one walk over the pages instead of a fault per few pages while decoding.
  return view(map_range(slot, length, MAP_POPULATE), static_cast<std::size_t>(length), true);
}

void value_arena::clear(std::uint64_t slot, std::uint64_t length, std::uint64_t from) const noexcept {
  const std::uint64_t end = std::min(span_, (length + page - 1) & ~(page - 1));
  if (end <= from)
    return;
  // Cannot fail on a memfd we created (sealing does not forbid holes); nothing to report.
  (void)::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(slot * span_ + from),
                    static_cast<off_t>(end - from));
}

void value_arena::clear_extent(void* arena, std::uint64_t slot) noexcept {
  const auto* a = static_cast<const value_arena*>(arena);
  a->clear(slot, a->span());
  store_relaxed(a->ready_[slot], 0);
}

}  // namespace corio::detail
