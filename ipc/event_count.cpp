#include "event_count.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <climits>
#include <ctime>

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

// Shared futex wait on the epoch with an absolute CLOCK_MONOTONIC deadline (steady_clock
// is CLOCK_MONOTONIC on Linux). Returns false only on timeout; EAGAIN (the epoch already
// moved) and EINTR count as wake-ups: the caller re-checks.
bool futex_sleep(std::uint32_t* address, std::uint32_t expected, event_count::deadline_type deadline) {
  timespec abs{};
  const timespec* timeout = nullptr;
  if (deadline) {
    const auto ts = detail::to_kernel_timespec(deadline->time_since_epoch());
    abs = {.tv_sec = ts.tv_sec, .tv_nsec = ts.tv_nsec};
    timeout = &abs;
  }
  const long rc = ::syscall(SYS_futex, address, FUTEX_WAIT_BITSET, expected, timeout, nullptr,
                            FUTEX_BITSET_MATCH_ANY);
  return !(rc == -1 && errno == ETIMEDOUT);
}

void futex_wake_all(std::uint32_t* address) noexcept {
  ::syscall(SYS_futex, address, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// Moves the epoch on and wakes every sleeper on it. acq_rel: the bump publishes the
// notifier's data to a waiter that reads the epoch, and sees earlier notifies.
void advance_epoch(event_count_state* s) noexcept {
  detail::fetch_add(s->word, one_epoch, std::memory_order_acq_rel);
  futex_wake_all(epoch_address(s));
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
  return futex_sleep(epoch_address(state_), k, deadline);
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
