// Mapping, guarding and per-thread caching of fiber stacks (detail/stack_pool.hpp).

#include "detail/stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <limits>
#include <new>
#include <string>
#include <system_error>

#include "detail/sanitizer_fiber.hpp"

namespace corio::detail {
namespace {

// A cached stack's free-list link lives in its own first bytes: the cache owns no memory
// of its own, so it cannot fail and costs nothing to keep.
struct free_stack {
  free_stack* next;
};

struct size_bucket {
  std::size_t size = 0;  // of the stacks it holds; an empty bucket may take another size
  std::size_t count = 0;
  free_stack* head = nullptr;
};

// Set when the calling thread's cache has been destroyed (thread exit). A fiber destroyed
// by a later thread_local or static destructor then unmaps its stack instead of touching a
// dead cache. Trivially destructible, so it outlives the cache.
thread_local bool cache_gone = false;

struct stack_cache {
  size_bucket buckets[stack_pool::max_cached_sizes];

  ~stack_cache() {
    stack_pool::release_cached();
    cache_gone = true;
  }
};

stack_cache& local_cache() noexcept {
  static thread_local stack_cache cache;
  return cache;
}

[[noreturn]] void throw_stack_error(int err, const char* what, std::size_t bytes) {
  throw std::system_error(err, std::generic_category(),
                          std::string(what) + " fiber stack of " + std::to_string(bytes) +
                              " bytes");
}

}  // namespace

std::size_t stack_pool::page_size() noexcept {
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

std::size_t stack_pool::rounded_size(std::size_t requested) noexcept {
  const std::size_t page = page_size();
  if (requested < min_size) requested = min_size;
  // Saturate instead of wrapping: an absurd request must fail in mmap, not shrink.
  if (requested > std::numeric_limits<std::size_t>::max() - 2 * page)
    return std::numeric_limits<std::size_t>::max() / page * page;
  return (requested + page - 1) / page * page;
}

fiber_stack stack_pool::map(std::size_t size) {
  const std::size_t page = page_size();
  const std::size_t usable = rounded_size(size);
  if (usable > std::numeric_limits<std::size_t>::max() - page)
    throw_stack_error(ENOMEM, "mmap", usable);
  const std::size_t total = usable + page;
  void* start = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (start == MAP_FAILED) throw_stack_error(errno, "mmap", total);
  // The guard is the lowest page because stacks grow down.
  if (::mprotect(start, page, PROT_NONE) != 0) {
    const int err = errno;
    ::munmap(start, total);
    throw_stack_error(err, "mprotect guard page of", total);
  }
  return {static_cast<char*>(start) + page, usable};
}

void stack_pool::unmap(fiber_stack stack) noexcept {
  if (stack.low == nullptr) return;
  const std::size_t page = page_size();
  sanitizer_fiber::unpoison_stack(stack.low, stack.size);
  // munmap of a range we mapped ourselves cannot fail.
  ::munmap(static_cast<char*>(stack.low) - page, stack.size + page);
}

fiber_stack stack_pool::allocate(std::size_t size) {
  const std::size_t usable = rounded_size(size);
  if (cache_gone) return map(usable);
  for (size_bucket& b : local_cache().buckets) {
    if (b.size == usable && b.head != nullptr) {
      free_stack* s = b.head;
      b.head = s->next;
      --b.count;
      return {s, usable};
    }
  }
  return map(usable);
}

void stack_pool::deallocate(fiber_stack stack) noexcept {
  if (stack.low == nullptr) return;
  // Frames abandoned on the stack (the fiber's entry frame never returns) leave ASan
  // shadow poisoned; the next fiber on this memory must start clean.
  sanitizer_fiber::unpoison_stack(stack.low, stack.size);
  if (!cache_gone) {
    size_bucket* target = nullptr;
    for (size_bucket& b : local_cache().buckets) {
      if (b.size == stack.size) {
        target = &b;
        break;
      }
      // An empty bucket may be taken over by another size.
      if (target == nullptr && b.count == 0) target = &b;
    }
    if (target != nullptr && target->count < max_cached_per_size) {
      target->size = stack.size;
      auto* s = ::new (stack.low) free_stack{target->head};
      target->head = s;
      ++target->count;
      return;
    }
  }
  unmap(stack);
}

std::size_t stack_pool::cached() noexcept {
  if (cache_gone) return 0;
  std::size_t n = 0;
  for (const size_bucket& b : local_cache().buckets) n += b.count;
  return n;
}

void stack_pool::release_cached() noexcept {
  if (cache_gone) return;
  for (size_bucket& b : local_cache().buckets) {
    while (free_stack* s = b.head) {
      b.head = s->next;
      unmap({s, b.size});
    }
    b.count = 0;
    b.size = 0;
  }
}

}  // namespace corio::detail
