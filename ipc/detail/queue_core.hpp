#pragma once
// The untyped machinery under corio::queue<T> (ipc/queue.hpp, which states the contract):
// the control block in front of the ring, queue_core (one mapping per process, shared by
// its handles), queue_wait (one put or get that sleeps), and the encode / decode helpers.

#include "../codec.hpp"
#include "../event_count.hpp"
#include "../mpmc_ring.hpp"
#include "../shm_region.hpp"
#include "value_arena.hpp"

#include "../../coro/task.hpp"
#include "../../runtime/detail/cpu_relax.hpp"
#include "../../runtime/detail/dekker_fence.hpp"

#include <algorithm>
#include <chrono>
#include <new>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace corio {

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

// A value's encoding in two parts, head then body (a flat value's count and data, see
// codec_flat; or the whole encoding as head and an empty body), so that a large value is
// copied into the value arena straight from the object.
struct value_parts {
  std::span<const std::byte> head;
  std::span<const std::byte> body;
  [[nodiscard]] std::size_t size() const noexcept { return head.size() + body.size(); }
};

// std::system_error (ENOMEM) for a value memory cannot hold: one being encoded (its size
// is not known before the encoding is done; encode leaves nothing behind), or a
// `bytes`-byte one being decoded.
[[noreturn]] void throw_queue_encode_no_memory();
[[noreturn]] void throw_queue_decode_no_memory(std::uint64_t bytes);

// The untyped queue: one mapping per process, shared by the handles of that process.
// Values up to slot_bytes travel inside ring slots; larger ones in the value arena
// (value_arena.hpp), named by an external message in the ring (mpmc_ring.hpp).
class queue_core {
 public:
  queue_core(std::size_t capacity, std::size_t slot_bytes, std::size_t arena_keep_bytes);
  // The queue another process made (ipc/handoff.hpp): its ring region and its value
  // arena's fd, which the arena takes (setting arena_fd to -1) once the ring checked out;
  // until then it stays the caller's. Throws std::invalid_argument when the memory is too
  // small or holds no well-formed ring, or the arena's fd is not the arena of that ring
  // (value_arena's adopting constructor).
  queue_core(shm_region received, int& arena_fd, std::uint64_t arena_span, std::uint64_t arena_keep);

  [[nodiscard]] const shm_region& region() const noexcept { return region_; }
  [[nodiscard]] const value_arena& arena() const noexcept { return arena_; }

  [[nodiscard]] bool closed() const noexcept { return load_acquire(control_->closed) != 0; }  // pairs with close()
  void close() noexcept;

