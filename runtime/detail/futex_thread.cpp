#include "futex_thread.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <ctime>
#include <exception>

#include "../../coro/detail/trampoline.hpp"
#include "../kernel_features.hpp"
#include "../loop.hpp"
#include "uring_awaiter.hpp"

namespace corio::detail {
namespace {

using clock = std::chrono::steady_clock;

// A word nobody wakes on purpose is re-read this often when the thread cannot sleep on it
// (no futex_waitv, or more distinct words than one futex_waitv takes).
constexpr auto poll_interval = std::chrono::milliseconds(1);

std::atomic_ref<std::uint32_t> word(std::uint32_t& w) noexcept { return std::atomic_ref<std::uint32_t>(w); }

timespec to_timespec(clock::time_point t) noexcept {
  const __kernel_timespec k = to_kernel_timespec(t.time_since_epoch());
  return {.tv_sec = k.tv_sec, .tv_nsec = k.tv_nsec};
}

}  // namespace

futex_thread::futex_thread(loop& lp) : loop_(lp), thread_([this] { run(); }) {}

futex_thread::~futex_thread() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
    nudge();
  }
  thread_.join();
}

void futex_thread::add(futex_wait_entry* e) {
  const std::lock_guard lock(mutex_);
  pending_.push_back(e);
  ++outstanding_;
  nudge();
}

void futex_thread::cancel(futex_wait_entry* e) noexcept {
  const std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    if (pending_[i] == e) {
      finish(i, -ECANCELED);
      nudge();  // the thread stops sleeping on a word nobody waits for
      return;
    }
  }
}

void futex_thread::cancel_all() noexcept {
  const std::lock_guard lock(mutex_);
  while (!pending_.empty()) finish(pending_.size() - 1, -ECANCELED);
  nudge();
}

void futex_thread::finish(std::size_t i, int result) noexcept {
  futex_wait_entry* e = pending_[i];
  pending_[i] = pending_.back();
  pending_.pop_back();
  e->result = result;
  try {
    loop_.post([this, h = e->waiter] {
      --outstanding_;
      resume(h);
    });
  } catch (...) {
    // post() allocates; out of memory nothing can resume the waiter. Not recoverable.
    std::terminate();
  }
}

void futex_thread::nudge() noexcept {
  // Relaxed: the mutex orders the list; the kernel only compares the value.
  word(control_).fetch_add(1, std::memory_order_relaxed);
  ::syscall(SYS_futex, &control_, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

void futex_thread::run() noexcept {
  const bool can_waitv = kernel_feature_on_noexcept(kernel_feature::futex_waitv);
  std::vector<futex_waitv> words;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    // Finish what is due and gather the distinct words of the rest. Acquire: a wait that
    // ends because its word changed returns after the writer's earlier stores.
    const clock::time_point now = clock::now();
    std::optional<clock::time_point> wake_at;
    const std::uint32_t control = word(control_).load(std::memory_order_relaxed);
    words.clear();
    words.push_back({.val = control,
                     .uaddr = reinterpret_cast<std::uintptr_t>(&control_),
                     .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG,
                     .__reserved = 0});
    bool overflow = false;
    for (std::size_t i = 0; i < pending_.size();) {
      futex_wait_entry* e = pending_[i];
      if (word(*e->address).load(std::memory_order_acquire) != e->expected) {
        finish(i, 0);
        continue;
      }
      if (e->deadline && *e->deadline <= now) {
        finish(i, -ETIMEDOUT);
        continue;
      }
      if (e->deadline && (!wake_at || *e->deadline < *wake_at)) wake_at = e->deadline;
      const auto address = reinterpret_cast<std::uintptr_t>(e->address);
      bool listed = false;
      for (const futex_waitv& w : words) listed |= w.uaddr == address;
      if (!listed) {
        // Shared futexes (no FUTEX_PRIVATE_FLAG): the word may live in memory another
        // process maps and wakes.
        if (can_waitv && words.size() < FUTEX_WAITV_MAX)
          words.push_back({.val = e->expected, .uaddr = address, .flags = FUTEX_32, .__reserved = 0});
        else
          overflow = true;
      }
      ++i;
    }
    if (overflow && (!wake_at || now + poll_interval < *wake_at)) wake_at = now + poll_interval;
    lock.unlock();

    timespec until{};
    if (wake_at) until = to_timespec(*wake_at);
    long woken = -1;
    if (can_waitv) {
      woken = ::syscall(SYS_futex_waitv, words.data(), words.size(), 0, wake_at ? &until : nullptr, CLOCK_MONOTONIC);
      if (woken < 0 && errno != EAGAIN && errno != ETIMEDOUT && errno != EINTR) {
        // EFAULT (a word unmapped under its waiter) or the like: never spin on it; sleep
        // on the control word for a poll interval instead, as without futex_waitv.
        const timespec pause = to_timespec(std::min(wake_at.value_or(clock::time_point::max()), now + poll_interval));
        ::syscall(SYS_futex, &control_, FUTEX_WAIT_BITSET_PRIVATE, control, &pause, nullptr, FUTEX_BITSET_MATCH_ANY);
      }
    } else {
      // Only the control word can be slept on; the others are re-read at every turn.
      ::syscall(SYS_futex, &control_, FUTEX_WAIT_BITSET_PRIVATE, control, wake_at ? &until : nullptr, nullptr,
                FUTEX_BITSET_MATCH_ANY);
    }

    lock.lock();
    // A futex_wake on a word ends its waits even if the word kept its value.
    if (woken > 0) {
      const std::uintptr_t address = words[static_cast<std::size_t>(woken)].uaddr;
      for (std::size_t i = 0; i < pending_.size();) {
        if (reinterpret_cast<std::uintptr_t>(pending_[i]->address) == address)
          finish(i, 0);
        else
          ++i;
      }
    }
  }
}

}  // namespace corio::detail
