#include "process_barrier.hpp"

#include <atomic>
#include <string>

#include "detail/shared_atomic.hpp"

namespace corio {
namespace {

constexpr std::uint64_t broken_bit = std::uint64_t{1} << 31;
constexpr std::uint64_t arrived_mask = broken_bit - 1;

std::uint64_t round_of(std::uint64_t word) noexcept { return word >> 32; }

}  // namespace

process_barrier::process_barrier(std::uint64_t parties, std::function<void()> action)
    : block_("process_barrier"), action_(std::move(action)) {
  block_.state().parties = parties;
  check_parties();
}

process_barrier::process_barrier(process_barrier_state& state, std::function<void()> action)
    : block_(state), action_(std::move(action)) {
  check_parties();
}

process_barrier::process_barrier(shm_region received, std::function<void()> action)
    : block_(std::move(received), "process_barrier"), action_(std::move(action)) {
  check_parties();
}

void process_barrier::check_parties() const {
  const std::uint64_t n = parties();
  if (n == 0 || n > arrived_mask)
    throw std::invalid_argument("process_barrier: parties must be 1 .. 2^31 - 1, not " + std::to_string(n));
}

process_barrier::arrival process_barrier::arrive() {
  process_barrier_state& s = block_.state();
  std::atomic_ref<std::uint64_t> word(s.word);
  std::uint64_t w = word.load(std::memory_order_acquire);
  for (;;) {
    if ((w & broken_bit) != 0) throw broken_barrier("process_barrier: broken (aborted, timed out or cancelled)");
    const std::uint64_t index = w & arrived_mask;
    if (index + 1 < parties()) {
      // acq_rel: this party's writes travel with the round to every released party.
      if (word.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return {.index = index, .round = round_of(w), .released = false};
      continue;
    }
    if (action_) {
      try {
        action_();
      } catch (...) {
        abort();
        throw;
      }
    }
    // The next round, nobody arrived. Fails only if the barrier broke meanwhile (re-checked).
    if (word.compare_exchange_strong(w, (round_of(w) + 1) << 32, std::memory_order_acq_rel, std::memory_order_acquire)) {
      event_count(s.wake).notify_all();
      return {.index = index, .round = round_of(w), .released = true};
    }
  }
}

bool process_barrier::round_over(std::uint64_t round) const noexcept {
  const std::uint64_t w = detail::load_acquire(block_.state().word);
  return round_of(w) != round || (w & broken_bit) != 0;
}

// After the sleep: released by the round (even if the barrier broke later), or broken.
std::uint64_t process_barrier::finish(const arrival& a, bool woke) {
  const std::uint64_t w = detail::load_acquire(block_.state().word);
  if (round_of(w) != a.round) return a.index;
  if (!woke) {
    abort();
    throw broken_barrier("process_barrier: the deadline passed before all " + std::to_string(parties()) +
                         " parties arrived (the barrier is now broken)");
  }
  throw broken_barrier("process_barrier: broken while waiting (aborted, or another party timed out)");
}

std::uint64_t process_barrier::wait(deadline_type deadline) {
  const arrival a = arrive();
  if (a.released) return a.index;
  const bool woke = event_count(block_.state().wake).wait_until([&] { return round_over(a.round); }, deadline);
  return finish(a, woke);
}

task<std::uint64_t> process_barrier::async_wait(deadline_type deadline) {
  const arrival a = arrive();
  if (a.released) co_return a.index;
  bool woke = false;
  try {
    woke = co_await event_count(block_.state().wake).async_wait_until([&] { return round_over(a.round); }, deadline);
  } catch (...) {
    abort();
    throw;
  }
  co_return finish(a, woke);
}

void process_barrier::abort() noexcept {
  std::atomic_ref<std::uint64_t>(block_.state().word).fetch_or(broken_bit, std::memory_order_acq_rel);
  event_count(block_.state().wake).notify_all();
}

bool process_barrier::broken() const noexcept { return (detail::load_acquire(block_.state().word) & broken_bit) != 0; }

std::uint64_t process_barrier::parties() const noexcept { return detail::load_relaxed(block_.state().parties); }

std::uint64_t process_barrier::n_waiting() const noexcept {
  return detail::load_relaxed(block_.state().word) & arrived_mask;
}

}  // namespace corio
