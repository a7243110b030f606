#include "event_count.hpp"

#include <bit>

#include "../runtime/futex_ops.hpp"
#include "detail/shared_atomic.hpp"

namespace corio {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the epoch is the high half of the word: little-endian layout assumed");

constexpr std::uint64_t one_waiter = 1;
constexpr std::uint64_t one_epoch = std::uint64_t{1} << 32;

// The epoch half of the word: the address the kernel sleeps on.
std::uint32_t* epoch_address(event_count_state* s) noexcept {
  return reinterpret_cast<std::uint32_t*>(&s->word) + 1;
}

// Moves the epoch on and wakes every sleeper on it. acq_rel: the bump publishes the
// notifier's data to a waiter that reads the epoch, and sees earlier notifies.
void advance_epoch(event_count_state* s) noexcept {
  detail::fetch_add(s->word, one_epoch, std::memory_order_acq_rel);
  detail::futex_wake_all(epoch_address(s));
}

// Withdraws the announcement when the wait ends, however it ends (value, timeout, throw).
// It keeps its own copy of the view, so the event_count a wait was called on need not
// outlive the sleep.
struct withdraw_on_exit {
  event_count ec;
  ~withdraw_on_exit() { ec.cancel_wait(); }
};

}  // namespace

event_count::key event_count::prepare_wait() noexcept {
  // The announcement, then the fence: pairs with the fence in notify_all, so the re-check
  // that follows cannot read data older than a notifier that missed this announcement.
  const std::uint64_t before = detail::fetch_add(state_->word, one_waiter, std::memory_order_seq_cst);
  detail::dekker_fence();
  return static_cast<key>(before >> 32);
}

void event_count::cancel_wait() noexcept { detail::fetch_sub(state_->word, one_waiter, std::memory_order_relaxed); }

bool event_count::wait(key k, deadline_type deadline) {
  const withdraw_on_exit withdraw{*this};
  return detail::futex_wait_blocking(epoch_address(state_), k, deadline);
}

task<bool> event_count::async_wait(key k, deadline_type deadline) {
  const withdraw_on_exit withdraw{*this};
  co_return co_await futex_wait(epoch_address(state_), k, {.token = nullptr, .deadline = deadline});
}

void event_count::notify_all() noexcept {
  // Pairs with prepare_wait (see the header: the data published before this call and the
  // waiter's announcement cannot both be missed).
  detail::dekker_fence();
  if ((detail::load_relaxed(state_->word) & 0xffffffffu) == 0) return;
  advance_epoch(state_);
}

}  // namespace corio
