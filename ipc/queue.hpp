#pragma once
// corio::queue<T> — Python's multiprocessing.Queue for fork()ed processes, without the
// feeder thread and the pipe: values go straight into a bounded many-producer
// many-consumer ring in shared memory (ipc/mpmc_ring.hpp), and sleepers are woken through
// two event_counts (ipc/event_count.hpp).
//
//     corio::queue<std::string> q;                 // in the parent, before fork
//     corio::process writer([](corio::queue<std::string> q) { q.put("url_1"); }, q);
//     writer.start();
//     std::string url = q.get();                    // blocks until a value arrives
//
// Sharing: the constructor creates one shm_region (memfd) holding the ring, the two
// event_count words and the closed flag. A queue object is a cheap handle (a shared_ptr to
// the mapping): copies made in one process share the mapping, and a fork()ed child's copy
// maps the same memory, so every process started after the queue was created reaches it.
// The mapping is released when the last handle of a process is destroyed; the memory
// lives until the last process lets go. Any thread of any of those processes may call any
// member at any time.
//
// Contract
// - put(v) encodes v (ipc/codec.hpp) in the caller: an encoding error (encode_error) or a
//   value larger than max_message_bytes() (std::length_error, naming both sizes) throws
//   there and nothing is queued. A value is never truncated, dropped, or delayed into a
//   background thread.
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
//   per sleep: see wake_consumers().
// - Async: async_put / async_get run inside a corio loop; the loop keeps running other
//   coroutines while they sleep. They honour the ambient stop token (operation_cancelled)
//   and the optional timeout. The queue must outlive the returned task.
//
// Limits: max_message_bytes (queue_options, default 256) bounds one encoded value; the
// shared memory is capacity x round_up(8 + max_message_bytes, 8) bytes (264 KiB for the
// defaults). A process killed in the middle of a put or get can block the ring (see
// mpmc_ring.hpp: "A process that dies inside a claim"); a killed process never makes
// another one read a torn value.

#include "codec.hpp"
#include "event_count.hpp"
#include "mpmc_ring.hpp"
#include "shm_region.hpp"

#include "../coro/task.hpp"
#include "../runtime/detail/cpu_relax.hpp"
#include "../runtime/detail/dekker_fence.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
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
  // Largest encoded value, in bytes (a slot's payload). Each slot takes
  // round_up(8 + max_message_bytes, 8) bytes of shared memory.
  std::size_t max_message_bytes = 256;
};

namespace detail {

// The part of the queue's shared memory in front of the ring, one cache line per side:
// producers read line 0 after every push and write it only to wake a sleeper; sleeping
// consumers write it. Line 1 the other way round. closed is written once. Zero-initialised
// (a fresh shm_region is) means: no waiters, open.
struct queue_control {
  alignas(64) event_count_state not_empty;
  std::uint64_t consumers_may_sleep;  // set by a consumer before it announces on not_empty
  alignas(64) event_count_state not_full;
  std::uint64_t producers_may_sleep;  // set by a producer before it announces on not_full
  alignas(64) std::uint64_t closed;   // 1 after close(); store_release / load_acquire
};
static_assert(sizeof(queue_control) == 192);
static_assert(offsetof(queue_control, not_full) == 64);
static_assert(std::is_trivially_copyable_v<queue_control>);

// The untyped queue: one mapping per process, shared by the handles of that process.
class queue_core {
 public:
  queue_core(std::size_t capacity, queue_options options);

  [[nodiscard]] bool closed() const noexcept { return load_acquire(control_->closed) != 0; }  // pairs with close()
  void close() noexcept;

