#pragma once
// corio::process_barrier — n processes (or threads) wait until all n have arrived
// (Python's multiprocessing.Barrier).
//
//     corio::process_barrier b(3);          // made before forking the other two
//     prepare_my_part();
//     const std::uint64_t i = b.wait();     // the third arrival releases all three
//     if (i == 0) print_summary();          // indexes 0..2, one each, in arrival order
//
// wait() returns the caller's arrival index in [0, parties). The last to arrive runs the
// optional action (in its own process, before anyone is released; an action that throws
// breaks the barrier and the exception propagates to its caller) and releases the round;
// the barrier then serves the next round. abort() breaks it: every waiter, and every later
// wait(), throws broken_barrier (Python's BrokenBarrierError). A wait whose deadline passes
// breaks the barrier too (as in Python: the others would wait for a party that gave up)
// and throws broken_barrier. A broken barrier stays broken: make a new one.
//
// Shared layout (process_barrier_state): `word` = round << 32 | broken << 31 | arrived,
// changed by CAS (acq_rel: what a party wrote before arriving is visible to every party
// released by that round); `parties`, fixed at creation; `wake`, the event_count that
// waiters sleep on until the round number moves or the broken bit appears.
// A party that dies before arriving leaves the others waiting until their deadline (then
// the barrier breaks): give waits a deadline when a party may die.
//
// Thread-safety: any thread of any process mapping the state; a handle, copied freely.
// The action is a std::function of the handle, so it runs only where the handle has one.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>

#include "../coro/task.hpp"
#include "detail/shared_block.hpp"
#include "event_count.hpp"
#include "shm_region.hpp"

namespace corio {

struct process_barrier_state {
  std::uint64_t word;
  std::uint64_t parties;
  event_count_state wake;
};
static_assert(std::is_trivially_copyable_v<process_barrier_state>);

class broken_barrier : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class process_barrier {
 public:
  using clock = std::chrono::steady_clock;
  using deadline_type = std::optional<clock::time_point>;

  // A new barrier for `parties` (1 .. 2^31 - 1) in a shm_region of its own;
  // std::invalid_argument otherwise.
  explicit process_barrier(std::uint64_t parties, std::function<void()> action = {});
  // A view of a state the caller placed in shared memory with `parties` set.
  explicit process_barrier(process_barrier_state& state, std::function<void()> action = {});
  explicit process_barrier(shm_region received, std::function<void()> action = {});

  // Arrives and waits for the round to complete; the arrival index. broken_barrier when
  // the barrier is or becomes broken, or the deadline passed (which breaks it).
  std::uint64_t wait(deadline_type deadline = {});
  // Inside a running corio loop; operation_cancelled on a stop request (which breaks the
  // barrier: the round can no longer complete).
  [[nodiscard]] task<std::uint64_t> async_wait(deadline_type deadline = {});

  void abort() noexcept;
  [[nodiscard]] bool broken() const noexcept;
  [[nodiscard]] std::uint64_t parties() const noexcept;
  // How many have arrived in the current round (Python's n_waiting).
  [[nodiscard]] std::uint64_t n_waiting() const noexcept;

  [[nodiscard]] const shm_region& region() const { return block_.region("process_barrier"); }

 private:
  struct arrival {
    std::uint64_t index;
    std::uint64_t round;
    bool released;  // this arrival completed the round
  };
  arrival arrive();
  [[nodiscard]] bool round_over(std::uint64_t round) const noexcept;
  std::uint64_t finish(const arrival& a, bool woke);
  void check_parties() const;

  detail::shared_block<process_barrier_state> block_;
  std::function<void()> action_;
};

}  // namespace corio
