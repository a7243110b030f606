#pragma once
// corio::mpmc_ring — bounded messages from many producers to many consumers, in any threads
// of any processes, through a block of shared memory (a shm_region, or any memory all sides
// can address). The ring under corio::queue<T>. A process killed at any instruction, even
// in the middle of a push or a pop, never wedges the others: its claim is recovered.
//
// The technique: an array of fixed-size slots, each with one 64-bit state word, and two
// shared positions (enqueue_pos, dequeue_pos) that say where to start looking. The state
// word holds a sequence number (low 32 bits) and a tag (high 32 bits). The sequence number
// says whose turn a slot is, for position p (slot p & mask):
//     seq == p        the slot is free for the producer of position p
//     seq == p + 1    it holds the message of position p, for the consumer of p
//     seq == p + cap  the consumer of p is done: free for the producer of p + cap
// The tag says who is inside: 0 in a free slot, the message length in a published one, and
// a claim mark (top bit set: the claimer's pid and start-time token, see "Owners") while a
// producer or consumer holds the slot:
//     {p, 0}          free for the producer of p       {p, mark}      producer of p inside
//     {p + 1, len}    message of p, published          {p + 1, mark}  consumer of p inside
// The claim IS the compare-exchange of the state word: a producer turns {p, 0} into
// {p, mark}, a consumer turns {p + 1, len} into {p + 1, mark}. So a slot never has an
// owner that the slot does not name: there is no instant, not even between two
// instructions, at which a process holds a slot while its word says otherwise. The claimer
// is then the slot's only user until it stores the next state ({p + 1, len} after the
// copy in, {p + cap, 0} after the copy out), so payload bytes are plain memory.
//
// Claims without a look first. A claim compare-exchange that follows a load of the same
// word costs more than one attempted blind (measured: the load takes the line shared, the
// compare-exchange then upgrades it, and even within one core the pair costs ~3.5 ns more
// per message on a backlog). So each side attempts its claim with the word it expects and
// learns the slot's state from a failure: a producer expects {p, 0}; a consumer expects
// {p + 1, len} with len the length the last message popped through this mpmc_ring object
// had (for a queue of one type of fixed size, always right). A wrong guess fails with the
// real word, and the second attempt uses its length.
//
// Positions are hints. After its claim, a claimer stores p + 1 into its side's position
// (a plain store, no read-modify-write). Every position below a stored value was claimed
// (or, for consumers, a dead producer's hole stepped over), by induction: a claimer
// starts at the position it read, and moves past a slot only when the slot's word shows
// the position taken. So a claimer never leaves a position behind. A
// hint can lag (its claimer has not stored yet) or even step back (two claimers' stores
// land out of order); a claimer that reads a stale hint finds the slot taken and moves on,
// jumping a whole lap at a time when the sequence number shows the slot laps ahead.
//
// Ownership and ordering (style.md, habit 4)
// - Producers: any number of threads in any processes call try_push. Consumers: any number
//   call try_pop / try_pop_with. Format once, before anyone else touches the memory; other
//   processes inherit the ring through fork() or call attach(). An mpmc_ring object is a
//   view (pointers and sizes, immutable, and a relaxed atomic length guess): any thread
//   may share one object.
// - Shared layout: a 192-byte header, then slot_count slots of slot_stride bytes each.
//     line 0: magic, slot_count, slot_stride, max_payload — written once by format(),
//             published by a release store of magic, read by attach() after an acquire
//             load of magic; immutable afterwards. Also `lost`, which only recovery
//             writes (rarely, so it may share the line nobody reads on the hot path).
//     line 1: enqueue_pos — the producers' hint (plain stores).
//     line 2: dequeue_pos — the consumers' hint.
//     slot:   state (8 bytes), then max_payload bytes, the stride rounded up to 8. Small
//             slots share cache lines on purpose: with 8-byte messages four slots fill a
//             line, so a consumer draining a backlog takes one line transfer per four
//             messages instead of one per message. The price is false sharing when a
//             consumer chases a producer slot by slot; the throughput case (a backlog)
//             wins, measured in bench/bench_ipc_queue.cpp.
//   Both positions are apart from each other and from line 0 so that producers storing
//   enqueue_pos never invalidate the line consumers read, and vice versa.
// - Pairing: the producer writes the payload, then store_release({p + 1, len}); the
//   consumer's claim, an acquire compare-exchange that reads that word, makes the bytes
//   visible. The consumer reads them, then store_release({p + cap, 0}); the next
//   producer's claim, acquire again, guarantees the reads are over before it overwrites
//   the bytes. A failed claim reads no payload: relaxed on failure. The positions carry
//   no data: relaxed.
// - Positions are 64-bit counters: they never wrap in practice (centuries at 10^9/s); the
//   slot of p is p & (slot_count - 1), slot_count a power of two. Sequence numbers keep the
//   low 32 bits of a position and are compared as signed 32-bit differences, which is
//   exact while slot_count <= 2^30 and no claimer is 2^31 positions behind. A state word
//   does not repeat within 2^32 positions (its sequence number grows with each use), so a
//   compare-exchange that expects a word seen earlier cannot succeed on a later lap.
//
// Messages: at most max_payload() bytes (set at format, < 2^30); a larger one throws
// std::length_error naming both sizes, before anything is claimed: never truncated, never
// dropped. Zero-length messages are allowed.
//
// External messages (try_push_external / the two-callback try_pop_with): a message whose
// bytes live outside the ring, in storage the layer above keeps per slot index (the queue's
// value arena, ipc/detail/value_arena.hpp). The producer claims the slot, fills the slot's
// storage through a callback while it holds the claim, writes the length (8 bytes) into
// the payload and publishes the tag mpmc_external. The consumer that claims such a slot
// gets (slot index, length) instead of bytes and reads the storage while it holds the
// claim. So the slot's claim word guards the external bytes exactly as it guards inline
// ones: whoever holds the claim is the storage's only user, and recovery of a dead
// claimer (below) runs a cleanup callback while it holds the slot itself. A producer whose
// fill callback throws publishes a hole (as if it had died, but not counted in lost()).
//
// Torn messages are impossible: a consumer claims a slot only after it saw the producer's
// release store of {p + 1, len}, made after the whole payload was copied.
//
// Processes that die inside a claim (the slow path)
// A producer killed between its claim and its publish leaves {p, mark}; a consumer killed
// between its claim and its release leaves {p + 1, mark}. Nobody else reads or writes such
// a slot, so consumers would see "empty" at p for ever (a dead producer), and producers
// "full" when they wrap around to it (either). Recovery:
// - A waiter that finds its side blocked asks blocking_claim() for the claim in its way: a
//   slot whose word carries a mark where the waiter needs a free or published slot. When
//   the same claim (the same word, in the same slot) is still there after a while (the
//   queue waits a millisecond), it calls recover(claim), which checks whether the owner's
//   process is alive (see "Owners"). Alive: nothing happens, however long it takes (a
//   stopped or descheduled process is slow, not dead). Dead: recover() replaces the word
//   by a compare-exchange and lost() grows by one. A dead consumer's {p + 1, mark} becomes
//   {p + cap, 0}, free for the next lap: its message is dropped with it. A dead
//   producer's {p, mark} becomes {p + 1, hole}: a published hole, which the first
//   consumer to reach p steps over by one compare-exchange to {p + cap, 0} (no claim, so
//   no consumer can die holding a hole; its half-written bytes are never read). Why not
//   free the slot for the next lap at once: then a slot could move a lap on before the
//   consumers passed its position, and a consumer that read a stale hint could no
//   longer trust a slot's lap to say that the positions before it were consumed (the
//   jump in next_position). This way consumers pass every position, in order, before
//   its slot serves the next lap, dead producer or not.
// - Recovery takes the claim over before it frees the slot: it compare-exchanges the dead
//   owner's word to the same sequence number with its own mark, runs the caller's cleanup
//   on the slot (the queue empties the slot's external storage there, so nobody can be
//   writing it), then stores the freed word. A recoverer that dies in between leaves a
//   claim of its own, recovered the same way.
// - Why a value is delivered once or counted lost, never both, never torn: a live claimer
//   is never recovered, so only the owner ever moves a word out of a claim while the owner
//   lives. Death is final: once the owner is dead, nobody but recoverers writes the word.
//   Each recoverer's compare-exchange expects the claim word it saw; the first one
//   replaces it with its own claim and then {p + 1, hole} or {p + cap, 0}, and the dead
//   claim word cannot come back (a hole is not a mark, a live recoverer's mark is not the
//   dead one's; a sequence number repeats only 2^32 positions later), so
//   every other recoverer's compare-exchange fails: exactly one recoverer frees the slot
//   and counts it. A stale recoverer, holding a word seen long ago, fails the same way.
//   The consumer's value was never handed to a live consumer (it was in the dead one's
//   hands), the producer's was never published: each counts once, in lost().
// - recover_all() sweeps every slot (queue::lost() calls it): a dead claim that no waiter
//   ran into yet is counted too.
//
// Owners: a claim mark is the top bit, the claimer's pid (22 bits: Linux's pid limit is
// 2^22) and a 9-bit token derived from the process start time (/proc/<pid>/stat, field 22,
// in clock ticks since boot; 0 when /proc cannot tell). A process is dead when its pid has
// no process (kill(pid, 0) fails with ESRCH), when it is a zombie (killed, not yet reaped
// by its parent; a zombie leader with live threads is alive), or when the pid now belongs
// to a process whose start time gives another token (pid reuse). A reused pid whose new
// start time gives the same token (1 in 511) would be taken for the dead owner, which
// only delays recovery. Only owners and recoverers ever write a claim word: the blind
// claims expect a word without a mark, so they fail on it. The mark is computed once
// per process and again in a child after fork() (pthread_atfork); processes sharing a
// ring must see one pid namespace and be made by fork() or exec, not raw clone(). They
// need not be related: /proc/<pid>/stat names any process of the machine, so a ring
// handed to an unrelated program (ipc/handoff.hpp, which refuses a sender from another
// pid namespace) recovers the same way. Not detected: a
// thread that ends inside a claim while its process lives on (another thread's execve).
//
// Errors: std::length_error (a message larger than max_payload), std::invalid_argument
// (memory too small or misaligned, bad sizes, not formatted, a pop buffer smaller than
// max_payload), std::runtime_error (a corrupt length read from shared memory — memory
// that a non-ring wrote into).