  // Pushes and wakes consumers. false: full.
  bool try_push(std::span<const std::byte> bytes) {
    if (!ring_.try_push(bytes))
      return false;
    wake(control_->consumers_may_sleep, control_->not_empty);
    return true;
  }
  // Pops into f (in place) and wakes producers. false: empty. If f throws, the value is
  // consumed anyway and producers are still woken.
  template <class F>
  bool try_pop(F&& f) {
    bool popped = false;
    struct notify_guard {
      queue_core& q;
      bool& popped;
      ~notify_guard() {
        if (popped)
          q.wake(q.control_->producers_may_sleep, q.control_->not_full);
      }
    } guard{*this, popped};
    return ring_.try_pop_with([&](std::span<const std::byte> b) {
      popped = true;
      f(b);
    });
  }

  // Retries try_once for some microseconds before a blocking wait announces itself: the
  // peer on another core usually makes progress within that time, and a futex sleep plus
  // wake costs both sides a system call and a context switch. The gaps between tries
  // double (2 to 16 pauses): a consumer polling the slot a producer is about to write
  // steals its cache line each time, so polling less often lets the producer run ahead
  // and the consumer then takes several messages per line transfer. true once try_once
  // succeeded.
  template <class Try>
  static bool spin(Try&& try_once, int tries = spin_tries) {
    unsigned gap = 2;
    for (int i = 0; i < tries; ++i) {
      for (unsigned k = 0; k < gap; ++k) cpu_relax();
      if (try_once())
        return true;
      if (gap < 16)
        gap *= 2;
    }
    return false;
  }
  static constexpr int spin_tries = 8;  // 94 pauses: ~2-6 us (a pause is 10 to 60 ns)
  // A spinning waiter first waits, briefly, for this many slots of room (put) or of
  // published values (get), at most a quarter of the ring: see spin_for_batch.
  static constexpr std::uint64_t batch_ahead = 64;
  static constexpr int batch_tries = 3;  // 14 pauses, well under a microsecond
  [[nodiscard]] std::uint64_t batch_for_ring() const noexcept {
    return std::min<std::uint64_t>(batch_ahead, ring_.capacity() / 4);
  }

  // spin(pop) for a getter that found the queue empty. It first waits, for a fraction of a
  // microsecond, until several lines of values are published rather than one: a getter
  // that polls the slot a producer is writing takes its cache line away at every poll,
  // and the two sides then pay a line transfer per value (measured: 36 M/s between two
  // processes, 56 M/s with the batch wait). A lone value costs the short wait once.
  template <class Pop>
  bool spin_for_batch(Pop&& pop) {
    const std::uint64_t ahead = batch_for_ring();
    return (ahead > 1 && spin([&] { return ring_.published_ahead(ahead) && pop(); }, batch_tries)) || spin(pop);
  }

  // Blocking put of already-encoded bytes (see queue<T>::put).
  void put(std::span<const std::byte> bytes, bool block, std::optional<std::chrono::nanoseconds> timeout);

  [[nodiscard]] event_count not_empty() noexcept { return event_count(control_->not_empty); }
  [[nodiscard]] event_count not_full() noexcept { return event_count(control_->not_full); }

  // Called by a consumer (producer) whose attempt failed, before event_count's
  // prepare_wait: wait predicates call it each time they return false.
  void consumer_may_sleep() noexcept { store_relaxed(control_->consumers_may_sleep, 1); }
  void producer_may_sleep() noexcept { store_relaxed(control_->producers_may_sleep, 1); }

  // After a push (pop): wakes consumers (producers) if one may sleep. Why the flag: the
  // event_count's waiter count stays up from a waiter's announcement until the waiter has
  // run again, so on a busy machine a producer would make one futex_wake per push for as
  // long as the woken consumer waits for a CPU. The flag is cleared by the first waker:
  // one system call per sleep.
  // Why no wake-up is lost: the sleeper stores the flag, then prepare_wait (a
  // read-modify-write and a seq_cst fence), then re-checks the ring; the waker publishes
  // its slot (release), then the seq_cst fence below, then loads the flag. By the fences,
  // either the sleeper's re-check sees the slot, or the waker sees the flag and calls
  // notify_all, whose own fence-then-load of the waiter count is event_count's proof.
  // A waker that clears a flag another sleeper has just set still calls notify_all after
  // it, which covers that sleeper by the same argument.
  static void wake(std::uint64_t& may_sleep, event_count_state& ev) noexcept {
    dekker_fence();  // the slot is published before the flag is read
    if (load_relaxed(may_sleep) == 0)
      return;
    store_relaxed(may_sleep, 0);
    event_count(ev).notify_all();
  }
  [[nodiscard]] const mpmc_ring& ring() const noexcept { return ring_; }

