#pragma once
// corio::spsc_ring — variable-length frames from one producer to one consumer through a
// block of shared memory (a shm_region, or any memory both sides can address).
//
// Ownership and ordering (style.md, habit 4)
// - Producer: exactly one thread in one process calls try_write / publish / try_send.
//   Consumer: exactly one thread in one process (the same or another) calls peek / pop /
//   try_read / drain. Each side keeps its private state in its own spsc_ring object (a
//   fork()ed child uses its copy; a receiver of the memory calls attach); when two threads
//   share one object, the producer fields and the consumer fields sit on separate cache
//   lines and neither side touches the other's.
// - Shared layout: a 192-byte header, then `capacity` data bytes (a power of two).
//     line 0: magic + capacity, written once by format(), published by a release store of
//             magic, read by attach() with an acquire load; immutable afterwards.
//     line 1: write_index — written only by the producer (store_release), read by the
//             consumer (load_acquire).
//     line 2: read_index — written only by the consumer (store_release), read by the
//             producer (load_acquire).
//   The indices are byte counters that only grow (64 bits never wrap in practice); the
//   position in the data area is index & (capacity - 1). The three lines are apart so the
//   producer's stores never invalidate the line the consumer polls for its own index, and
//   vice versa (false sharing would make every frame a cache-line ping-pong).
// - Pairing: the producer copies frames, then store_release(write_index); the consumer's
//   load_acquire(write_index) makes those bytes visible. The consumer reads the frames,
//   then store_release(read_index); the producer's load_acquire(read_index) guarantees the
//   consumer is done with the bytes before they are overwritten.
// - Each side caches the other's index and reloads it only when its cached view says
//   "empty" (consumer) or "full" (producer): the hot path is memcpy + one release store.
//
// Frames: at an 8-byte aligned position, a 4-byte little-endian payload length, then the
// payload; the next frame starts at the next multiple of 8. A frame never straddles the end
// of the data area: when it does not fit before the end, the producer writes a padding
// marker (length 0xFFFFFFFF) and the frame starts at offset 0. Hence the largest payload is
// capacity / 2 - 4 bytes (max_payload()): it fits wherever the empty ring's index stands.
// A larger message throws std::length_error — it is never silently dropped or truncated.
//
// Torn frames are impossible: a frame is visible to the consumer only through the release
// store of write_index, made after the whole frame is copied. A producer that dies in the
// middle of try_write (or before publish) leaves write_index where it was: the consumer
// sees the frames published before, never a partial one.
//
// Batching: try_write copies a frame but does not publish it; publish() makes every frame
// written since the last publish visible with one release store. try_send = try_write +
// publish. A try_write that finds the ring full publishes what is pending first, so a
// producer that forgets to publish between full rings cannot deadlock the pair.
// On the consumer side, drain() reads many frames and frees their space with one store.
//
// Non-blocking only: a side that finds the ring empty (or full) decides how to wait. Across
// processes, pair the ring with an event_count (ipc/event_count.hpp) as pool and executor
// do: publish, then notify; the waiter re-checks the ring before it sleeps. spin_until is a
// spin-with-yield helper for tests and benchmarks.
//
// A peer that breaks the protocol (trust model, docs/ipc.md)
// The other side may be buggy, killed at any instruction, or hostile, and it can write any
// byte of the header and the data area at any time. Whatever it writes, this side never
// reads or writes outside [header, data + capacity), and never loops forever on a lie:
// - capacity is read once, by attach(), and checked against the memory given; the copy in
//   this object is what bounds every access afterwards.
// - attach() refuses indices that no producer could have left: not a multiple of 8, or a
//   write index more than capacity bytes ahead of the read index (or behind it).
// - The consumer checks every write index it loads the same way (a write index that moved
//   backwards is behind the read index), and every frame length: at most max_payload(),
//   within the published bytes, and ending before the end of the data area (a frame never
//   straddles it); a padding marker must be followed by a published frame.
// - The producer checks the read index it loads when the ring looks full (at most capacity
//   bytes behind its write index, never ahead of it, a multiple of 8).
// A violation throws std::runtime_error naming the index or length; the ring is then
// unusable (the side that threw should drop the peer). The checks cost the hot loops
// nothing: try_write checks only on its full path; drain bounds each frame by one limit
// that folds the published end and the end of the data area (see drain).
// What a hostile producer can still do: write any payload bytes, including changing a
// frame while the consumer reads it; decode them as untrusted input (codec.hpp does).
//
// Errors: std::length_error (frame larger than max_payload), std::invalid_argument
// (memory too small or misaligned for format/attach, or not formatted), std::runtime_error
// (a corrupt frame length or index read from shared memory — a peer that is not a
// spsc_ring, see above).

