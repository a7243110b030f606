#pragma once
// The value arena of a corio::queue (ipc/queue.hpp): where a value whose encoding does
// not fit a ring slot travels.
//
// What it is: one memfd per queue, created with the queue (so every process fork()ed
// afterwards inherits it), slot_count x span() bytes long and sealed (F_SEAL_SHRINK |
// F_SEAL_GROW | F_SEAL_SEAL), but sparse: nothing is allocated until a producer writes.
// Ring slot i owns the extent [i x span, (i + 1) x span) of the file.
//
// Who touches an extent: only the process that holds slot i's claim in the ring
// (mpmc_ring.hpp, "External messages"). The producer pwrite()s the encoded value while it
// holds its claim and then publishes the slot; the consumer claims the slot, maps the
// value read-only, decodes it in place, unmaps it and punches the extent back into a hole
// before it frees the slot; a process that recovers a dead claimer's slot punches the
// whole extent first (mpmc_ring's cleanup). So the extent of a free slot is always a hole:
// the arena holds memory only for values in flight, and a process that dies anywhere in
// a put or a get leaves nothing behind once its claim is recovered.
//
// Why per-slot extents and not an allocator: the ring's claims already say who owns a
// slot, and they are recovered when their process dies; an allocator in shared memory
// would need owners and recovery of its own. The file's size costs nothing (a hole).
// Why pwrite on the producer side: a store through a shared mapping into a hole that
// memory cannot back faults with SIGBUS; pwrite returns ENOMEM / ENOSPC, which becomes
// an error naming the size. Why a mapping on the consumer side: decoding from it copies
// each byte once, and a 256 MiB value needs no second 256 MiB buffer.
//
// Trust: the length in a slot comes from a peer; the queue checks it against span()
// before map(). A peer can write any bytes into an extent or punch holes in it (the
// consumer then reads zeros, which decode checks like any bytes) but cannot change the
// file's size, so reading a mapped extent never faults.
//
// Sizes: span() = min(2^40, 2^62 / slot_count, RLIMIT_FSIZE / slot_count) rounded down
// to a power of two: a file longer than RLIMIT_FSIZE would get SIGXFSZ from ftruncate.
// A span below a page (a tiny RLIMIT_FSIZE) disables the arena: span() is 0.
//
// Who may touch the object: any thread; it is immutable after construction. Owned by
// queue_core, which closes the fd in its destructor (every process closes its copy).

#include <cstddef>
#include <cstdint>
#include <span>

namespace corio::detail {

class value_arena {
 public:
  // Throws std::system_error (memfd_create, ftruncate, sealing), naming the sizes.
  value_arena(std::uint64_t slot_count, const char* name_for_debug);
  value_arena(const value_arena&) = delete;
  value_arena& operator=(const value_arena&) = delete;
  ~value_arena();

  // The largest value, in bytes; 0 when the arena is disabled (see "Sizes").
  [[nodiscard]] std::uint64_t span() const noexcept { return span_; }

  // Copies bytes into slot's extent (bytes.size() <= span()). Throws std::system_error
  // naming the size when memory cannot back them; the extent is a hole again then.
  void write(std::uint64_t slot, std::span<const std::byte> bytes) const;

  // A read-only mapping of the first `length` bytes of a slot's extent (length <= span()).
  class view {
   public:
    view(const std::byte* data, std::size_t length) noexcept : data_(data), length_(length) {}
    view(const view&) = delete;
    view& operator=(const view&) = delete;
    ~view();
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, length_}; }

   private:
    const std::byte* data_;
    std::size_t length_;
  };
  // Throws std::system_error naming the size when the mapping cannot be made (ENOMEM:
  // address space, RLIMIT_AS).
  [[nodiscard]] view map(std::uint64_t slot, std::uint64_t length) const;

  // Punches the first `length` bytes (rounded up to pages) of slot's extent into a hole.
  void clear(std::uint64_t slot, std::uint64_t length) const noexcept;
  // clear(slot, span()) for mpmc_ring::recover's cleanup; arena is a value_arena*.
  static void clear_extent(void* arena, std::uint64_t slot) noexcept;

  // Empties an extent when it goes out of scope: a consumer's guard, declared before the
  // view so that the mapping is gone before the pages are.
  struct emptier {
    const value_arena& arena;
    std::uint64_t slot;
    std::uint64_t length;
    ~emptier() { arena.clear(slot, length); }
  };

 private:
  int fd_ = -1;
  std::uint64_t span_ = 0;
};

}  // namespace corio::detail
