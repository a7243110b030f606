#pragma once
// Recycles coroutine frames through per-thread free lists by size class.
//
// Frame allocation is the dominant cost of a short coroutine (design.md), so every
// promise type in corio routes operator new/delete here. A freed frame goes to the free
// list of the thread that frees it, whichever thread allocated it: blocks come from the
// global heap, so crossing threads is safe, and a frame that migrates between shards
// just changes lists. Lists are bounded, so a burst never pins memory forever.
//
// Under AddressSanitizer (CORIO_NO_FRAME_POOL) every frame goes straight to the heap:
// recycling would hide a use-after-free of a destroyed frame.

#include <cstddef>
#include <new>

namespace corio::detail {

class frame_allocator {
 public:
  static constexpr std::size_t granule = 64;
  static constexpr std::size_t classes = 16;  // frames up to 1 KiB are recycled
  static constexpr std::size_t max_cached_per_class = 256;

  static void* allocate(std::size_t size);
  static void deallocate(void* p, std::size_t size) noexcept;

 private:
  struct free_block {
    free_block* next;
  };
  struct cache {
    free_block* head[classes] = {};
    unsigned short count[classes] = {};
    bool alive = true;
    ~cache();
  };
  static cache& local() noexcept {
    static thread_local cache c;
    return c;
  }
  static constexpr std::size_t class_of(std::size_t size) noexcept {
    return (size - 1) / granule;
  }
  static void release_all(cache& c) noexcept;
  friend struct cache;
};

// Promise types inherit this to get recycled frames.
struct recycled_frame {
  static void* operator new(std::size_t size) { return frame_allocator::allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept {
    frame_allocator::deallocate(p, size);
  }
};

#ifdef CORIO_NO_FRAME_POOL

inline void* frame_allocator::allocate(std::size_t size) { return ::operator new(size); }
inline void frame_allocator::deallocate(void* p, std::size_t) noexcept { ::operator delete(p); }

#else

inline void* frame_allocator::allocate(std::size_t size) {
  const std::size_t k = class_of(size);
  if (k < classes) {
    cache& c = local();
    if (free_block* b = c.head[k]) {
      c.head[k] = b->next;
      --c.count[k];
      return b;
    }
    // Allocate the full class size so the block can serve any frame of its class.
    return ::operator new((k + 1) * granule);
  }
  return ::operator new(size);
}

inline void frame_allocator::deallocate(void* p, std::size_t size) noexcept {
  const std::size_t k = class_of(size);
  if (k < classes) {
    cache& c = local();
    // After this thread's cache is destroyed (frames freed by later thread_local or static
    // destructors), fall through to the heap instead of touching a dead list.
    if (c.alive && c.count[k] < max_cached_per_class) {
      auto* b = static_cast<free_block*>(p);
      b->next = c.head[k];
      c.head[k] = b;
      ++c.count[k];
      return;
    }
    ::operator delete(p);
    return;
  }
  ::operator delete(p);
}

inline frame_allocator::cache::~cache() {
  alive = false;
  frame_allocator::release_all(*this);
}

inline void frame_allocator::release_all(cache& c) noexcept {
  for (std::size_t k = 0; k < classes; ++k) {
    while (free_block* b = c.head[k]) {
      c.head[k] = b->next;
      ::operator delete(b);
    }
    c.count[k] = 0;
  }
}

#endif

}  // namespace corio::detail
