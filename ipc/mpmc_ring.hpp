#pragma once
// corio::mpmc_ring — bounded messages from many producers to many consumers, in any threads
// of any processes, through a block of shared memory (a shm_region, or any memory all sides
// can address). The ring under corio::queue<T>.
//
// The technique: an array of fixed-size slots, each with its own sequence number, and two
// shared positions (enqueue_pos, dequeue_pos) that only grow. The sequence number says whose
// turn a slot is, for position p (slot p & mask):
//     seq == p        the slot is free for the producer that claims position p
//     seq == p + 1    it holds the message of position p, ready for the consumer of p
//     seq == p + cap  the consumer of p is done: free for the producer of p + cap
// A producer claims p by advancing enqueue_pos from p to p + 1 (compare-exchange) only
// after it saw seq == p; a consumer claims p by advancing dequeue_pos likewise after it saw
// seq == p + 1. The claim makes the claimer the slot's only user until it stores the next
// sequence value, so payload bytes are plain memory with no atomics.
//
// Ownership and ordering (style.md, habit 4)
// - Producers: any number of threads in any processes call try_push. Consumers: any number
//   call try_pop / try_pop_with. Format once, before anyone else touches the memory; other
//   processes inherit the ring through fork() or call attach(). An mpmc_ring object is an
//   immutable view (pointers and sizes): any thread may share one object.
// - Shared layout: a 192-byte header, then slot_count slots of slot_stride bytes each.
//     line 0: magic, slot_count, slot_stride, max_payload — written once by format(),
//             published by a release store of magic, read by attach() after an acquire
//             load of magic; immutable afterwards.
//     line 1: enqueue_pos — claimed by producers (relaxed compare-exchange).
//     line 2: dequeue_pos — claimed by consumers (relaxed compare-exchange).
//     slot:   sequence (4 bytes), length (4 bytes), then max_payload bytes, the stride
//             rounded up to 8. Small slots share cache lines on purpose: with 8-byte
//             messages four slots fill a line, so a consumer draining a backlog takes one
//             line transfer per four messages instead of one per message. The price is
//             false sharing when a consumer chases a producer slot by slot; the throughput
//             case (a backlog) wins, measured in bench/bench_ipc_queue.cpp.
//   Both positions are apart from each other and from line 0 so that producers hammering
//   enqueue_pos never invalidate the line consumers claim from, and vice versa.
// - Pairing: the producer writes length and payload, then store_release(seq, p + 1); the
//   consumer's load_acquire(seq) == p + 1 makes them visible. The consumer reads them, then
//   store_release(seq, p + cap); the next producer's load_acquire(seq) == p + cap
//   guarantees the reads are over before it overwrites the bytes. The compare-exchanges on
//   the positions carry no data (the sequence numbers do), so they are relaxed: all they
//   must give is a unique winner per position, which any atomic read-modify-write does.
// - Positions are 64-bit counters: they never wrap in practice (centuries at 10^9/s); the
//   slot of p is p & (slot_count - 1), slot_count a power of two. Sequence numbers keep the
//   low 32 bits of a position and are compared as signed 32-bit differences, which is
//   exact while slot_count <= 2^30. A stale 32-bit match cannot hand out a slot twice: a
//   claim is a compare-exchange of the full 64-bit position, which fails unless the
//   position is still current.
//
// Messages: at most max_payload() bytes (set at format); a larger one throws
// std::length_error naming both sizes, before anything is claimed: never truncated, never
// dropped. Zero-length messages are allowed.
//
// Torn messages are impossible: a consumer reads a slot only after it saw the producer's
// release store of seq == p + 1, made after the whole payload was copied.
//
// A process that dies inside a claim (the accepted cost of having no lock and no helper):
// - a producer killed between its claim and its release store leaves slot p at seq == p
//   forever. Consumers never read it (no torn message), but the consumer of position p
//   sees "empty" there, and since positions are consumed in order, so does every consumer
//   after it: messages published at later positions stay in the ring, and producers get
//   "full" once the ring wraps back to p. The ring is then blocked, not corrupted.
// - a consumer killed between its claim and its release store likewise leaves slot p
//   unreleased (its message is lost with the consumer): producers see "full" when they
//   wrap around to p.
// Why accept it: the window is one memcpy of at most max_payload bytes, with no system call
// and no wait inside, so only SIGKILL (or a crash in that memcpy) can hit it. Recovering
// would need per-slot owner pids and a repair protocol that slows every message; a program
// that must survive killed peers recreates its queue after a peer died. A killed process
// never corrupts the messages of others, and never makes a consumer read garbage.
//
// Errors: std::length_error (a message larger than max_payload), std::invalid_argument
// (memory too small or misaligned, bad sizes, not formatted, a pop buffer smaller than
// max_payload), std::runtime_error (a corrupt length read from shared memory — memory
// that a non-ring wrote into).

#include "detail/shared_atomic.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>

