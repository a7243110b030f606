#pragma once
// spsc_queue<T>: a bounded, lock-free queue from exactly one producer thread to exactly
// one consumer thread of the same process. The runtime keeps one per ordered pair of
// shards (runtime.hpp); it is also usable on its own.
//
//     spsc_queue<int> q(1024);        // capacity rounded up to a power of two
//     q.try_push(7);                  // producer thread only: false when full
//     if (int* v = q.front()) {       // consumer thread only: nullptr when empty
//       use(*v);
//       q.pop();
//     }
//
// Protocol
// - Who: one producer thread calls try_push / try_emplace; one consumer thread calls
//   front / pop / try_pop. Which thread plays which role may change only across a
//   synchronisation (a thread join, a mutex), never while the other side is active.
//   The same thread may play both roles (a shard submitting to itself).
// - Indices: `tail_` (next slot to write) is owned by the producer: only it stores to it.
//   `head_` (next slot to read) is owned by the consumer. Both count up forever (64-bit:
//   no wrap in practice); the slot is `index & mask_`. Empty: head == tail. Full:
//   tail - head == capacity.
// - Ordering: the producer constructs the element in its slot and then publishes it with
//   a release store of tail_; the consumer's acquire load of tail_ pairs with it, so the
//   element's bytes are visible before the consumer reads them. Symmetrically the
//   consumer destroys the element and then frees the slot with a release store of head_;
//   the producer's acquire load of head_ pairs with it, so the destruction is finished
//   before the producer reuses the slot. Each side reads its own index relaxed (nobody
//   else writes it).
// - Caches: each side keeps a private copy of the other side's index (`cached_head_` for
//   the producer, `cached_tail_` for the consumer) and reloads the shared index only when
//   the copy says full (resp. empty). In a steady stream most operations touch no cache
//   line the other core writes.
// - Layout: the producer's line (tail_ + cached_head_), the consumer's line (head_ +
//   cached_tail_) and the read-only line (slots_, mask_) are separate cache lines, so the
//   two sides never invalidate each other's line by writing their own index (no false
//   sharing). Slots are plain storage; neighbouring slots may share a line, which only
//   matters while the queue is nearly empty or nearly full.
//
// Destroying the queue destroys the elements still in it; it must not race with either side.

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace corio::detail {

// 64 bytes on every x86-64 and most arm64 parts. std::hardware_destructive_interference_size
// is not used: GCC warns that its value may differ between compiler flags (an ABI hazard).
inline constexpr std::size_t cache_line = 64;

template <class T>
class spsc_queue {
  static_assert(std::is_nothrow_destructible_v<T>, "spsc_queue elements must not throw from a destructor");

 public:
  // Room for at least `capacity` elements (rounded up to a power of two, at least 1).
  explicit spsc_queue(std::size_t capacity) {
    if (capacity == 0 || capacity > (std::size_t{1} << 40))
      throw std::invalid_argument("corio::spsc_queue: capacity must be between 1 and 2^40");
    std::size_t n = 1;
    while (n < capacity) n <<= 1;
    shared_.mask = n - 1;
    shared_.slots = static_cast<slot*>(::operator new(n * sizeof(slot), std::align_val_t{alignof(slot)}));
  }
  spsc_queue(const spsc_queue&) = delete;
  spsc_queue& operator=(const spsc_queue&) = delete;
  ~spsc_queue() {
    while (front() != nullptr) pop();
    ::operator delete(shared_.slots, std::align_val_t{alignof(slot)});
  }

  std::size_t capacity() const noexcept { return shared_.mask + 1; }

  // --- Producer thread only ----------------------------------------------------------
  // Constructs an element in place; false (and nothing constructed) when full. If T's
  // constructor throws, the queue is unchanged.
  template <class... Args>
  bool try_emplace(Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args&&...>) {
    const std::uint64_t tail = producer_.tail.load(std::memory_order_relaxed);
    if (tail - producer_.cached_head == capacity()) {
      // Acquire: the consumer finished destroying the element in the slot we reuse.
      producer_.cached_head = consumer_.head.load(std::memory_order_acquire);
      if (tail - producer_.cached_head == capacity()) return false;
    }
    ::new (static_cast<void*>(&shared_.slots[tail & shared_.mask])) T(std::forward<Args>(args)...);
    // Release: the element is fully built before the consumer can see the new tail.
    producer_.tail.store(tail + 1, std::memory_order_release);
    return true;
  }
  bool try_push(const T& v) noexcept(std::is_nothrow_copy_constructible_v<T>) { return try_emplace(v); }
  bool try_push(T&& v) noexcept(std::is_nothrow_move_constructible_v<T>) { return try_emplace(std::move(v)); }

  // --- Consumer thread only ----------------------------------------------------------
  // The oldest element, or nullptr when empty. It stays valid until pop().
  T* front() noexcept {
    const std::uint64_t head = consumer_.head.load(std::memory_order_relaxed);
    if (head == consumer_.cached_tail) {
      // Acquire: pairs with the producer's release of tail; the element is visible.
      consumer_.cached_tail = producer_.tail.load(std::memory_order_acquire);
      if (head == consumer_.cached_tail) return nullptr;
    }
    return std::launder(reinterpret_cast<T*>(&shared_.slots[head & shared_.mask]));
  }
  // Destroys the oldest element. Precondition: front() returned non-null since the last pop.
  void pop() noexcept {
    const std::uint64_t head = consumer_.head.load(std::memory_order_relaxed);
    assert(head != consumer_.cached_tail && "corio::spsc_queue::pop on an empty queue");
    std::launder(reinterpret_cast<T*>(&shared_.slots[head & shared_.mask]))->~T();
    // Release: the element is destroyed before the producer may reuse its slot.
    consumer_.head.store(head + 1, std::memory_order_release);
  }
  // Moves the oldest element out into `out`; false when empty.
  bool try_pop(T& out) noexcept(std::is_nothrow_move_assignable_v<T>) {
    T* p = front();
    if (p == nullptr) return false;
    out = std::move(*p);
    pop();
    return true;
  }
  // Consumer's view; exact on the consumer thread (the producer may only add).
  bool empty() noexcept { return front() == nullptr; }

 private:
  struct slot {
    alignas(T) unsigned char bytes[sizeof(T)];
  };
  struct alignas(cache_line) producer_line {
    std::atomic<std::uint64_t> tail{0};  // written by the producer only
    std::uint64_t cached_head = 0;       // the producer's last view of head
  };
  struct alignas(cache_line) consumer_line {
    std::atomic<std::uint64_t> head{0};  // written by the consumer only
    std::uint64_t cached_tail = 0;       // the consumer's last view of tail
  };
  struct alignas(cache_line) shared_line {
    slot* slots = nullptr;  // read-only after construction
    std::uint64_t mask = 0;
  };

  static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the indices must be lock-free");
  static_assert(sizeof(producer_line) == cache_line && alignof(producer_line) == cache_line);
  static_assert(sizeof(consumer_line) == cache_line && alignof(consumer_line) == cache_line);
  static_assert(sizeof(shared_line) == cache_line && alignof(shared_line) == cache_line);

  shared_line shared_;
  producer_line producer_;
  consumer_line consumer_;
};

}  // namespace corio::detail