  [[noreturn]] void throw_closed(const char* what) const;
  [[noreturn]] void throw_full(std::optional<std::chrono::nanoseconds> timeout) const;
  [[noreturn]] void throw_empty(std::optional<std::chrono::nanoseconds> timeout) const;

 private:
  shm_region region_;
  queue_control* control_;
  mpmc_ring ring_;
};

[[noreturn]] void throw_queue_decode_size(std::size_t got, std::size_t want);

// A deadline from a timeout; std::invalid_argument when it is negative (like Python).
[[nodiscard]] std::optional<std::chrono::steady_clock::time_point> queue_deadline(
    std::optional<std::chrono::nanoseconds> timeout, const char* what);

// Calls f(bytes) with v's encoding: the object's own bytes when the codec copies T byte
// for byte (no allocation), else a per-thread scratch buffer (valid until the next call on
// this thread; f must not suspend).
template <class T, class F>
decltype(auto) with_encoded(const T& v, F&& f) {
  if constexpr (codec_memcpy<T>) {
    return f(std::as_bytes(std::span<const T, 1>(&v, 1)));
  } else {
    thread_local std::vector<std::byte> scratch;
    scratch.clear();
    corio::encode(v, scratch);
    return f(std::span<const std::byte>(scratch));
  }
}

// Rebuilds a T from one message. For types the codec copies byte for byte this is one
// fixed-size memcpy (decode<T> would build its error text on every call).
template <class T>
void decode_into(std::span<const std::byte> bytes, std::optional<T>& out) {
  if constexpr (codec_memcpy<T>) {
    if (bytes.size() != sizeof(T)) [[unlikely]]
      throw_queue_decode_size(bytes.size(), sizeof(T));
    out.emplace();
    std::memcpy(&*out, bytes.data(), sizeof(T));
  } else {
    out.emplace(corio::decode<T>(bytes));
  }
}

}  // namespace detail

template <class T>
class queue {
 public:
  using timeout_type = std::optional<std::chrono::nanoseconds>;

  // A new queue of `capacity` values (rounded up to a power of two). Throws
  // std::invalid_argument for a zero capacity or absurd sizes, std::system_error when the
  // shared memory cannot be reserved.
  explicit queue(std::size_t capacity = 1024, queue_options options = {})
      : core_(std::make_shared<detail::queue_core>(capacity, options)) {}

  // Puts v; waits while the queue is full (block = true, up to timeout if given). Throws
  // queue_full (no room and block = false, or the timeout elapsed), queue_closed,
  // std::length_error (v encodes to more than max_message_bytes()), encode_error.
  void put(const T& v, bool block = true, timeout_type timeout = {}) {
    detail::with_encoded(v, [&](std::span<const std::byte> b) { core_->put(b, block, timeout); });
  }

  // Takes the oldest value; waits while the queue is empty (block = true, up to timeout if
  // given). Throws queue_empty (nothing and block = false, or the timeout elapsed),
  // queue_closed (closed and drained), decode_error (bytes that are not a T: a producer
  // that put another type; the value is consumed).
  T get(bool block = true, timeout_type timeout = {}) {
    std::optional<T> out;
    auto pop = [&] { return core_->try_pop([&](std::span<const std::byte> b) { detail::decode_into(b, out); }); };
    if (pop())
      return std::move(*out);
    if (!block) {
      if (core_->closed())
        core_->throw_closed("get");
      core_->throw_empty(std::nullopt);
    }
    if (core_->spin_for_batch(pop))
      return std::move(*out);
    const auto deadline = detail::queue_deadline(timeout, "get");
    bool closed = false;
    core_->not_empty().wait_until(
        [&] {
          if (pop())
            return true;
          core_->consumer_may_sleep();
          closed = core_->closed();
          return closed;
        },
        deadline);
    if (out)
      return std::move(*out);
    if (closed || core_->closed())
      core_->throw_closed("get");
    core_->throw_empty(timeout);
  }

