#include "process_mutex.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "../runtime/detail/cpu_relax.hpp"
#include "detail/process_owner.hpp"
#include "detail/shared_atomic.hpp"

namespace corio {
namespace {

using namespace std::chrono_literals;
using clock = process_mutex::clock;

constexpr std::uint64_t sleepers_bit = std::uint64_t{1} << 63;
// When a waiter first asks whether the holder lives, then how often: bounds how long a
// dead holder's lock stays unavailable, at the price of a /proc read per interval and waiter.
// Atomics only so that tests can change them (detail::set_owner_check_intervals).
std::atomic<std::int64_t> first_liveness_check_ms{10};
std::atomic<std::int64_t> liveness_interval_ms{100};

clock::duration first_liveness_check() noexcept {
  return std::chrono::milliseconds(first_liveness_check_ms.load(std::memory_order_relaxed));
}
clock::duration liveness_interval() noexcept {
  return std::chrono::milliseconds(liveness_interval_ms.load(std::memory_order_relaxed));
}
// A holder usually releases within a few hundred ns: a short spin avoids the futex sleep.
constexpr int spin_rounds = 100;
constexpr int max_pauses = 64;

// The acquiring CAS: acquire on success (the previous holder's writes become visible);
// the value read on failure only steers the next attempt.
bool cas_owner(process_mutex_state& s, std::uint64_t& expected, std::uint64_t desired) noexcept {
  return std::atomic_ref<std::uint64_t>(s.owner).compare_exchange_strong(expected, desired, std::memory_order_acquire,
                                                                         std::memory_order_relaxed);
}

std::uint64_t holder_of(std::uint64_t word) noexcept { return word & detail::owner_token_bits; }

// Hands the lock of a dead holder to `token`. `word` is the value just read; several
// threads may see the death at once: the CAS picks one, the others find a live holder
// (the winner) on their next attempt. The state is flagged before the winner returns.
bool take_over_if_dead(process_mutex_state& s, std::uint64_t word, std::uint64_t token) {
  if (detail::owner_alive(holder_of(word)) || !cas_owner(s, word, token | (word & sleepers_bit))) return false;
  detail::store_release(s.inconsistent, 1);
  return true;
}

// A thread locking what it holds would wait for itself forever.
[[noreturn]] void refuse_relock() {
  throw std::logic_error(
      "process_mutex::lock: the calling thread already holds it (not recursive: use process_recursive_mutex)");
}

// One turn of a waiting lock: either it ends (held, or the deadline passed) or the waiter
// has announced itself in the event_count and must sleep with `key` until `until`.
struct turn {
  std::optional<lock_result> done;
  event_count::key key = 0;
  process_mutex::deadline_type until = std::nullopt;

  static turn ended(lock_result::status s) noexcept { return {.done = lock_result(s)}; }
};

class waiting_lock {
 public:
  waiting_lock(process_mutex_state& s, process_mutex::deadline_type deadline) noexcept
      : s_(s), token_(detail::this_thread_owner_token()), deadline_(deadline) {}

  turn next() {
    for (;;) {
      std::uint64_t word = detail::load_relaxed(s_.owner);
      if (word == 0) {
        // Taken after a sleep: other sleepers may remain, so the bit is set again
        // (an extra notify at unlock when there were none, never a lost one).
        if (cas_owner(s_, word, token_ | (slept_ ? sleepers_bit : 0))) return turn::ended(lock_result::status::acquired);
        continue;
      }
      if (holder_of(word) == token_) refuse_relock();
      const auto now = clock::now();
      const bool expired = deadline_ && now >= *deadline_;
      if (now >= next_check_ || expired) {
        if (take_over_if_dead(s_, word, token_)) return turn::ended(lock_result::status::owner_died);
        if (detail::load_relaxed(s_.owner) != word) continue;  // changed hands meanwhile
        next_check_ = now + liveness_interval();
      }
      if (expired) return turn::ended(lock_result::status::timed_out);
      if ((word & sleepers_bit) == 0) {
        std::uint64_t expected = word;
        if (!std::atomic_ref<std::uint64_t>(s_.owner).compare_exchange_strong(expected, word | sleepers_bit,
                                                                              std::memory_order_relaxed))
          continue;
        word |= sleepers_bit;
      }
      event_count ev(s_.wake);
      const event_count::key key = ev.prepare_wait();
      // Re-read after the announcement (see the header: no lost wake-up).
      if (detail::load_relaxed(s_.owner) != word) {
        ev.cancel_wait();
        continue;
      }
      slept_ = true;
      return {.done = std::nullopt, .key = key, .until = deadline_ ? std::min(*deadline_, next_check_) : next_check_};
    }
  }

