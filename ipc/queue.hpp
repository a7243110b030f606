#pragma once
// corio::queue<T> — Python's multiprocessing.Queue for fork()ed processes, without the
// feeder thread and the pipe: values go straight into a bounded many-producer
// many-consumer ring in shared memory (ipc/mpmc_ring.hpp), and sleepers are woken through
// two event_counts (ipc/event_count.hpp). Values of any size: a value whose encoding fits
// a ring slot (slot_bytes, 256 by default) is copied into the slot; a larger one into the
// slot's extent of the queue's value arena (ipc/detail/value_arena.hpp), see "Large
// values".
//
//     corio::queue<std::string> q;                 // in the parent, before fork
//     corio::process writer([](corio::queue<std::string> q) { q.put("url_1"); }, q);
//     writer.start();
//     std::string url = q.get();                    // blocks until a value arrives
//
// Sharing: the constructor creates one shm_region (memfd) holding the ring, the two
// event_count words and the closed flag, and the value arena (a second, sparse memfd). A queue object is a cheap handle (a shared_ptr to
// the mapping): copies made in one process share the mapping, and a fork()ed child's copy
// maps the same memory, so every process started after the queue was created reaches it.
// The mapping is released when the last handle of a process is destroyed; the memory
// lives until the last process lets go. Any thread of any of those processes may call any
// member at any time.
//
// Contract
// - put(v) encodes v (ipc/codec.hpp) in the caller: an encoding error (encode_error) or
//   memory that cannot hold the value (std::system_error, ENOMEM) throws
//   there and nothing is queued. A value is never truncated, dropped, or delayed into a
//   background thread. Any size is accepted up to max_value_bytes() (1 TiB unless the
//   capacity passes 2^22 or RLIMIT_FSIZE is set; std::length_error beyond, naming both
//   sizes).
// - Order: one producer's values arrive in the order it put them; values of different
//   producers interleave in the order their puts claimed ring positions.
// - Each value is delivered to exactly one get.
// - Blocking: put blocks while the queue is full, get while it is empty; block = false or
//   an elapsed timeout throws queue_full / queue_empty (Python's queue.Full / queue.Empty).
//   A timeout is measured on the steady clock from the call.
// - close(): later puts throw queue_closed; gets return what is left, then throw
//   queue_closed; every blocked put and get wakes up. A put racing with close() may land or
//   throw. close() is final.
// - size(), empty(), full() are approximate while others put and get (like Python's
//   qsize(): the answer may be stale as soon as it is returned); exact at rest.
// - capacity() is the requested capacity rounded up to a power of two (at least 2).
// - Wake-ups cost nothing when nobody sleeps: after a push the producer calls
//   not_empty.notify_all(), after a pop the consumer calls not_full.notify_all(), and
//   event_count makes no system call unless a waiter announced itself. On top of that, a
//   "someone may sleep" flag per side (queue_control) limits the wake to one system call
//   per sleep: see queue_core::wake().
// - Async: async_put / async_get run inside a corio loop; the loop keeps running other
//   coroutines while they sleep. They honour the ambient stop token (operation_cancelled)
//   and the optional timeout. The queue must outlive the returned task.
// - Dead processes never wedge the living. A process killed in the middle of a put or a
//   get (SIGKILL, a crash) leaves its ring slot claimed. A blocking or async put or get
//   that finds such a claim in its way for a millisecond checks whether the claimer's
//   process is still alive (mpmc_ring.hpp, "Processes that die inside a claim") and, if
//   it is dead, frees the slot and carries on. The value in that slot is lost, never
//   torn and never delivered twice: a get killed while it decoded a value had it in its
//   hands; a put killed while it copied one never finished. lost() counts them. A get on
//   a closed queue frees dead claims at once, so it drains every value that was put
//   (try_get and get(false) too). Otherwise try_put / try_get and block = false never
//   wait, so they never free a claim: a try_get loop behind a dead producer sees "empty"
//   until a waiting call, a get on the closed queue or lost() frees its slot.
//
// Large values (encoded size above slot_bytes()): the producer claims the next ring slot
// as for a small value, writes the encoding into that slot's extent of the value arena
// (one memfd per queue, created with it, sparse: slot i owns bytes [i x span, (i + 1) x
// span)), and publishes the slot as an "external" message holding the length. The
// consumer that claims the slot decodes the value straight from a mapping of the extent,
// punches the extent back into a hole beyond its first arena_keep_bytes / capacity bytes
// (pages kept for the slot's next large value), then frees the slot.
// - Order and exactly-once are the ring's: a large value takes one ring position like a
//   small one, so small and large values of one producer arrive in order, and producers
//   of large values run in parallel (each writes its own slot's extent).
// - Dead processes: the ring slot's claim guards the extent, so the rules above hold
//   unchanged (a producer killed in the middle of a large put: a hole, counted in lost();
//   a consumer killed while it decodes: its value is lost and counted). The process that
//   recovers such a claim punches the slot's extent before freeing the slot, so a dead
//   process leaves no memory behind.
// - Memory: a value in flight takes its encoded size in the arena (charged to the
//   producer's memory cgroup) until its get; afterwards the arena keeps at most
//   arena_keep_bytes (64 MiB by default, spread over the slots) for later large values,
//   and each process that wrote or read those kept bytes keeps them mapped (address
//   space, no extra memory). Nothing is reserved up front. The producer also holds the
//   encoding (a per-thread buffer, freed again after values over 4 MiB; none for
//   trivially copyable types, strings and byte vectors) and the consumer the decoded T.
//   Memory that cannot be had throws std::system_error (ENOMEM): at put when encoding
//   into the buffer fails, or storing into the arena (naming the size); nothing is queued
//   then. At get when the mapping or the decoded value cannot be had (naming the size;
//   the value was taken off the queue and is lost, like any get whose decoding throws).
// - Costs: two copies of a large std::string, byte vector or trivially copyable value
//   (into the arena straight from the object, and out of the mapping by decode), three
//   for other types (encoded into a buffer first). A value that fits its slot's kept
//   bytes is copied through a mapping kept per process; a larger one is written with
//   pwrite (the kernel allocates and zeroes its pages) and mapped for its get, and the
//   part beyond the kept bytes is freed by a punch: measured, that page churn cost more
//   than the copies, so keep arena_keep_bytes >= capacity x the usual large value. Why not
//   chunks through the ring: slot-sized chunks of one value would need consecutive
//   positions (or a lock every put would pay for) and one consumer reassembling them;
//   why not a memfd per value handed over with pidfd_getfd: its producer would have to
//   stay alive until a consumer took the value, and a child that puts its result and
//   exits is the common case.
//
// Limits: the ring's shared memory is capacity x round_up(8 + slot_bytes, 8) bytes
// (264 KiB for the defaults) plus 8 bytes per slot for the arena; slot_bytes is at least
// 8 (an external message's length). Two file descriptors per queue (ring and arena).

