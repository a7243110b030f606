#include "value_arena.hpp"

#include "../../runtime/errors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <string>

namespace corio::detail {

namespace {

constexpr std::uint64_t page = 4096;  // extents start on multiples of span (>= a page): aligned

std::uint64_t span_for(std::uint64_t slot_count) noexcept {
  std::uint64_t span = std::min(std::uint64_t{1} << 40, (std::uint64_t{1} << 62) / slot_count);
  rlimit fsize{};
  if (::getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY)
    span = std::min<std::uint64_t>(span, fsize.rlim_cur / slot_count);
  span = std::bit_floor(span);
  return span < page ? 0 : span;
}

std::string bytes_text(std::uint64_t n) { return std::to_string(n) + "-byte value"; }

}  // namespace

value_arena::value_arena(std::uint64_t slot_count, const char* name_for_debug) : span_(span_for(slot_count)) {
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

value_arena::~value_arena() { ::close(fd_); }

void value_arena::write(std::uint64_t slot, std::span<const std::byte> bytes) const {
  const auto base = static_cast<off_t>(slot * span_);
  std::size_t done = 0;
  while (done < bytes.size()) {
    // One call moves at most 0x7ffff000 bytes (Linux's limit for any read or write).
    const std::size_t chunk = std::min<std::size_t>(bytes.size() - done, std::size_t{1} << 30);
    const ssize_t n = ::pwrite(fd_, bytes.data() + done, chunk, base + static_cast<off_t>(done));
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    const int e = n < 0 ? errno : ENOSPC;
    clear(slot, done);
    throw_errno(e, "corio::queue::put: storing a " + bytes_text(bytes.size()) + " in shared memory (" +
                       std::to_string(done) + " bytes stored)");
  }
}

value_arena::view::~view() {
  if (length_ != 0)
    ::munmap(const_cast<std::byte*>(data_), length_);
}

value_arena::view value_arena::map(std::uint64_t slot, std::uint64_t length) const {
  if (length == 0)
    return view(nullptr, 0);
  // MAP_POPULATE: one walk over the pages instead of a fault per few pages while decoding.
  void* p = ::mmap(nullptr, static_cast<std::size_t>(length), PROT_READ, MAP_SHARED | MAP_POPULATE, fd_,
                   static_cast<off_t>(slot * span_));
  if (p == MAP_FAILED)
    throw_errno(errno, "corio::queue::get: mapping a " + bytes_text(length) + " from shared memory (the value is lost)");
  return view(static_cast<const std::byte*>(p), static_cast<std::size_t>(length));
}

void value_arena::clear(std::uint64_t slot, std::uint64_t length) const noexcept {
  if (length == 0)
    return;
  const std::uint64_t rounded = std::min(span_, (length + page - 1) & ~(page - 1));
  // Cannot fail on a memfd we created (sealing does not forbid holes); nothing to report.
  (void)::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(slot * span_),
                    static_cast<off_t>(rounded));
}

void value_arena::clear_extent(void* arena, std::uint64_t slot) noexcept {
  const auto* a = static_cast<const value_arena*>(arena);
  a->clear(slot, a->span());
}

}  // namespace corio::detail
