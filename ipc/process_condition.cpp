#include "process_condition.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "detail/shared_atomic.hpp"

namespace corio {
namespace {

constexpr std::uint64_t one_waiter = std::uint64_t{1} << 32;

std::uint64_t waiters_of(std::uint64_t counts) noexcept { return counts >> 32; }
std::uint64_t tokens_of(std::uint64_t counts) noexcept { return counts & 0xffffffffu; }

void require_held(const process_mutex& lock, const char* what) {
  if (!lock.held_by_this_thread())
    throw std::logic_error(std::string("process_condition::") + what + ": the calling thread does not hold the lock");
}

// Changes counts by `step(counts)` (CAS loop); step returns the new value, or nothing to
// leave it unchanged. Returns whether it changed. acq_rel: the counts themselves carry no
// data, but a token taken must not be reordered before the sleep it ends.
template <class Step>
bool update_counts(std::uint64_t& counts_word, Step step) noexcept {
  std::atomic_ref<std::uint64_t> counts(counts_word);
  std::uint64_t c = counts.load(std::memory_order_relaxed);
  for (;;) {
    const std::optional<std::uint64_t> next = step(c);
    if (!next) return false;
    if (counts.compare_exchange_weak(c, *next, std::memory_order_acq_rel, std::memory_order_relaxed)) return true;
  }
}

}  // namespace

process_condition::process_condition() : block_("process_condition"), lock_(block_.state().lock) {}

process_condition::process_condition(process_mutex lock) : block_("process_condition"), lock_(std::move(lock)) {}

process_condition::process_condition(process_condition_state& state) noexcept : block_(state), lock_(state.lock) {}

process_condition::process_condition(process_condition_state& state, process_mutex lock) noexcept
    : block_(state), lock_(std::move(lock)) {}

process_condition::process_condition(shm_region received)
    : block_(std::move(received), "process_condition"), lock_(block_.state().lock) {}

event_count::key process_condition::enter(const char* what) {
  require_held(lock_, what);
  std::atomic_ref<std::uint64_t>(block_.state().counts).fetch_add(one_waiter, std::memory_order_relaxed);
  // Announced before the unlock: a notify by the next holder of the lock wakes this waiter.
  const event_count::key k = event_count(block_.state().wake).prepare_wait();
  lock_.unlock();
  return k;
}

// Called announced: takes a token and withdraws the announcement, or leaves it for the sleep.
bool process_condition::took_token(event_count& ev) noexcept {
  const bool taken = update_counts(block_.state().counts, [](std::uint64_t c) -> std::optional<std::uint64_t> {
    if (tokens_of(c) == 0) return std::nullopt;
    return c - one_waiter - 1;
  });
  if (taken) ev.cancel_wait();
  return taken;
}

bool process_condition::leave_on_timeout() noexcept {
  bool notified = false;
  update_counts(block_.state().counts, [&](std::uint64_t c) -> std::optional<std::uint64_t> {
    notified = tokens_of(c) >= waiters_of(c);  // every remaining waiter, this one too, was notified
    return c - one_waiter - (notified ? 1 : 0);
  });
  return notified;
}

// A cancelled waiter leaves its token, if any, to the waiters that remain.
void process_condition::leave_on_cancel() noexcept {
  update_counts(block_.state().counts, [](std::uint64_t c) -> std::optional<std::uint64_t> {
    const std::uint64_t waiters = waiters_of(c) - 1;
    return (waiters << 32) | std::min(tokens_of(c), waiters);
  });
}

bool process_condition::wait(deadline_type deadline) {
  event_count ev(block_.state().wake);
  bool notified = true;
  for (event_count::key k = enter("wait"); !took_token(ev); k = ev.prepare_wait()) {
    if (!ev.wait(k, deadline)) {
      notified = leave_on_timeout();
      break;
    }
  }
  (void)lock_.lock();  // an owner-died takeover shows in consistent()
  return notified;
}

task<bool> process_condition::async_wait(deadline_type deadline) {
  event_count ev(block_.state().wake);
  bool notified = true;
  for (event_count::key k = enter("wait"); !took_token(ev); k = ev.prepare_wait()) {
    bool woken = false;
    try {
      woken = co_await ev.async_wait(k, deadline);
    } catch (...) {
      leave_on_cancel();
      throw;
    }
    if (!woken) {
      notified = leave_on_timeout();
      break;
    }
  }
  (void)co_await lock_.async_lock();
  co_return notified;
}

void process_condition::notify(std::uint32_t n) {
  require_held(lock_, "notify");
  const bool added = update_counts(block_.state().counts, [n](std::uint64_t c) -> std::optional<std::uint64_t> {
    const std::uint64_t unnotified = waiters_of(c) - tokens_of(c);
    const std::uint64_t give = std::min<std::uint64_t>(n, unnotified);
    if (give == 0) return std::nullopt;
    return c + give;
  });
  if (added) event_count(block_.state().wake).notify_all();
}

void process_condition::notify_all() { notify(UINT32_MAX); }

}  // namespace corio