  // put without waiting: false when full. Throws queue_closed, std::length_error,
  // encode_error.
  bool try_put(const T& v) {
    if (core_->closed())
      core_->throw_closed("put");
    return detail::with_encoded(v, [&](std::span<const std::byte> b) { return core_->try_push(b); });
  }

  // get without waiting: nullopt when empty. Throws queue_closed (closed and drained),
  // decode_error.
  std::optional<T> try_get() {
    std::optional<T> out;
    if (core_->try_pop([&](std::span<const std::byte> b) { detail::decode_into(b, out); }))
      return out;
    if (core_->closed())
      core_->throw_closed("get");
    return std::nullopt;
  }

  // put inside a corio loop: the coroutine, not the thread, waits while the queue is full.
  // Takes v by value so that the task owns it. Same errors as put, plus operation_cancelled.
  [[nodiscard]] task<void> async_put(T v, timeout_type timeout = {}) {
    if (core_->closed())
      core_->throw_closed("put");
    // The encoding lives in this frame: other coroutines of this thread may put while we wait.
    std::vector<std::byte> storage;
    std::span<const std::byte> bytes;
    if constexpr (detail::codec_memcpy<T>) {
      bytes = std::as_bytes(std::span<const T, 1>(&v, 1));
    } else {
      corio::encode(v, storage);
      bytes = storage;
    }
    if (core_->try_push(bytes))
      co_return;
    const auto deadline = detail::queue_deadline(timeout, "put");
    bool pushed = false;
    bool closed = false;
    auto ready = [&] {
      closed = core_->closed();
      if (closed)
        return true;
      pushed = core_->try_push(bytes);
      if (!pushed)
        core_->producer_may_sleep();
      return pushed;
    };
    co_await core_->not_full().async_wait_until(ready, deadline);
    if (pushed)
      co_return;
    if (closed || core_->closed())
      core_->throw_closed("put");
    core_->throw_full(timeout);
  }

  // get inside a corio loop. Same errors as get, plus operation_cancelled.
  [[nodiscard]] task<T> async_get(timeout_type timeout = {}) {
    std::optional<T> out;
    auto pop = [&] { return core_->try_pop([&](std::span<const std::byte> b) { detail::decode_into(b, out); }); };
    if (pop())
      co_return std::move(*out);
    const auto deadline = detail::queue_deadline(timeout, "get");
    bool closed = false;
    auto ready = [&] {
      if (pop())
        return true;
      core_->consumer_may_sleep();
      closed = core_->closed();
      return closed;
    };
    co_await core_->not_empty().async_wait_until(ready, deadline);
    if (out)
      co_return std::move(*out);
    if (closed || core_->closed())
      core_->throw_closed("get");
    core_->throw_empty(timeout);
  }

  // Makes later puts fail and wakes every waiter; gets drain what is left. Idempotent.
  void close() noexcept { core_->close(); }
  [[nodiscard]] bool closed() const noexcept { return core_->closed(); }

  // Approximate under concurrency (see the top of the file).
  [[nodiscard]] std::size_t size() const noexcept { return core_->ring().size(); }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] bool full() const noexcept { return size() >= capacity(); }

  [[nodiscard]] std::size_t capacity() const noexcept { return core_->ring().capacity(); }
  [[nodiscard]] std::size_t max_message_bytes() const noexcept { return core_->ring().max_payload(); }

 private:
  std::shared_ptr<detail::queue_core> core_;
};

}  // namespace corio