#include "detail/branch_hints.hpp"
#include "detail/shared_atomic.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <thread>
#include <type_traits>

namespace corio {

namespace detail {

// The shared header. Plain integers, accessed through shared_atomic.hpp.
struct spsc_ring_header {
  alignas(64) std::uint64_t magic;  // spsc_ring_magic once format() is complete
  std::uint64_t capacity;           // data bytes after the header, a power of two
  alignas(64) std::uint64_t write_index;  // producer-owned
  alignas(64) std::uint64_t read_index;   // consumer-owned
};
static_assert(sizeof(spsc_ring_header) == 192);
static_assert(alignof(spsc_ring_header) == 64);
static_assert(offsetof(spsc_ring_header, write_index) == 64);
static_assert(offsetof(spsc_ring_header, read_index) == 128);
static_assert(std::is_trivially_copyable_v<spsc_ring_header>);
static_assert(std::is_standard_layout_v<spsc_ring_header>);

inline constexpr std::uint64_t spsc_ring_magic = 0x636f72696f535053ULL;  // "corioSPS"
inline constexpr std::uint32_t spsc_ring_padding = 0xFFFFFFFFu;

[[noreturn]] void throw_spsc_oversize(std::size_t bytes, std::size_t capacity, std::size_t max_payload);
[[noreturn]] void throw_spsc_corrupt(std::uint32_t length, std::uint64_t index);
[[noreturn]] void throw_spsc_bad_index(const char* which, std::uint64_t value, std::uint64_t own, std::uint64_t capacity);

}  // namespace detail

class spsc_ring {
 public:
  static constexpr std::size_t header_bytes = sizeof(detail::spsc_ring_header);
  static constexpr std::size_t min_capacity = 64;

  // Memory needed for a ring with `capacity` data bytes (rounded up to a power of two).
  [[nodiscard]] static std::size_t bytes_for(std::size_t capacity);

  // Lays a new, empty ring over `memory` (64-byte aligned; capacity = the largest power of
  // two that fits after the header). Call once, before any other side attaches.
  [[nodiscard]] static spsc_ring format(std::span<std::byte> memory);
  // Uses a ring that format() laid out, e.g. in memory received with shm_region::receive.
  [[nodiscard]] static spsc_ring attach(std::span<std::byte> memory);

  [[nodiscard]] std::size_t capacity() const noexcept { return static_cast<std::size_t>(mask_ + 1); }
  [[nodiscard]] std::size_t max_payload() const noexcept { return capacity() / 2 - 4; }

  // ---- producer side ----
  // Copies one frame into the ring without publishing it. false: no room now (pending frames
  // were published first). Throws std::length_error if payload.size() > max_payload().
  bool try_write(std::span<const std::byte> payload) {
    // Locals, not members, on the hot path: stores through std::byte* may alias *this, so
    // member reads after a memcpy would be reloaded from memory.
    const std::uint64_t n = payload.size();
    const std::uint64_t mask = mask_;
    std::byte* const data = data_;
    std::uint64_t write = p_.write;
    if (n > (mask + 1) / 2 - 4) [[unlikely]]
      detail::throw_spsc_oversize(payload.size(), capacity(), max_payload());
    const std::uint64_t frame = frame_bytes(n);
    std::uint64_t pos = write & mask;
    const std::uint64_t to_end = mask + 1 - pos;
    const std::uint64_t need = frame <= to_end ? frame : to_end + frame;
    if (write + need - p_.cached_read > mask + 1) [[unlikely]] {
      publish();
      p_.cached_read = detail::load_acquire(header_->read_index);  // consumer is done with freed bytes
      if (write - p_.cached_read > mask + 1 || p_.cached_read % 8 != 0) [[unlikely]]
        detail::throw_spsc_bad_index("read", p_.cached_read, write, mask + 1);
      if (write + need - p_.cached_read > mask + 1)
        return false;
    }
    if (frame > to_end) [[unlikely]] {
      std::memcpy(data + pos, &detail::spsc_ring_padding, 4);
      write += to_end;
      pos = 0;
    }
    // The lines ahead were last read by the consumer's core: ask for them in exclusive state
    // now, so the stores below do not wait for ownership one line at a time.
    __builtin_prefetch(data + ((pos + 512) & mask), 1);
    const auto len = static_cast<std::uint32_t>(n);
    std::memcpy(data + pos, &len, 4);
    if (n != 0)
      std::memcpy(data + pos + 4, payload.data(), n);
    p_.write = write + frame;
    return true;
  }

