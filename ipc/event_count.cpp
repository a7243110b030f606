#include "event_count.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <climits>
#include <coroutine>
#include <ctime>
#include <mutex>
#include <stop_token>
#include <thread>

#include "../coro/detail/trampoline.hpp"
#include "../coro/stop.hpp"
#include "../runtime/detail/dekker_fence.hpp"
#include "../runtime/detail/uring_awaiter.hpp"
#include "../runtime/errors.hpp"
#include "../runtime/loop.hpp"

namespace corio {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the epoch is the high half of the word: little-endian layout assumed");

constexpr std::uint64_t one_waiter = 1;
constexpr std::uint64_t one_epoch = std::uint64_t{1} << 32;

// IORING_OP_FUTEX_WAIT and the futex2 flags (Linux 6.7); Debian 12's headers predate them.
constexpr std::uint8_t op_futex_wait = 51;
constexpr std::uint32_t futex2_size_u32 = 0x02;  // a 32-bit futex word; no FUTEX2_PRIVATE: shared
constexpr std::uint64_t futex_match_any = 0xffffffffu;

std::atomic<bool> forced_fallback{false};

std::atomic_ref<std::uint64_t> word_of(event_count_state* s) noexcept { return std::atomic_ref(s->word); }

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

// Moves the epoch on and wakes every sleeper on it: the wake of notify_all, and the one a
// stop request makes in the helper-thread fallback.
void advance_epoch(event_count_state* s) noexcept {
  word_of(s).fetch_add(one_epoch, std::memory_order_acq_rel);
  futex_wake_all(epoch_address(s));
}

// Whether this kernel's io_uring knows IORING_OP_FUTEX_WAIT. io_uring_get_probe needs a
// ring of its own; a small one is set up once per process.
bool probe_uring_futex() noexcept {
  io_uring_probe* probe = io_uring_get_probe();
  if (probe == nullptr) return false;
  const bool supported = io_uring_opcode_supported(probe, op_futex_wait) != 0;
  io_uring_free_probe(probe);
  return supported;
}

// The kernel's futex wait as a ring request: fd carries the futex2 flags, addr the word,
// addr2 the expected value, addr3 the bitset (kernel io_uring/futex.c, io_futex_prep).
struct uring_futex_wait_prep {
  static constexpr int success_error = EAGAIN;  // the epoch had moved already: a wake-up
  std::uint32_t* address;
  std::uint32_t expected;
  void operator()(io_uring_sqe* sqe) const noexcept {
    io_uring_prep_rw(op_futex_wait, sqe, static_cast<int>(futex2_size_u32), address, 0, expected);
    sqe->addr3 = futex_match_any;
  }
};

// Kernels before 6.7: a helper thread blocks in futex() and posts the wake-up to the loop.
// A stop request bumps the epoch and wakes the futex, so the helper's sleep ends whether
// the request comes before or after it calls futex() (the kernel compares the epoch).
class threaded_futex_wait {
 public:
  threaded_futex_wait(event_count_state* state, std::uint32_t expected, event_count::deadline_type deadline,
                      const std::stop_token& token) noexcept
      : state_(state), expected_(expected), deadline_(deadline), token_(token) {}

  bool await_ready() const noexcept { return token_.stop_requested(); }

  void await_suspend(std::coroutine_handle<> waiter) {
    loop& lp = loop::this_loop();
    waiter_ = waiter;
    stop_.emplace(token_, wake_on_stop{state_});
    std::thread([this, &lp] {
      woken_ = futex_sleep(epoch_address(state_), expected_, deadline_);
      // After post() nothing of *this is touched here: the frame may be gone.
      lp.post([h = waiter_] { detail::resume(h); });
    }).detach();
  }

  bool await_resume() {
    stop_.reset();  // waits for a stop callback running on another thread
    if (token_.stop_requested()) throw operation_cancelled("event_count wait: cancelled");
    return woken_;
  }

 private:
  struct wake_on_stop {
    event_count_state* state;
    void operator()() const noexcept { advance_epoch(state); }
  };

  event_count_state* state_;
  std::uint32_t expected_;
  event_count::deadline_type deadline_;
  const std::stop_token& token_;
  std::coroutine_handle<> waiter_;
  bool woken_ = true;
  std::optional<std::stop_callback<wake_on_stop>> stop_;
};

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
  const std::uint64_t before = word_of(state_).fetch_add(one_waiter, std::memory_order_seq_cst);
  detail::dekker_fence();
  return static_cast<key>(before >> 32);
}

void event_count::cancel_wait() noexcept { word_of(state_).fetch_sub(one_waiter, std::memory_order_relaxed); }

bool event_count::wait(key k, deadline_type deadline) {
  const withdraw_on_exit withdraw{*this};
  return futex_sleep(epoch_address(state_), k, deadline);
}

task<bool> event_count::async_wait(key k, deadline_type deadline) {
  const withdraw_on_exit withdraw{*this};
  const std::stop_token token = co_await this_coro::stop_token;
  if (!uring_futex_supported() || forced_fallback.load(std::memory_order_relaxed)) {
    co_return co_await threaded_futex_wait(state_, k, deadline, token);
  }
  try {
    co_await detail::uring_awaiter(uring_futex_wait_prep{epoch_address(state_), k},
                                   [] { return std::string("event_count wait (io_uring futex)"); },
                                   op_options{.token = &token, .deadline = deadline});
  } catch (const timed_out&) {
    co_return false;
  }
  co_return true;
}

void event_count::notify_all() noexcept {
  // Pairs with prepare_wait (see the header: the data published before this call and the
  // waiter's announcement cannot both be missed).
  detail::dekker_fence();
  if ((word_of(state_).load(std::memory_order_relaxed) & 0xffffffffu) == 0) return;
  advance_epoch(state_);
}

bool event_count::uring_futex_supported() noexcept {
  static const bool supported = probe_uring_futex();
  return supported;
}

void detail::force_event_count_fallback(bool on) noexcept { forced_fallback.store(on, std::memory_order_relaxed); }

}  // namespace corio