  // Pushes and wakes consumers. false: full. Throws std::length_error above
  // max_value_bytes(), std::system_error when a large value cannot be stored.
  bool try_push(std::span<const std::byte> bytes) {
    if (bytes.size() > ring_.max_payload()) [[unlikely]]
      return try_push_large({bytes, {}});
    if (!ring_.try_push(bytes))
      return false;
    wake(control_->consumers_may_sleep, control_->not_empty);
    return true;
  }
  // The same for a value in parts (a body goes only with a large value).
  bool try_push(value_parts parts) {
    if (parts.body.empty())
      return try_push(parts.head);
    return try_push_large(parts);
  }
  // Pops into f (in place: a slot's payload or a mapping of the arena) and wakes
  // producers. false: empty. If f throws, the value is consumed anyway and producers are
  // still woken.
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
    const auto take = [&](std::span<const std::byte> b) {
      popped = true;
      f(b);
      if (taken_hook_ != nullptr)
        taken_hook_(taken_arg_);
    };
    return ring_.try_pop_with(take, [&](std::uint64_t slot, std::uint64_t length) { pop_large(slot, length, take); });
  }
  // The largest value (encoded), in bytes: the arena's span per slot.
  [[nodiscard]] std::uint64_t max_value_bytes() const noexcept {
    return std::max<std::uint64_t>(arena_.span(), ring_.max_payload());
  }
  // joinable_queue's hook (ipc/joinable_queue.hpp): runs after f while the value's slot is
  // still claimed, so a consumer that dies before it is counted by the ring's lost() and
  // one that dies after it by the hook's record. Set once, before the queue is shared.
  using taken_hook = void (*)(void*) noexcept;
  void set_taken_hook(taken_hook hook, void* arg) noexcept {
    taken_hook_ = hook;
    taken_arg_ = arg;
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
  // Every poll looks before it claims: a claim is a compare-exchange (mpmc_ring.hpp,
  // "Claims without a look first"), which takes the line away even when it fails.
  template <class Pop>
  bool spin_for_batch(Pop&& pop) {
    const std::uint64_t ahead = batch_for_ring();
    return (ahead > 1 && spin([&] { return ring_.published_ahead(ahead) && pop(); }, batch_tries)) ||
           spin([&] { return ring_.published_ahead(0) && pop(); });
  }

  // Blocking put of already-encoded bytes (see queue<T>::put), whole or in parts.
  void put(std::span<const std::byte> bytes, bool block, std::optional<std::chrono::nanoseconds> timeout);
  void put(value_parts parts, bool block, std::optional<std::chrono::nanoseconds> timeout);

  // Frees the claim `c` if its process died (mpmc_ring::recover) and then wakes both
  // sides: a freed slot is room for producers, a skipped one lets consumers move on.
  bool recover(const mpmc_ring::claim& c) noexcept;
  // Frees a dead process's claim in side s's way right now, if there is one.
  bool recover_blocker(mpmc_ring::side s) noexcept {
    const auto c = ring_.blocking_claim(s);
    return c && recover(*c);
  }
  // Frees every dead claim, then counts the values lost with dead processes.
  [[nodiscard]] std::uint64_t lost() noexcept;

  // Sleeps on ev until w() is true (true), or until w's deadline passed (false, after a
  // last look). The announce / re-check / sleep protocol of event_count::wait_until, whose
  // proof covers it, except that each sleep ends at w.sleep_deadline(), recomputed every
  // round: a claim in the way is looked at again after a while even if nobody wakes us.
  template <class Wait>
  static bool sleep_until(event_count ev, Wait& w) {
    for (;;) {
      if (w())
        return true;
      const event_count::key k = ev.prepare_wait();
      if (w()) {
        ev.cancel_wait();
        return true;
      }
      if (!ev.wait(k, w.sleep_deadline()) && w.expired())
        return w();
    }
  }
  // The same inside a corio loop (event_count::async_wait).
  template <class Wait>
  static task<bool> async_sleep_until(event_count ev, Wait& w) {
    for (;;) {
      if (w())
        co_return true;
      const event_count::key k = ev.prepare_wait();
      if (w()) {
        ev.cancel_wait();
        co_return true;
      }
      if (!co_await ev.async_wait(k, w.sleep_deadline()) && w.expired())
        co_return w();
    }
  }

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
  bool try_push_large(value_parts parts);
  template <class Bytes>
  void put_bytes(Bytes bytes, bool block, std::optional<std::chrono::nanoseconds> timeout);

  // The consumer's side of a large value, while the slot is claimed: checks the
  // producer's length, maps the extent, hands the bytes to take, and empties the extent
  // whatever happens (the emptier outlives the view: unmapped first, then punched).
  template <class Take>
  void pop_large(std::uint64_t slot, std::uint64_t length, Take& take) {
    if (length > arena_.span()) [[unlikely]]
      throw_corrupt_large(length);
    const value_arena::emptier emptied{arena_, slot, length};
    const value_arena::view value = arena_.map(slot, length);
    try {
      take(value.bytes());
    } catch (const std::bad_alloc&) {
      throw_queue_decode_no_memory(length);
    }
  }
  [[noreturn]] void throw_corrupt_large(std::uint64_t length) const;

  shm_region region_;
  queue_control* control_;
  mpmc_ring ring_;
  value_arena arena_;
  taken_hook taken_hook_ = nullptr;
  void* taken_arg_ = nullptr;
};

[[noreturn]] void throw_queue_decode_size(std::size_t got, std::size_t want);

// A deadline from a timeout; std::invalid_argument when it is negative (like Python).
[[nodiscard]] std::optional<std::chrono::steady_clock::time_point> queue_deadline(
    std::optional<std::chrono::nanoseconds> timeout, const char* what);

// One put or get that has to sleep, from its first sleep to its return. The blocking and
// the async version share it, so they test the same predicate in the same order and end
// with the same error.
// - operator() is the wait predicate: true once attempt() succeeded or the queue is
//   closed. A put looks at the closed flag first (no put lands once close() is seen); a
//   get tries first (gets drain a closed queue). After a failed attempt it raises its
//   side's "may sleep" flag, which queue_core::wake's no-lost-wake-up argument needs
//   stored before prepare_wait's fence: the first call of each round runs before it.
// - It also watches the claim in the ring that blocks its side (mpmc_ring::
//   blocking_claim). A claim still there after claim_patience is checked: freed if its
//   process died (the predicate then tries again), looked at again every claim_recheck
//   if not. A get on a closed queue checks at once: it is about to give up otherwise.
//   sleep_deadline() ends each sleep in time for the next check.
template <class Attempt>
class queue_wait {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds claim_patience{1};
  static constexpr std::chrono::milliseconds claim_recheck{10};

