#pragma once
// Stacks for fibers: mmap'd, guarded, recycled through a per-thread cache.
//
// One stack, addresses growing to the right (the stack itself grows to the left):
//
//     | guard page, PROT_NONE | usable: `size` bytes, read/write ..................... |
//     ^ start of the mapping  ^ low                                                   ^ high
//
// A fiber that overflows runs into the guard page and dies with SIGSEGV instead of
// silently overwriting whatever mapping lies below. Sizes are rounded up to whole pages
// and to at least min_size; the guard page is extra, outside `size`.
//
// Why a cache: mapping a stack costs mmap + mprotect, and unmapping it costs a munmap
// whose TLB shootdown interrupts every core running this process. Creating a fiber must
// not pay that, so a freed stack goes to the freeing thread's cache and the next
// allocation of the same size takes it back without a system call. The cache is bounded
// (max_cached_per_size stacks for each of at most max_cached_sizes distinct sizes);
// beyond that a stack is unmapped at once. A cached stack keeps the pages its last fiber
// dirtied resident: giving them back (madvise) would put a system call on the hot path.
// release_cached() unmaps the calling thread's cache; thread exit does the same.
//
// Who may touch it: every function works on the calling thread's cache only, so no
// locks. A stack mapped on one thread may be freed on another (mappings are
// process-wide): it simply joins the freeing thread's cache.
//
// Errors: a failed mmap or mprotect throws std::system_error naming what failed
// ("mmap fiber stack of 266240 bytes: Cannot allocate memory").

#include <cstddef>

namespace corio::detail {

// The usable part of a mapped stack; the guard page sits just below `low`.
struct fiber_stack {
  void* low = nullptr;
  std::size_t size = 0;

  void* high() const noexcept { return static_cast<char*>(low) + size; }
};

class stack_pool {
 public:
  static constexpr std::size_t default_size = 256 * 1024;
  // Boost.Context's context record, the fiber's control block and a few frames of the
  // entry function must fit with room to spare.
  static constexpr std::size_t min_size = 16 * 1024;
  static constexpr std::size_t max_cached_per_size = 64;
  static constexpr std::size_t max_cached_sizes = 8;

  static std::size_t page_size() noexcept;
  // The usable size a request for `requested` bytes gets: at least min_size, whole pages.
  static std::size_t rounded_size(std::size_t requested) noexcept;

  // A stack of rounded_size(size) usable bytes: from the cache when it has one.
  static fiber_stack allocate(std::size_t size);
  // Must be given a stack from allocate() or map() that nothing runs on any more.
  static void deallocate(fiber_stack stack) noexcept;

  // Stacks of every size in the calling thread's cache.
  static std::size_t cached() noexcept;
  // Unmaps every stack in the calling thread's cache.
  static void release_cached() noexcept;

  // Bypass the cache: a fresh mapping, and its removal.
  static fiber_stack map(std::size_t size);
  static void unmap(fiber_stack stack) noexcept;
};

}  // namespace corio::detail
