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
// beyond its first keep() bytes before it frees the slot; a process that recovers a dead
// claimer's slot punches the whole extent first (mpmc_ring's cleanup). So the extent of a
// free slot holds at most keep() bytes: the arena holds the values in flight plus at most
// slot_count x keep() bytes (the keep budget, queue_options::arena_keep_bytes), and a
// process that dies anywhere in a put or a get leaves nothing behind once its claim is
// recovered.
//
// Why keep pages: allocating a value's pages in the producer's pwrite (the kernel zeroes
// each, adds it to the page cache and the LRU) and freeing them at the consumer's punch
// cost more than the copies themselves, and the two sides contend on the file's inode
// lock (measured with perf on BM_queue_1MB: over half the time). Pages kept in a slot's
// extent are overwritten by the next large value of that slot: one copy, no allocation.
// For the same reason each process maps the kept part of an extent once, the first time
// it writes or reads a value of at most keep() bytes in that slot, and keeps the mapping
// (at most slot_count x keep() bytes of address space, the keep budget): mapping,
// populating and unmapping 256 page-table entries per value cost a third of the rest. A
// larger value is mapped for its get only.
// And a producer writes through that mapping, not pwrite, when the pages are known to
// be there: pwrite's per-page work (a page-cache lookup, lock, unlock and dirtying per
// 4 KiB) cost more than its copy. A store through a mapping into a hole allocates the
// page in the fault and raises SIGBUS where memory cannot back it, so the slot's word in
// shared memory (`ready`, one per slot, next to the ring) records how many bytes at the
// start of the extent hold pages: set by the producer after its pwrite, cleared by
// whoever punches from the start (a failed write, a recovery), read and clamped to
// keep() by the next producer; like the extent, it is touched only under the slot's
// claim, so relaxed loads and stores do (the claim words order them). A peer that lies
// in it or punches kept pages makes a store fault in a page, which only fails when the
// machine is out of memory.
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
// file's size, so reading a mapped extent never faults. A process that received the
// queue from another program (ipc/handoff.hpp) did not make the file: it adopts the fd
// only once its seals and its size match the ring it came with (the adopting
// constructor), so the same holds there.
//
// Sizes: span() = min(2^40, 2^62 / slot_count, RLIMIT_FSIZE / slot_count) rounded down
// to a power of two: a file longer than RLIMIT_FSIZE would get SIGXFSZ from ftruncate.
// A span below a page (a tiny RLIMIT_FSIZE) disables the arena: span() is 0.
// keep() = keep_budget / slot_count rounded down to pages (at most span()).
//
// Who may touch the object: any thread; it is immutable after construction but for the
// kept mappings, one per slot, each filled once by the thread that holds the slot's claim
// (so never by two threads at a time) and read by later claimants, which the slot's claim
// word orders after it. Owned by queue_core; its destructor unmaps and closes the fd in
// the process that runs it (every process releases its own copies).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace corio::detail {

class value_arena {
 public:
  // Throws std::system_error (memfd_create, ftruncate, sealing), naming the sizes.
  // ready: slot_count words of zero-filled shared memory, living as long as the arena.
  value_arena(std::uint64_t slot_count, std::uint64_t keep_budget, std::uint64_t* ready, const char* name_for_debug);
  // The arena of a queue another process made (ipc/handoff.hpp), from its fd and the span
  // and keep its sender announced, none of them trusted. Takes `fd` (sets it to -1; a
  // refusal closes it) and throws std::invalid_argument naming what is wrong unless the
  // fd is a memfd sealed as shm_region seals (its size is final), exactly slot_count x
  // span bytes long, span is 0 or a power of two between a page and the bounds of
  // "Sizes", keep is whole pages and at most span, and the file is no longer than this
  // process's RLIMIT_FSIZE (a pwrite past it would raise SIGXFSZ). Every access stays
  // below slot_count x span, so a sender that lied cannot make this process fault.
  value_arena(int& fd, std::uint64_t slot_count, std::uint64_t span, std::uint64_t keep, std::uint64_t* ready);
  value_arena(const value_arena&) = delete;
  value_arena& operator=(const value_arena&) = delete;
  ~value_arena();

  // The largest value, in bytes; 0 when the arena is disabled (see "Sizes").
  [[nodiscard]] std::uint64_t span() const noexcept { return span_; }
  // Bytes at the start of each extent whose pages a consumer leaves for the next value.
  [[nodiscard]] std::uint64_t keep() const noexcept { return keep_; }
  // The memfd (close-on-exec), owned by the arena: what a handoff sends.
  [[nodiscard]] int fd() const noexcept { return fd_; }

  // Copies head, then body, into slot's extent (together at most span()). Throws
  // std::system_error naming the size when memory cannot back them; the extent is a hole
  // again then.
  void write(std::uint64_t slot, std::span<const std::byte> head, std::span<const std::byte> body) const;

  // A read-only mapping of the first `length` bytes of a slot's extent (length <= span()):
  // a window into the slot's kept mapping, or a mapping of its own (owned: unmapped by
  // the destructor).
  class view {
   public:
    view(const std::byte* data, std::size_t length, bool owned) noexcept
        : data_(data), length_(length), owned_(owned) {}
    view(const view&) = delete;
    view& operator=(const view&) = delete;
    ~view();
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, length_}; }

   private:
    const std::byte* data_;
    std::size_t length_;
    bool owned_;
  };
  // Throws std::system_error naming the size when the mapping cannot be made (ENOMEM:
  // address space, RLIMIT_AS).
  [[nodiscard]] view map(std::uint64_t slot, std::uint64_t length) const;

  // Punches the extent's bytes [from, length) (rounded out to pages) into a hole.
  void clear(std::uint64_t slot, std::uint64_t length, std::uint64_t from = 0) const noexcept;
  // clear(slot, span()) for mpmc_ring::recover's cleanup; arena is a value_arena*.
  static void clear_extent(void* arena, std::uint64_t slot) noexcept;

  // Empties an extent beyond keep() when it goes out of scope: a consumer's guard,
  // declared before the view so that the mapping is gone before the pages are.
  struct emptier {
    const value_arena& arena;
    std::uint64_t slot;
    std::uint64_t length;
    ~emptier() { arena.clear(slot, length, arena.keep()); }
  };

 private:
  [[nodiscard]] const std::byte* map_range(std::uint64_t slot, std::uint64_t length, int flags) const;
  [[nodiscard]] std::byte* kept_map(std::uint64_t slot) const;
  // pwrite()s all of bytes at offset `at` of slot's extent; false with errno set if not.
  [[nodiscard]] bool write_at(std::uint64_t slot, std::uint64_t at, std::span<const std::byte> bytes,
                              std::uint64_t& done) const;

  int fd_ = -1;
  std::uint64_t span_ = 0;
  std::uint64_t keep_ = 0;
  std::uint64_t slot_count_ = 0;
  std::uint64_t* ready_ = nullptr;  // shared: bytes at the start of each extent that hold pages
  // Per slot: this process's mapping of the extent's first keep() bytes, or null.
  std::unique_ptr<std::atomic<std::byte*>[]> kept_maps_;
};

}  // namespace corio::detail