  queue_wait(queue_core& q, mpmc_ring::side side, Attempt attempt, std::optional<std::chrono::nanoseconds> timeout)
      : q_(q),
        side_(side),
        attempt_(std::move(attempt)),
        timeout_(timeout),
        deadline_(queue_deadline(timeout, is_put() ? "put" : "get")) {}

  bool operator()() {
    for (;;) {
      if (is_put()) {
        closed_ = q_.closed();
        if (closed_)
          return true;
        if ((done_ = attempt_()))
          return true;
        q_.producer_may_sleep();
      } else {
        if ((done_ = attempt_()))
          return true;
        q_.consumer_may_sleep();
        closed_ = q_.closed();
      }
      if (!freed_blocker())
        return closed_;
    }
  }

  [[nodiscard]] std::optional<clock::time_point> sleep_deadline() const noexcept {
    if (!watching_ || (deadline_ && *deadline_ < check_at_))
      return deadline_;
    return check_at_;
  }
  [[nodiscard]] bool expired() const noexcept { return deadline_ && clock::now() >= *deadline_; }

  // After the sleep: returns if the attempt succeeded, else throws queue_closed or
  // queue_full / queue_empty (the timeout elapsed).
  void finish() const {
    if (done_)
      return;
    if (closed_ || q_.closed())
      q_.throw_closed(is_put() ? "put" : "get");
    if (is_put())
      q_.throw_full(timeout_);
    q_.throw_empty(timeout_);
  }

 private:
  [[nodiscard]] bool is_put() const noexcept { return side_ == mpmc_ring::side::producers; }

  // true when it freed a dead process's claim in the way (try again).
  bool freed_blocker() {
    const auto claim = q_.ring().blocking_claim(side_);
    if (!claim) {
      watching_ = false;
      return false;
    }
    const auto now = clock::now();
    if ((!watching_ || watched_ != *claim) && !closed_) {
      watching_ = true;
      watched_ = *claim;
      check_at_ = now + claim_patience;
      return false;
    }
    if (now < check_at_ && !closed_)
      return false;
    if (q_.recover(*claim)) {
      watching_ = false;
      return true;
    }
    watching_ = true;
    watched_ = *claim;
    check_at_ = now + claim_recheck;  // alive: slow, not dead
    return false;
  }

  queue_core& q_;
  mpmc_ring::side side_;
  Attempt attempt_;
  std::optional<std::chrono::nanoseconds> timeout_;
  std::optional<clock::time_point> deadline_;
  bool done_ = false;
  bool closed_ = false;
  // The claim in the way that is being watched, if watching_ (not a std::optional: GCC's
  // -O3 -Wmaybe-uninitialized misreads comparisons of two optionals here).
  bool watching_ = false;
  mpmc_ring::claim watched_{};
  clock::time_point check_at_{};
};

// v's encoding, for a type the codec does not copy byte for byte: `count` and the data in
// place (body) for a flat type (codec_flat) whose encoding does not fit a ring slot of
// slot_bytes, else the encoding built in `storage` (head). count and storage (and v, for a
// body) must outlive the parts. std::system_error (ENOMEM) when storage cannot hold it.
template <class T>
value_parts encoded_parts(const T& v, std::size_t slot_bytes, std::uint64_t& count, std::vector<std::byte>& storage) {
  if constexpr (codec_flat<T>) {
    const auto body = codec_flat_body(v);
    if (sizeof count + body.size() > slot_bytes) {
      count = v.size();
      return {std::as_bytes(std::span<const std::uint64_t, 1>(&count, 1)), body};
    }
  }
  try {
    corio::encode(v, storage);
  } catch (const std::bad_alloc&) {
    throw_queue_encode_no_memory();
  }
  return {storage, {}};
}

// Calls f with v's encoding: f(span) with the object's own bytes when the codec copies T
// byte for byte (no allocation); else f(value_parts) with encoded_parts, built in a
// per-thread scratch buffer (valid until the next call on this thread; f must not
// suspend; count must outlive the call).
// A scratch buffer that grew past this for a large value is freed after the call, so a
// thread that once put 256 MiB does not keep 256 MiB.
inline constexpr std::size_t scratch_keep_bytes = std::size_t{4} << 20;

template <class T, class F>
decltype(auto) with_encoded(const T& v, const queue_core& q, std::uint64_t& count, F&& f) {
  if constexpr (codec_memcpy<T>) {
    return f(std::as_bytes(std::span<const T, 1>(&v, 1)));
  } else {
    thread_local std::vector<std::byte> scratch;
    scratch.clear();
    struct shrink_guard {
      ~shrink_guard() {
        if (scratch.capacity() > scratch_keep_bytes)
          std::vector<std::byte>().swap(scratch);
      }
    } shrink;
    return f(encoded_parts(v, q.ring().max_payload(), count, scratch));
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

}  // namespace corio