#include "codec.hpp"
#include "detail/queue_core.hpp"

#include "../coro/task.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

namespace corio {

// put on a closed queue; get on a closed queue that is empty.
class queue_closed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// put with block = false on a full queue, or whose timeout elapsed while full.
class queue_full : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// get with block = false on an empty queue, or whose timeout elapsed while empty.
class queue_empty : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct queue_options {
  // Largest encoded value carried inside a ring slot, in bytes (at least 8); larger ones
  // travel through the value arena (see "Large values"). Each slot takes
  // round_up(8 + slot_bytes, 8) bytes of shared memory.
  std::size_t slot_bytes = 256;
  // Pages of large values that the value arena keeps allocated after their gets, for the
  // next large values to overwrite instead of the kernel allocating and zeroing fresh
  // ones: at most arena_keep_bytes / capacity bytes per slot (rounded down to pages). 0:
  // every get frees its value's pages.
  std::size_t arena_keep_bytes = std::size_t{64} << 20;
};

template <class T>
class joinable_queue;
namespace detail {
template <class Object>
struct handoff_traits;  // ipc/handoff.hpp: sends and rebuilds a queue in another process
}

template <class T>
class queue {
 public:
  using timeout_type = std::optional<std::chrono::nanoseconds>;

  // A new queue of `capacity` values (rounded up to a power of two). Throws
  // std::invalid_argument for a zero capacity or absurd sizes, std::system_error when the
  // shared memory cannot be reserved.
  explicit queue(std::size_t capacity = 1024, queue_options options = {})
      : core_(std::make_shared<detail::queue_core>(capacity, std::max<std::size_t>(options.slot_bytes, 8),
                                                  options.arena_keep_bytes)) {}

  // Puts v; waits while the queue is full (block = true, up to timeout if given). Throws
  // queue_full (no room and block = false, or the timeout elapsed), queue_closed,
  // encode_error, std::system_error (ENOMEM: no memory for a large value),
  // std::length_error (v encodes to more than max_value_bytes()).
  void put(const T& v, bool block = true, timeout_type timeout = {}) {
    std::uint64_t count;
    detail::with_encoded(v, *core_, count, [&](auto bytes) { core_->put(bytes, block, timeout); });
  }