  // Polls with exponential backoff (1, 2, 4 .. 64 pauses between looks): a waiter that
  // polled the word constantly would pull its cache line away from the holder at every
  // look, and a holder that re-locks at once (the common case in a loop) then pays a
  // cross-core transfer per lock. Backing off lets it keep the line for a while: more
  // throughput, at the price of short-term fairness (none is promised, see the header).
  bool try_spin() {
    if (holder_of(detail::load_relaxed(s_.owner)) == token_) refuse_relock();  // before spinning on it
    int pauses = 1;
    for (int i = 0; i < spin_rounds; ++i) {
      std::uint64_t word = detail::load_relaxed(s_.owner);
      if (word == 0 && cas_owner(s_, word, token_)) return true;
      for (int p = 0; p < pauses; ++p) detail::cpu_relax();
      if (pauses < max_pauses) pauses *= 2;
    }
    return false;
  }

 private:
  process_mutex_state& s_;
  std::uint64_t token_;
  process_mutex::deadline_type deadline_;
  clock::time_point next_check_ = clock::now() + first_liveness_check();
  bool slept_ = false;
};

}  // namespace

process_mutex::process_mutex() : block_("process_mutex") {}

process_mutex::process_mutex(shm_region received) : block_(std::move(received), "process_mutex") {}

lock_result process_mutex::try_lock() {
  std::uint64_t expected = 0;
  if (cas_owner(state(), expected, detail::this_thread_owner_token())) return lock_result::status::acquired;
  // Busy: a dead holder's lock is handed on here too, so try_lock cannot fail forever.
  if (expected != 0 && holder_of(expected) != detail::this_thread_owner_token() &&
      take_over_if_dead(state(), expected, detail::this_thread_owner_token()))
    return lock_result::status::owner_died;
  return lock_result::status::timed_out;
}

lock_result process_mutex::try_lock_until(clock::time_point deadline) {
  return try_take_free() ? lock_result::status::acquired : acquire(deadline);
}

lock_result process_mutex::acquire(deadline_type deadline) {
  waiting_lock w(state(), deadline);
  if (w.try_spin()) return lock_result::status::acquired;
  for (;;) {
    const turn t = w.next();
    if (t.done) return *t.done;
    event_count(state().wake).wait(t.key, t.until);
  }
}

task<lock_result> process_mutex::async_lock(deadline_type deadline) {
  if (try_take_free()) co_return lock_result::status::acquired;
  // No spin here: spinning would stall the loop's other coroutines.
  waiting_lock w(state(), deadline);
  for (;;) {
    const turn t = w.next();
    if (t.done) co_return *t.done;
    co_await event_count(state().wake).async_wait(t.key, t.until);
  }
}

void process_mutex::unlock_slow() {
  process_mutex_state& s = state();
  const std::uint64_t token = detail::this_thread_owner_token();
  std::uint64_t word = detail::load_relaxed(s.owner);
  for (;;) {
    if (holder_of(word) != token)
      throw std::logic_error("process_mutex::unlock: the calling thread does not hold the lock");
    // Release: the holder's writes are visible to whoever acquires next.
    if (std::atomic_ref<std::uint64_t>(s.owner).compare_exchange_weak(word, 0, std::memory_order_release,
                                                                      std::memory_order_relaxed))
      break;
  }
  if ((word & sleepers_bit) != 0) event_count(s.wake).notify_all();
}

bool process_mutex::held_by_this_thread() const noexcept {
  return holder_of(detail::load_relaxed(state().owner)) == detail::this_thread_owner_token();
}

bool process_mutex::consistent() const noexcept { return detail::load_acquire(state().inconsistent) == 0; }

void process_mutex::mark_consistent() noexcept { detail::store_release(state().inconsistent, 0); }

void detail::set_owner_check_intervals(std::chrono::milliseconds first, std::chrono::milliseconds every) noexcept {
  first_liveness_check_ms.store(first.count(), std::memory_order_relaxed);
  liveness_interval_ms.store(every.count(), std::memory_order_relaxed);
}

}  // namespace corio