namespace corio {

namespace detail {

struct mpmc_ring_header {
  alignas(64) std::uint64_t magic;  // mpmc_ring_magic once format() is complete
  std::uint64_t slot_count;         // a power of two
  std::uint64_t slot_stride;        // bytes per slot, stride_for(max_payload)
  std::uint64_t max_payload;        // largest message, < 2^32
  alignas(64) std::uint64_t enqueue_pos;  // next position producers claim
  alignas(64) std::uint64_t dequeue_pos;  // next position consumers claim
};
static_assert(sizeof(mpmc_ring_header) == 192);
static_assert(alignof(mpmc_ring_header) == 64);
static_assert(offsetof(mpmc_ring_header, enqueue_pos) == 64);
static_assert(offsetof(mpmc_ring_header, dequeue_pos) == 128);
static_assert(std::is_trivially_copyable_v<mpmc_ring_header>);
static_assert(std::is_standard_layout_v<mpmc_ring_header>);

// The fixed part of a slot; the payload follows it.
struct mpmc_slot {
  std::uint32_t sequence;  // low 32 bits of whose turn it is (see the top of the file)
  std::uint32_t length;    // payload bytes; written by the producer before its release
};
static_assert(sizeof(mpmc_slot) == 8);
static_assert(std::is_trivially_copyable_v<mpmc_slot>);

inline constexpr std::uint64_t mpmc_ring_magic = 0x636f72696f4d504dULL;  // "corioMPM"

[[noreturn]] void throw_mpmc_oversize(std::size_t bytes, std::size_t max_payload);
[[noreturn]] void throw_mpmc_corrupt(std::uint32_t length, std::uint64_t position, std::size_t max_payload);
[[noreturn]] void throw_mpmc_small_buffer(std::size_t bytes, std::size_t max_payload);

}  // namespace detail

class mpmc_ring {
 public:
  static constexpr std::size_t header_bytes = sizeof(detail::mpmc_ring_header);

  // Bytes per slot for messages of up to max_payload bytes.
  [[nodiscard]] static constexpr std::size_t stride_for(std::size_t max_payload) noexcept {
    return (sizeof(detail::mpmc_slot) + max_payload + 7) & ~std::size_t{7};
  }
  // Memory needed for `slots` slots (rounded up to a power of two, at least 2) carrying
  // messages of up to max_payload bytes. Throws std::invalid_argument for absurd sizes.
  [[nodiscard]] static std::size_t bytes_for(std::size_t slots, std::size_t max_payload);

  // Lays a new, empty ring over `memory` (64-byte aligned, at least bytes_for(slots,
  // max_payload) bytes). Call once, before any other side attaches.
  [[nodiscard]] static mpmc_ring format(std::span<std::byte> memory, std::size_t slots, std::size_t max_payload);
  // Uses a ring that format() laid out, e.g. in memory received with shm_region::receive.
  [[nodiscard]] static mpmc_ring attach(std::span<std::byte> memory);

  [[nodiscard]] std::size_t capacity() const noexcept { return static_cast<std::size_t>(mask_ + 1); }
  [[nodiscard]] std::size_t max_payload() const noexcept { return static_cast<std::size_t>(max_payload_); }

  // Copies one message into the ring. false: the ring is full right now (or blocked by a
  // dead producer, see the top of the file). Throws std::length_error if the message is
  // larger than max_payload(); nothing is claimed then.
  bool try_push(std::span<const std::byte> message) {
    const std::uint64_t n = message.size();
    if (n > max_payload_) [[unlikely]]
      detail::throw_mpmc_oversize(message.size(), max_payload());
    std::uint64_t pos = detail::load_relaxed(header_->enqueue_pos);
    detail::mpmc_slot* slot;
    for (;;) {
      slot = slot_at(pos);
      // Acquire: the previous consumer of this slot finished reading before we overwrite.
      const std::uint32_t seq = detail::load_acquire(slot->sequence);
      const auto diff = static_cast<std::int32_t>(seq - static_cast<std::uint32_t>(pos));
      if (diff == 0) {
        if (detail::compare_exchange_relaxed(header_->enqueue_pos, pos, pos + 1))
          break;  // pos is ours; on failure pos was reloaded
      } else if (diff < 0) {
        return false;  // the slot still holds the message of pos - capacity: full
      } else {
        pos = detail::load_relaxed(header_->enqueue_pos);  // another producer took pos
      }
    }
    // The slots a lap ahead were last written by a consumer's core: ask for them in
    // exclusive state now, so a later push does not stall on the transfer.
    __builtin_prefetch(slot_at(pos + prefetch_distance), 1);
    slot->length = static_cast<std::uint32_t>(n);
    if (n != 0)
      std::memcpy(payload_of(slot), message.data(), n);
    detail::store_release(slot->sequence, static_cast<std::uint32_t>(pos + 1));  // length and payload written
    return true;
  }

