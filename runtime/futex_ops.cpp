#include "futex_ops.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <ctime>
#include <coroutine>
#include <optional>
#include <stop_token>
#include <string>

#include "../coro/stop.hpp"
#include "detail/futex_thread.hpp"

namespace corio {
namespace {

// IORING_OP_FUTEX_WAIT and the futex2 flags (Linux 6.7); Debian 12's headers predate them.
constexpr std::uint8_t op_futex_wait = 51;
constexpr std::uint32_t futex2_size_u32 = 0x02;  // a 32-bit word; no FUTEX2_PRIVATE: shared
constexpr std::uint64_t futex_match_any = 0xffffffffu;

std::atomic<bool> forced_thread{false};

// The futex wait as a ring request: fd carries the futex2 flags, addr the word, addr2 the
// expected value, addr3 the bitset (kernel io_uring/futex.c, io_futex_prep).
struct uring_futex_wait_prep {
  static constexpr int success_error = EAGAIN;  // the word had changed already: a wake-up
  std::uint32_t* address;
  std::uint32_t expected;
  void operator()(io_uring_sqe* sqe) const noexcept {
    io_uring_prep_rw(op_futex_wait, sqe, static_cast<int>(futex2_size_u32), address, 0, expected);
    sqe->addr3 = futex_match_any;
  }
};

// The wait as an entry of the loop's futex thread.
class thread_futex_wait {
 public:
  thread_futex_wait(std::uint32_t* address, std::uint32_t expected, const op_options& options,
                    const std::stop_token& token) noexcept
      : token_(token) {
    entry_.address = address;
    entry_.expected = expected;
    entry_.deadline = options.deadline;
  }

  bool await_ready() const noexcept { return token_.stop_requested(); }

  void await_suspend(std::coroutine_handle<> waiter) {
    thread_ = &loop::this_loop().futex_thread();
    entry_.waiter = waiter;
    thread_->add(&entry_);
    // After add: a stop requested from here on finds the entry listed (or finished).
    if (token_.stop_possible()) stop_.emplace(token_, canceller{thread_, &entry_});
  }

  bool await_resume() {
    stop_.reset();  // waits for a callback running on another thread
    if (thread_ == nullptr || entry_.result == -ECANCELED) throw operation_cancelled("futex wait: cancelled");
    return entry_.result == 0;
  }

 private:
  struct canceller {
    detail::futex_thread* thread;
    detail::futex_wait_entry* entry;
    void operator()() const noexcept { thread->cancel(entry); }
  };

  const std::stop_token& token_;
  detail::futex_wait_entry entry_;
  detail::futex_thread* thread_ = nullptr;
  std::optional<std::stop_callback<canceller>> stop_;
};

}  // namespace

task<bool> futex_wait(std::uint32_t* address, std::uint32_t expected, op_options options) {
  const std::stop_token ambient = co_await this_coro::stop_token;
  const std::stop_token& token = options.token != nullptr ? *options.token : ambient;
  if (forced_thread.load(std::memory_order_relaxed) || !loop::this_loop().features().futex_wait)
    co_return co_await thread_futex_wait(address, expected, options, token);
  try {
    co_await detail::uring_awaiter(uring_futex_wait_prep{address, expected},
                                   [] { return std::string("futex wait (io_uring)"); },
                                   op_options{.token = &token, .deadline = options.deadline});
  } catch (const timed_out&) {
    co_return false;
  }
  co_return true;
}

void detail::force_futex_thread(bool on) noexcept { forced_thread.store(on, std::memory_order_relaxed); }

bool detail::futex_wait_blocking(std::uint32_t* address, std::uint32_t expected,
                                 std::optional<std::chrono::steady_clock::time_point> deadline) {
  timespec abs{};
  const timespec* timeout = nullptr;
  if (deadline) {
    const auto ts = to_kernel_timespec(deadline->time_since_epoch());
    abs = {.tv_sec = ts.tv_sec, .tv_nsec = ts.tv_nsec};
    timeout = &abs;
  }
  const long rc = ::syscall(SYS_futex, address, FUTEX_WAIT_BITSET, expected, timeout, nullptr,
                            FUTEX_BITSET_MATCH_ANY);
  return !(rc == -1 && errno == ETIMEDOUT);
}

void detail::futex_wake_all(std::uint32_t* address) noexcept {
  ::syscall(SYS_futex, address, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace corio