#include "detail/shared_atomic.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

namespace corio {

namespace detail {

struct mpmc_ring_header {
  alignas(64) std::uint64_t magic;  // mpmc_ring_magic once format() is complete
  std::uint64_t slot_count;         // a power of two
  std::uint64_t slot_stride;        // bytes per slot, stride_for(max_payload)
  std::uint64_t max_payload;        // largest inline message, < 2^30
  std::uint64_t lost;               // claims of dead processes recovered (see the top)
  alignas(64) std::uint64_t enqueue_pos;  // hint: every position below it was claimed by a producer
  alignas(64) std::uint64_t dequeue_pos;  // hint: every position below it was claimed by a consumer
};
static_assert(sizeof(mpmc_ring_header) == 192);
static_assert(alignof(mpmc_ring_header) == 64);
static_assert(offsetof(mpmc_ring_header, enqueue_pos) == 64);
static_assert(offsetof(mpmc_ring_header, dequeue_pos) == 128);
static_assert(std::is_trivially_copyable_v<mpmc_ring_header>);
static_assert(std::is_standard_layout_v<mpmc_ring_header>);

// The fixed part of a slot; the payload follows it.
struct mpmc_slot {
  std::uint64_t state;  // sequence (low 32 bits) | tag (high 32 bits), see the top of the file
};
static_assert(sizeof(mpmc_slot) == 8);
static_assert(std::is_trivially_copyable_v<mpmc_slot>);

inline constexpr std::uint64_t mpmc_ring_magic = 0x32636f72696f4d50ULL;  // "PMoiroc2": slots with claim marks

// A tag with this bit is a claim mark; without it, a length (or 0 in a free slot),
// mpmc_hole: the published hole that recovery leaves at the position of a dead producer,
// or mpmc_external: an external message (its 8-byte length in the payload).
inline constexpr std::uint32_t mpmc_claim_bit = 0x8000'0000u;
inline constexpr std::uint32_t mpmc_hole = 0x7fff'ffffu;      // > any max_payload
inline constexpr std::uint32_t mpmc_external = 0x4000'0000u;  // > any max_payload
inline constexpr std::size_t mpmc_external_record = sizeof(std::uint64_t);  // its payload

[[nodiscard]] constexpr std::uint64_t mpmc_state(std::uint64_t seq, std::uint32_t tag) noexcept {
  return std::uint64_t{tag} << 32 | static_cast<std::uint32_t>(seq);
}
[[nodiscard]] constexpr std::uint32_t mpmc_tag(std::uint64_t state) noexcept {
  return static_cast<std::uint32_t>(state >> 32);
}
// How far the slot's sequence number is past `seq` (negative: behind), in positions.
[[nodiscard]] constexpr std::int32_t mpmc_lap_diff(std::uint64_t state, std::uint64_t seq) noexcept {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(state) - static_cast<std::uint32_t>(seq));
}

// This process's claim mark (see "Owners"): cached, 0 until first computed and again in a
// child after fork(). The hot path pays one relaxed load.
inline std::atomic<std::uint32_t> mpmc_claim_mark_cache{0};
[[nodiscard]] std::uint32_t compute_mpmc_claim_mark() noexcept;
[[nodiscard]] inline std::uint32_t mpmc_claim_mark() noexcept {
  const std::uint32_t mark = mpmc_claim_mark_cache.load(std::memory_order_relaxed);
  return mark != 0 ? mark : compute_mpmc_claim_mark();
}
// Whether the process that made a claim mark may still be running (see "Owners"). Reads
// /proc: the slow path only.
[[nodiscard]] bool mpmc_claim_owner_alive(std::uint32_t mark) noexcept;

[[noreturn]] void throw_mpmc_oversize(std::size_t bytes, std::size_t max_payload);
[[noreturn]] void throw_mpmc_corrupt(std::uint32_t length, std::uint64_t position, std::size_t max_payload);
[[noreturn]] void throw_mpmc_small_buffer(std::size_t bytes, std::size_t max_payload);
[[noreturn]] void throw_mpmc_no_external(std::size_t max_payload);

// What recovery runs on a slot it took over from a dead claimer, before it frees it.
using mpmc_cleanup = void (*)(void* arg, std::uint64_t slot) noexcept;

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