  // Claims the oldest published message and calls f(std::span<const std::byte>) on its
  // bytes in place, then frees the slot. false: nothing to pop right now. If f throws, the
  // slot is freed anyway and the message is gone (it cannot be put back in order).
  template <class F>
  bool try_pop_with(F&& f) {
    std::uint64_t pos = detail::load_relaxed(header_->dequeue_pos);
    detail::mpmc_slot* slot;
    for (;;) {
      slot = slot_at(pos);
      // Acquire: the producer's length and payload are visible once seq says published.
      const std::uint32_t seq = detail::load_acquire(slot->sequence);
      const auto diff = static_cast<std::int32_t>(seq - static_cast<std::uint32_t>(pos + 1));
      if (diff == 0) {
        if (detail::compare_exchange_relaxed(header_->dequeue_pos, pos, pos + 1))
          break;
      } else if (diff < 0) {
        return false;  // not published yet (or never: a dead producer): empty
      } else {
        pos = detail::load_relaxed(header_->dequeue_pos);  // another consumer took pos
      }
    }
    struct release_guard {
      detail::mpmc_slot* slot;
      std::uint32_t next;
      ~release_guard() { detail::store_release(slot->sequence, next); }  // done reading the bytes
    } guard{slot, static_cast<std::uint32_t>(pos + mask_ + 1)};
    const std::uint32_t n = slot->length;
    if (n > max_payload_) [[unlikely]]
      detail::throw_mpmc_corrupt(n, pos, max_payload());
    f(std::span<const std::byte>(payload_of(slot), static_cast<std::size_t>(n)));
    return true;
  }

  // Copies the oldest published message into `out` and returns its length; nullopt if
  // none. `out` must hold max_payload() bytes (std::invalid_argument otherwise), so a
  // message is never truncated.
  std::optional<std::size_t> try_pop(std::span<std::byte> out) {
    if (out.size() < max_payload_) [[unlikely]]
      detail::throw_mpmc_small_buffer(out.size(), max_payload());
    std::size_t length = 0;
    if (!try_pop_with([&](std::span<const std::byte> m) {
          length = m.size();
          if (length != 0)
            std::memcpy(out.data(), m.data(), length);
        }))
      return std::nullopt;
    return length;
  }

  // Messages claimed by producers and not yet claimed by consumers, in [0, capacity()].
  // Approximate under concurrency (the two positions are read one after the other), like
  // Python's qsize(); exact when nobody pushes or pops.
  [[nodiscard]] std::size_t size() const noexcept {
    const std::uint64_t deq = detail::load_relaxed(header_->dequeue_pos);
    const std::uint64_t enq = detail::load_relaxed(header_->enqueue_pos);
    const auto diff = static_cast<std::int64_t>(enq - deq);
    if (diff <= 0)
      return 0;
    return static_cast<std::uint64_t>(diff) > mask_ + 1 ? capacity() : static_cast<std::size_t>(diff);
  }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  // Hints for spinning waiters, exact only without concurrent peers of the same side:
  // whether the slot `ahead` positions past the next push is free (a producer that waits
  // for it moves on with several slots, and cache lines, to fill instead of trading the
  // line of the one slot a consumer just freed), and whether the message `ahead`
  // positions past the next pop is published.
  [[nodiscard]] bool room_ahead(std::uint64_t ahead) const noexcept {
    const std::uint64_t pos = detail::load_relaxed(header_->enqueue_pos) + ahead;
    const std::uint32_t seq = detail::load_relaxed(slot_at(pos)->sequence);
    return static_cast<std::int32_t>(seq - static_cast<std::uint32_t>(pos)) >= 0;
  }
  [[nodiscard]] bool published_ahead(std::uint64_t ahead) const noexcept {
    const std::uint64_t pos = detail::load_relaxed(header_->dequeue_pos) + ahead;
    const std::uint32_t seq = detail::load_relaxed(slot_at(pos)->sequence);
    return static_cast<std::int32_t>(seq - static_cast<std::uint32_t>(pos + 1)) >= 0;
  }

 private:
  mpmc_ring(detail::mpmc_ring_header* h, std::byte* slots, std::uint64_t count, std::uint64_t stride,
            std::uint64_t max_payload) noexcept
      : header_(h), slots_(slots), mask_(count - 1), stride_(stride), max_payload_(max_payload) {}

  [[nodiscard]] detail::mpmc_slot* slot_at(std::uint64_t pos) const noexcept {
    return reinterpret_cast<detail::mpmc_slot*>(slots_ + (pos & mask_) * stride_);
  }
  [[nodiscard]] static std::byte* payload_of(detail::mpmc_slot* s) noexcept {
    return reinterpret_cast<std::byte*>(s) + sizeof(detail::mpmc_slot);
  }

  static constexpr std::uint64_t prefetch_distance = 32;  // slots

  // Immutable after construction (copied from line 0 of the header).
  detail::mpmc_ring_header* header_;
  std::byte* slots_;
  std::uint64_t mask_;
  std::uint64_t stride_;
  std::uint64_t max_payload_;
};

}  // namespace corio