  // Makes every frame written since the last publish visible, with one release store.
  void publish() noexcept {
    if (p_.write != p_.published) {
      p_.published = p_.write;
      detail::store_release(header_->write_index, p_.write);  // frames fully copied before
    }
  }

  // try_write + publish.
  bool try_send(std::span<const std::byte> payload) {
    if (!try_write(payload))
      return false;
    publish();
    return true;
  }

  // ---- consumer side ----
  // The oldest published frame's payload, or nullopt if none. Valid until pop()/drain().
  [[nodiscard]] std::optional<std::span<const std::byte>> peek() {
    if (c_.read == c_.cached_write) {
      c_.cached_write = load_write_index(c_.read);
      if (c_.read == c_.cached_write)
        return std::nullopt;
    }
    std::uint64_t pos = c_.read & mask_;
    std::uint64_t room = readable(c_.read, c_.cached_write);  // where the frame must end
    std::uint32_t len;
    std::memcpy(&len, data_ + pos, 4);
    if (len == detail::spsc_ring_padding) {
      if (room == c_.cached_write - c_.read) [[unlikely]]  // the producer never publishes a lone pad
        detail::throw_spsc_corrupt(len, c_.read);
      c_.read += room;
      room = readable(c_.read, c_.cached_write);
      pos = 0;
      std::memcpy(&len, data_, 4);
    }
    if (len > max_payload() || frame_bytes(len) > room) [[unlikely]]
      detail::throw_spsc_corrupt(len, c_.read);
    c_.len = len;
    return std::span<const std::byte>(data_ + pos + 4, len);
  }

  // Frees the frame peek() returned (one release store).
  void pop() noexcept {
    advance();
    detail::store_release(header_->read_index, c_.read);  // done reading the freed bytes
  }

  // Calls f(span) on the oldest frame and pops it; false if none. If f throws, the frame
  // stays in the ring.
  template <class F>
  bool try_read(F&& f) {
    auto frame = peek();
    if (!frame)
      return false;
    f(*frame);
    pop();
    return true;
  }

  // Calls f(span) on up to max_frames frames, then frees them with one release store.
  // Returns the number of frames read. If f throws, the frames before it are freed.
  template <class F>
  std::size_t drain(F&& f, std::size_t max_frames = static_cast<std::size_t>(-1)) {
    // Locals, not members, in the loop (see try_write); written back by the guard. The walk
    // keeps the read index as the start of the current lap of the data area (`lap`, a
    // multiple of capacity) plus a position in it (`pos`, at most capacity): positions are
    // small, so the bounds below cannot wrap whatever indices a peer wrote, and a frame's
    // address needs no masking.
    struct state {
      spsc_ring& r;
      std::uint64_t lap;
      std::uint64_t pos;
      std::uint64_t start;
      std::uint64_t read() const noexcept { return lap + pos; }
      ~state() {
        if (read() != start) {
          r.c_.read = read();
          detail::store_release(r.header_->read_index, read());  // done reading the freed bytes
        }
      }
    } st{*this, c_.read & ~mask_, c_.read & mask_, c_.read};
    const std::uint64_t capacity = mask_ + 1;
    const std::byte* const data = data_;
    std::uint64_t end = c_.cached_write;
    // Every frame must end by position `limit`: the published end or the end of the data
    // area, whichever comes first. It changes only when the walk reaches it, so the loop
    // tests one bound for both, as it would for the published end alone.
    std::uint64_t limit = st.pos + readable(st.read(), end);
    std::uint64_t predicted = 0;  // the size of the frame before (see below)
    std::size_t count = 0;
    prefetch_published(st.read(), end);
    while (count < max_frames) {
      if (st.pos == limit) {
        if (st.read() == end) {
          end = c_.cached_write = load_write_index(st.read());
          if (st.read() == end)
            break;
          prefetch_published(st.read(), end);
        }
        if (st.pos == capacity) {  // the last frame ended exactly at the end of the data area
          st.lap += capacity;
          st.pos = 0;
        }
        limit = st.pos + readable(st.read(), end);
      }
      std::uint32_t len;
      std::memcpy(&len, data + st.pos, 4);
      if (len == detail::spsc_ring_padding) [[unlikely]] {
        // The rest of the lap is padding, and a frame must follow it: the published end
        // lies beyond the end of the data area (the producer never publishes a lone pad).
        if (limit != capacity || st.lap + capacity == end)
          detail::throw_spsc_corrupt(len, st.read());
        st.lap += capacity;
        st.pos = 0;
        limit = readable(st.read(), end);
        std::memcpy(&len, data, 4);
      }
      // The next frame's position would depend on the length just loaded: a chain of
      // load -> add -> load that caps the walk at one frame per load latency. Instead the
      // walk advances by the previous frame's size and only checks the length against it
      // (a predictable branch), so the loads leave the critical path; a different size
      // costs one mispredicted branch. keep_branch and opaque (detail/branch_hints.hpp)
      // keep the compiler from undoing that: from turning the check into a conditional
      // move, and from learning from the check that the two sizes are equal and then
      // using the loaded one (either would put the load back on the chain): the test is
      // made on an opaque difference, so no equality is known after it.
      const std::uint64_t actual = frame_bytes(len);
      std::uint64_t differs = actual ^ predicted;
      detail::opaque(differs);
      if (differs != 0) [[unlikely]] {
        detail::keep_branch();
        if (len > capacity / 2 - 4)  // a frame of the predicted size is known valid
          detail::throw_spsc_corrupt(len, st.read());
        predicted = actual;
      }
      const std::uint64_t next = st.pos + predicted;
      if (next > limit) [[unlikely]]  // past the published bytes or the data area
        detail::throw_spsc_corrupt(len, st.read());
      f(std::span<const std::byte>(data + st.pos + 4, len));
      st.pos = next;
      ++count;
    }
    return count;
  }