  // A copy is another view of the same ring (it starts with a fresh length guess).
  mpmc_ring(const mpmc_ring& other) noexcept
      : mpmc_ring(other.header_, other.slots_, other.mask_ + 1, other.stride_, other.max_payload_) {}
  mpmc_ring& operator=(const mpmc_ring&) = delete;

  [[nodiscard]] std::size_t capacity() const noexcept { return static_cast<std::size_t>(mask_ + 1); }
  [[nodiscard]] std::size_t max_payload() const noexcept { return static_cast<std::size_t>(max_payload_); }

  // Copies one message into the ring. false: the ring is full right now (or blocked by the
  // claim of a slow or dead process: see blocking_claim). Throws std::length_error if the
  // message is larger than max_payload(); nothing is claimed then.
  bool try_push(std::span<const std::byte> message) {
    const std::uint64_t n = message.size();
    if (n > max_payload_) [[unlikely]]
      detail::throw_mpmc_oversize(message.size(), max_payload());
    std::uint64_t pos;
    detail::mpmc_slot* const slot = claim_for_push(pos);
    if (slot == nullptr)
      return false;
    if (n != 0)
      std::memcpy(payload_of(slot), message.data(), n);
    // Release: the payload is written before the word says published.
    detail::store_release(slot->state, detail::mpmc_state(pos + 1, static_cast<std::uint32_t>(n)));
    return true;
  }