  // Takes the oldest value; waits while the queue is empty (block = true, up to timeout if
  // given). Throws queue_empty (nothing and block = false, or the timeout elapsed),
  // queue_closed (closed and drained), decode_error (bytes that are not a T: a producer
  // that put another type; the value is consumed), std::system_error (ENOMEM: no memory
  // to map or decode a large value; the value is consumed).
  T get(bool block = true, timeout_type timeout = {}) {
    std::optional<T> out;
    auto pop = [&] { return core_->try_pop([&](std::span<const std::byte> b) { detail::decode_into(b, out); }); };
    if (pop())
      return std::move(*out);
    if (!block) {
      if (core_->closed()) {
        if (core_->recover_blocker(mpmc_ring::side::consumers) && pop())
          return std::move(*out);
        core_->throw_closed("get");
      }
      core_->throw_empty(std::nullopt);
    }
    if (core_->spin_for_batch(pop))
      return std::move(*out);
    detail::queue_wait wait(*core_, mpmc_ring::side::consumers, pop, timeout);
    detail::queue_core::sleep_until(core_->not_empty(), wait);
    wait.finish();
    return std::move(*out);
  }

  // put without waiting: false when full. Throws as put.
  bool try_put(const T& v) {
    if (core_->closed())
      core_->throw_closed("put");
    std::uint64_t count;
    return detail::with_encoded(v, *core_, count, [&](auto bytes) { return core_->try_push(bytes); });
  }

  // get without waiting: nullopt when empty. Throws queue_closed (closed and drained),
  // decode_error.
  std::optional<T> try_get() {
    std::optional<T> out;
    auto pop = [&] { return core_->try_pop([&](std::span<const std::byte> b) { detail::decode_into(b, out); }); };
    if (pop())
      return out;
    if (core_->closed()) {
      if (core_->recover_blocker(mpmc_ring::side::consumers) && pop())
        return out;
      core_->throw_closed("get");
    }
    return std::nullopt;
  }

  // put inside a corio loop: the coroutine, not the thread, waits while the queue is full.
  // Takes v by value so that the task owns it. Same errors as put, plus operation_cancelled.
  [[nodiscard]] task<void> async_put(T v, timeout_type timeout = {}) {
    if (core_->closed())
      core_->throw_closed("put");
    // The encoding lives in this frame: other coroutines of this thread may put while we wait.
    std::vector<std::byte> storage;
    std::uint64_t count;
    detail::value_parts bytes;
    if constexpr (detail::codec_memcpy<T>) {
      bytes.head = std::as_bytes(std::span<const T, 1>(&v, 1));
    } else {
      bytes = detail::encoded_parts(v, slot_bytes(), count, storage);  // a body in place: v lives in this frame
    }
    if (core_->try_push(bytes))
      co_return;
    detail::queue_wait wait(*core_, mpmc_ring::side::producers, [&] { return core_->try_push(bytes); }, timeout);
    co_await detail::queue_core::async_sleep_until(core_->not_full(), wait);
    wait.finish();
  }

  // get inside a corio loop. Same errors as get, plus operation_cancelled.
  [[nodiscard]] task<T> async_get(timeout_type timeout = {}) {
    std::optional<T> out;
    auto pop = [&] { return core_->try_pop([&](std::span<const std::byte> b) { detail::decode_into(b, out); }); };
    if (pop())
      co_return std::move(*out);
    detail::queue_wait wait(*core_, mpmc_ring::side::consumers, pop, timeout);
    co_await detail::queue_core::async_sleep_until(core_->not_empty(), wait);
    wait.finish();
    co_return std::move(*out);
  }

  // Makes later puts fail and wakes every waiter; gets drain what is left. Idempotent.
  void close() noexcept { core_->close(); }
  [[nodiscard]] bool closed() const noexcept { return core_->closed(); }

  // Approximate under concurrency (see the top of the file).
  [[nodiscard]] std::size_t size() const noexcept { return core_->ring().size(); }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] bool full() const noexcept { return size() >= capacity(); }

  [[nodiscard]] std::size_t capacity() const noexcept { return core_->ring().capacity(); }
  // Values up to slot_bytes() travel inside a ring slot, larger ones through the value
  // arena; max_value_bytes() is the largest value put accepts (encoded size).
  [[nodiscard]] std::size_t slot_bytes() const noexcept { return core_->ring().max_payload(); }
  [[nodiscard]] std::uint64_t max_value_bytes() const noexcept { return core_->max_value_bytes(); }

  // Values lost with processes that died inside a put or a get, in any process, since the
  // queue was created (see "Dead processes never wedge the living"). Frees the claims of
  // dead processes first, also those nobody waits for yet: it reads every slot, O(capacity).
  [[nodiscard]] std::uint64_t lost() noexcept { return core_->lost(); }

 private:
  friend class joinable_queue<T>;  // sets the core's taken hook
  template <class Object>
  friend struct detail::handoff_traits;
  explicit queue(std::shared_ptr<detail::queue_core> core) noexcept : core_(std::move(core)) {}
  std::shared_ptr<detail::queue_core> core_;
};

}  // namespace corio
