#pragma once
// corio::process_semaphore / process_bounded_semaphore — counting semaphores shared by
// processes (Python's multiprocessing.Semaphore and BoundedSemaphore).
//
//     corio::process_semaphore slots(3);   // at most 3 processes inside at once
//     slots.acquire();                     // blocks while the count is 0
//     use_the_resource();
//     slots.release();
//     if (co_await slots.async_acquire(deadline)) ...  // inside a corio loop
//
// acquire() takes one unit, waiting while the count is 0; release(n) gives n back and wakes
// waiters. process_bounded_semaphore refuses (std::range_error, Python's ValueError) a
// release that would lift the count above its initial value: the sign of a double release.
// A semaphore has no owner, so units taken by a process that dies are not given back
// (Python's behave the same); use process_mutex for ownership with dead-owner recovery.
//
// Shared layout (process_semaphore_state, 24 bytes): `count`, the units available; `bound`,
// the largest count a release may reach (0 = unbounded); `wake`, the event_count waiters
// sleep on. A zero-filled state is an unbounded semaphore at count 0; set count (and bound)
// before sharing a state of your own. acquire is a CAS that decrements a positive count
// (acquire ordering: what the releaser wrote before release is visible); release is a CAS
// (release ordering) followed by notify_all, which makes no system call when nobody sleeps.
// No wake-up is lost: waiters use event_count::wait_until (announce, re-check, sleep).
//
// Fairness: none; a release wakes every sleeper and the first to retry wins.
// Thread-safety: any thread of any process mapping the state; a handle, copied freely.

#include <chrono>
#include <cstdint>
#include <optional>

#include "../coro/task.hpp"
#include "detail/shared_block.hpp"
#include "event_count.hpp"
#include "shm_region.hpp"

namespace corio {

struct process_semaphore_state {
  std::uint64_t count;
  std::uint64_t bound;
  event_count_state wake;
};
static_assert(std::is_trivially_copyable_v<process_semaphore_state>);

class process_semaphore {
 public:
  using clock = std::chrono::steady_clock;
  using deadline_type = std::optional<clock::time_point>;

  // A new semaphore holding `initial` units, in a shm_region of its own.
  explicit process_semaphore(std::uint64_t initial = 1);
  explicit process_semaphore(process_semaphore_state& state) noexcept : block_(state) {}
  explicit process_semaphore(shm_region received) : block_(std::move(received), "process_semaphore") {}

  // Takes one unit: true, or false when the deadline passed first.
  bool acquire(deadline_type deadline = {});
  template <class Rep, class Period>
  bool acquire_for(std::chrono::duration<Rep, Period> timeout) {
    return acquire(clock::now() + timeout);
  }
  [[nodiscard]] bool try_acquire() noexcept;
  // Inside a running corio loop; operation_cancelled on a stop request.
  [[nodiscard]] task<bool> async_acquire(deadline_type deadline = {});

  // Gives n units back. std::range_error when a bound would be exceeded (nothing is
  // released then); std::overflow_error past 2^63 units.
  void release(std::uint64_t n = 1);

  // The units available now (a snapshot; Python's get_value()).
  [[nodiscard]] std::uint64_t value() const noexcept;

  [[nodiscard]] const shm_region& region() const { return block_.region("process_semaphore"); }

 protected:
  process_semaphore(std::uint64_t initial, std::uint64_t bound);

 private:
  detail::shared_block<process_semaphore_state> block_;
};

// A semaphore whose count may never exceed its initial value.
class process_bounded_semaphore : public process_semaphore {
 public:
  explicit process_bounded_semaphore(std::uint64_t initial = 1) : process_semaphore(initial, initial) {}
  explicit process_bounded_semaphore(process_semaphore_state& state) noexcept : process_semaphore(state) {}
  explicit process_bounded_semaphore(shm_region received) : process_semaphore(std::move(received)) {}
};

}  // namespace corio