  // Pushes an external message of `length` bytes (see "External messages"): claims a slot,
  // calls fill(std::uint64_t slot_index), which must store the bytes where the consumer's
  // callback will find them, then publishes. false: full (fill was not called). If fill
  // throws, the position is published as a hole (consumers pass it, lost() does not
  // count it) and the exception propagates. Throws std::invalid_argument if max_payload()
  // is below 8 (no room for the length).
  template <class Fill>
  bool try_push_external(std::uint64_t length, Fill&& fill) {
    if (max_payload_ < detail::mpmc_external_record) [[unlikely]]
      detail::throw_mpmc_no_external(max_payload());
    std::uint64_t pos;
    detail::mpmc_slot* const slot = claim_for_push(pos);
    if (slot == nullptr)
      return false;
    struct hole_guard {
      detail::mpmc_slot* slot;
      std::uint64_t hole;
      // Release, as a publish: consumers step over the word without reading the payload.
      ~hole_guard() {
        if (slot != nullptr)
          detail::store_release(slot->state, hole);
      }
    } guard{slot, detail::mpmc_state(pos + 1, detail::mpmc_hole)};
    fill(pos & mask_);
    guard.slot = nullptr;
    std::memcpy(payload_of(slot), &length, sizeof length);
    // Release: the external bytes and the length are written before the word says published.
    detail::store_release(slot->state, detail::mpmc_state(pos + 1, detail::mpmc_external));
    return true;
  }