 private:
  // write and read: the indices as attach() (or format()) loaded and checked them.
  spsc_ring(detail::spsc_ring_header* h, std::byte* data, std::uint64_t capacity, std::uint64_t write,
            std::uint64_t read) noexcept
      : header_(h), data_(data), mask_(capacity - 1) {
    p_.write = p_.published = write;
    p_.cached_read = c_.read = c_.cached_write = read;
  }
  // Ring bytes taken by a frame with an n-byte payload: the 4-byte length, the payload, and
  // padding up to the next multiple of 8 (where the next frame starts).
  static constexpr std::uint64_t frame_bytes(std::uint64_t n) noexcept { return (4 + n + 7) & ~std::uint64_t{7}; }

  // Each frame's position depends on the length read from the previous one, so a plain
  // loop takes the cache misses on the producer's lines one after another. Touching the
  // published lines first lets them arrive in parallel (bounded: 4 KiB ahead).
  void prefetch_published(std::uint64_t from, std::uint64_t to) const noexcept {
    // By distance, not by index: indices a peer left near 2^64 wrap (an index loop would
    // then run for 2^58 lines).
    const std::uint64_t first = from & ~std::uint64_t{63};
    const std::uint64_t bytes = (to - from > 4096 ? 4096 : to - from) + (from - first);
    for (std::uint64_t off = 0; off < bytes; off += 64)
      __builtin_prefetch(data_ + ((first + off) & mask_), 0);
  }

  void advance() noexcept { c_.read += frame_bytes(c_.len); }

  // The producer's write index, checked against `read` (the consumer's own index, always
  // a multiple of 8): a write index the producer can have published is a multiple of 8 and
  // at most capacity bytes ahead; one that moved backwards is behind read, which the
  // unsigned difference turns into more than capacity ahead.
  std::uint64_t load_write_index(std::uint64_t read) const {
    const std::uint64_t write = detail::load_acquire(header_->write_index);  // frames below it are complete
    if (write - read > mask_ + 1 || write % 8 != 0) [[unlikely]]
      detail::throw_spsc_bad_index("write", write, read, mask_ + 1);
    return write;
  }

  // Bytes from `read` to where the next frame must end: the published end `write` or the
  // end of the data area, whichever comes first (a frame never straddles the end).
  std::uint64_t readable(std::uint64_t read, std::uint64_t write) const noexcept {
    const std::uint64_t to_end = mask_ + 1 - (read & mask_);
    const std::uint64_t published = write - read;
    return published < to_end ? published : to_end;
  }

  // Immutable after construction; read by both sides.
  detail::spsc_ring_header* header_;
  std::byte* data_;
  std::uint64_t mask_;
  // Producer-private state, on its own line.
  struct alignas(64) producer_state {
    std::uint64_t write = 0;        // next byte to write (unpublished frames below it)
    std::uint64_t published = 0;    // last value stored to write_index
    std::uint64_t cached_read = 0;  // last read_index seen
  } p_;
  // Consumer-private state, on its own line.
  struct alignas(64) consumer_state {
    std::uint64_t read = 0;          // start of the next frame to read
    std::uint64_t cached_write = 0;  // last write_index seen
    std::uint32_t len = 0;           // payload length of the frame peek() returned
  } c_;
};

// Spins until pred() is true, yielding the CPU between tries (tests and benchmarks only:
// a process that waits for its peer sleeps on an event_count, see above).
template <class Pred>
void spin_until(Pred&& pred) {
  while (!pred())
    std::this_thread::yield();
}

}  // namespace corio
