#pragma once
// corio::process_event — a flag shared by processes that others can wait for (Python's
// multiprocessing.Event).
//
//     corio::process_event ready;
//     // one process                 // others
//     load_the_model();              if (!ready.wait(deadline)) give_up();
//     ready.set();                   co_await ready.async_wait();   // inside a loop
//
// set() raises the flag and wakes every waiter; clear() lowers it; wait() returns at once
// while the flag is up, else sleeps until set() or the deadline (false). Like Python's,
// a waiter woken by set() returns true even if someone clears the flag before it runs.
//
// Shared layout (process_event_state, 16 bytes, zero = clear): `flag` (0 or 1), stored with
// release and read with acquire, so what the setter wrote before set() is visible to a
// waiter that saw the flag; `wake`, the event_count (announce, re-check, sleep: no lost
// wake-up; set() makes no system call when nobody sleeps).
//
// Thread-safety: any thread of any process mapping the state; a handle, copied freely.

#include <chrono>
#include <cstdint>
#include <optional>

#include "../coro/task.hpp"
#include "detail/shared_block.hpp"
#include "event_count.hpp"
#include "shm_region.hpp"

namespace corio {

struct process_event_state {
  std::uint64_t flag;
  event_count_state wake;
};
static_assert(std::is_trivially_copyable_v<process_event_state>);

class process_event {
 public:
  using clock = std::chrono::steady_clock;
  using deadline_type = std::optional<clock::time_point>;

  // A new, clear event in a shm_region of its own.
  process_event();
  explicit process_event(process_event_state& state) noexcept : block_(state) {}
  explicit process_event(shm_region received) : block_(std::move(received), "process_event") {}

  void set() noexcept;
  void clear() noexcept;
  [[nodiscard]] bool is_set() const noexcept;

  // True once the flag is (or was) up, false when the deadline passed first.
  bool wait(deadline_type deadline = {});
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait(clock::now() + timeout);
  }
  // Inside a running corio loop; operation_cancelled on a stop request.
  [[nodiscard]] task<bool> async_wait(deadline_type deadline = {});

  [[nodiscard]] const shm_region& region() const { return block_.region("process_event"); }

 private:
  bool over(event_count& ev, event_count::key first, event_count::key now) const noexcept;

  detail::shared_block<process_event_state> block_;
};

}  // namespace corio