  // Claims the oldest published message and calls f(std::span<const std::byte>) on its
  // bytes in place, then frees the slot. false: nothing to pop right now. If f throws, the
  // slot is freed anyway and the message is gone (it cannot be put back in order). An
  // external message throws std::runtime_error (only the overload below takes them).
  template <class F>
  bool try_pop_with(F&& f) {
    return try_pop_with(std::forward<F>(f), [this](std::uint64_t slot, std::uint64_t) {
      detail::throw_mpmc_corrupt(detail::mpmc_external, slot, max_payload());
    });
  }
  // The same, and for an external message external(std::uint64_t slot_index,
  // std::uint64_t length), called while the slot is claimed; the length is the producer's
  // word, unchecked (the callback checks it against its storage).
  template <class F, class External>
  bool try_pop_with(F&& f, External&& external) {
    const std::uint32_t mark = detail::mpmc_claim_mark();
    std::uint64_t pos = detail::load_relaxed(header_->dequeue_pos);
    std::uint32_t length = length_guess_.load(std::memory_order_relaxed);
    detail::mpmc_slot* slot;
    std::uint64_t state;
    for (;;) {
      slot = slot_at(pos);
      // The claim, attempted blind with the guessed length (see "Claims without a look
      // first"). Acquire: the producer's payload is visible once we own the published word.
      state = detail::mpmc_state(pos + 1, length);
      if (detail::compare_exchange_acquire(slot->state, state, detail::mpmc_state(pos + 1, mark)))
        break;
      const std::int32_t diff = detail::mpmc_lap_diff(state, pos + 1);
      if (diff < 0)
        return false;  // not published yet (or its producer is slow or dead): empty
      const std::uint32_t tag = detail::mpmc_tag(state);
      if (diff == 0 && (tag & detail::mpmc_claim_bit) == 0) {
        if (tag == detail::mpmc_hole) [[unlikely]] {
          // A dead producer's position: step over it (one compare-exchange and no claim, so
          // no consumer can die holding it), then look again: the word now says passed.
          if (detail::compare_exchange_acquire(slot->state, state, detail::mpmc_state(pos + mask_ + 1, 0)))
            detail::store_relaxed(header_->dequeue_pos, pos + 1);
          continue;
        }
        length = tag;  // published with another length: claim it with that one
        length_guess_.store(length, std::memory_order_relaxed);
      } else {
        pos = next_position(pos, diff, header_->dequeue_pos);  // taken by another consumer
      }
    }
    detail::store_relaxed(header_->dequeue_pos, pos + 1);
    struct release_guard {
      detail::mpmc_slot* slot;
      std::uint64_t next;
      ~release_guard() { detail::store_release(slot->state, next); }  // release: done reading the bytes
    } guard{slot, detail::mpmc_state(pos + mask_ + 1, 0)};
    if (length > max_payload_) [[unlikely]] {
      if (length != detail::mpmc_external || max_payload_ < detail::mpmc_external_record)
        detail::throw_mpmc_corrupt(length, pos, max_payload());
      std::uint64_t external_length;
      std::memcpy(&external_length, payload_of(slot), sizeof external_length);
      external(pos & mask_, external_length);
      return true;
    }
    f(std::span<const std::byte>(payload_of(slot), static_cast<std::size_t>(length)));
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

  // Messages claimed by producers and not yet claimed by consumers, in [0, capacity()]
  // (a dead producer's hole is not one). Approximate under concurrency (each side's
  // position is found by a walk from its hint, one after the other), like Python's
  // qsize(); exact when nobody pushes or pops, even after hints stepped back.
  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  // Hints for spinning waiters, exact only without concurrent peers of the same side:
  // whether the slot `ahead` positions past the next push is free (a producer that waits
  // for it moves on with several slots, and cache lines, to fill instead of trading the
  // line of the one slot a consumer just freed), and whether the message `ahead`
  // positions past the next pop is published.
  [[nodiscard]] bool room_ahead(std::uint64_t ahead) const noexcept {
    const std::uint64_t pos = detail::load_relaxed(header_->enqueue_pos) + ahead;
    return detail::mpmc_lap_diff(detail::load_relaxed(slot_at(pos)->state), pos) >= 0;
  }
  [[nodiscard]] bool published_ahead(std::uint64_t ahead) const noexcept {
    const std::uint64_t pos = detail::load_relaxed(header_->dequeue_pos) + ahead;
    return detail::mpmc_lap_diff(detail::load_relaxed(slot_at(pos)->state), pos + 1) >= 0;
  }

  // ---- Processes that die inside a claim: the slow path (see the top of the file) ----

  enum class side { producers, consumers };
  // A claim seen in a slot: the slot's index and the state word (its tag is the mark).
  struct claim {
    std::uint64_t slot;
    std::uint64_t state;
    bool operator==(const claim&) const = default;
  };
  // The claim of another producer (consumer) that keeps side `s` from moving on right now:
  // for producers a slot still held, a lap earlier, by its consumer or producer; for
  // consumers the next slot, held by its producer. nullopt when `s` is not blocked, or
  // blocked only by the other side being full (empty). Reads a few words, no system call.
  [[nodiscard]] std::optional<claim> blocking_claim(side s) const noexcept;
  // Frees the slot of `c` if it still holds that claim and the claimer's process is dead:
  // a producer's position is skipped, a consumer's message dropped, and lost() grows by
  // one. true then. false (nothing changed) while the claimer lives, however long. Reads
  // /proc/<pid>/stat; at most one of any number of concurrent recover(c) returns true.
  // cleanup(arg, slot index), when given, runs while this process holds the slot, before
  // it is freed (see "Recovery takes the claim over").
  bool recover(const claim& c, detail::mpmc_cleanup cleanup = nullptr, void* arg = nullptr) noexcept;
  // recover() for every slot that holds a claim; returns how many were freed. O(capacity).
  std::size_t recover_all(detail::mpmc_cleanup cleanup = nullptr, void* arg = nullptr) noexcept;
  // Claims of dead processes freed so far, by anyone, in any process.
  [[nodiscard]] std::uint64_t lost() const noexcept { return detail::load_relaxed(header_->lost); }

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
  // The producer's claim (see "Claims without a look first"): the claimed slot, its
  // position in pos; nullptr when full. Inlined: it is try_push's whole hot path.
  [[gnu::always_inline]] detail::mpmc_slot* claim_for_push(std::uint64_t& pos) noexcept {
    const std::uint32_t mark = detail::mpmc_claim_mark();
    pos = detail::load_relaxed(header_->enqueue_pos);
    detail::mpmc_slot* slot;
    for (;;) {
      slot = slot_at(pos);
      // The claim, attempted blind. Acquire: the previous consumer of this slot finished
      // reading before we overwrite.
      std::uint64_t state = detail::mpmc_state(pos, 0);
      if (detail::compare_exchange_acquire(slot->state, state, detail::mpmc_state(pos, mark)))
        break;
      const std::int32_t diff = detail::mpmc_lap_diff(state, pos);
      if (diff < 0)
        return nullptr;  // the slot still holds the message of pos - capacity (or its claimer): full
      pos = next_position(pos, diff, header_->enqueue_pos);  // taken by another producer
    }
    detail::store_relaxed(header_->enqueue_pos, pos + 1);
    // The slots a lap ahead were last written by a consumer's core: ask for them in
    // exclusive state now, so a later push does not stall on the transfer.
    __builtin_prefetch(slot_at(pos + prefetch_distance), 1);
    return slot;
  }

  // Where side s stops now: the first position from its hint whose slot it would claim or
  // wait at (free / published, or full / empty), and the word there. Holes are passed.
  struct stop {
    std::uint64_t pos;
    std::uint64_t state;
  };
  [[nodiscard]] stop walk(side s) const noexcept;

  // Where to look after finding position pos taken, its slot's sequence number `diff`
  // positions past the one expected. Every position below the result was claimed: pos
  // itself; when the slot is more than a lap ahead (a stale hint), the position a lap
  // before the slot's (which the slot went through), and all below it; and everything
  // below the side's hint.
  [[nodiscard]] std::uint64_t next_position(std::uint64_t pos, std::int32_t diff,
                                            const std::uint64_t& hint) const noexcept {
    std::uint64_t next = pos + 1;
    if (static_cast<std::uint64_t>(diff) > mask_ + 1)
      next += static_cast<std::uint64_t>(diff) - (mask_ + 1);
    const std::uint64_t h = detail::load_relaxed(hint);
    return static_cast<std::int64_t>(h - next) > 0 ? h : next;
  }

  static constexpr std::uint64_t prefetch_distance = 32;  // slots

  // Immutable after construction (copied from line 0 of the header).
  detail::mpmc_ring_header* header_;
  std::byte* slots_;
  std::uint64_t mask_;
  std::uint64_t stride_;
  std::uint64_t max_payload_;
  // The length the last popped message had, in this process: the consumers' guess (see
  // "Claims without a look first"). Written only when it changes; a stale or racing
  // value costs a retry, never correctness.
  std::atomic<std::uint32_t> length_guess_{0};
};

}  // namespace corio
