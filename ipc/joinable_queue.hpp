#pragma once
// corio::joinable_queue<T> — Python's multiprocessing.JoinableQueue: a queue<T> (every
// member, same contract: ipc/queue.hpp) plus task_done() and join() across processes.
//
//     corio::joinable_queue<int> q;                            // in the parent, before fork
//     corio::process worker([](corio::joinable_queue<int> q) {
//       for (;;) { handle(q.get()); q.task_done(); }
//     }, q);
//     worker.start();
//     for (int i = 0; i < 100; ++i) q.put(i);
//     q.join();                                                 // all 100 handled
//
// Contract
// - Every value put counts as one unfinished task (counted before the value can be taken,
//   as Python does, so a fast consumer's task_done never finds the count at zero). A put
//   that throws (full, closed, oversize, encode error) counts nothing.
// - task_done() marks one task finished. Called more times than values were put, it
//   throws std::logic_error (Python's ValueError) and changes nothing.
// - join(timeout) returns true once every value ever put has had its task_done() (or was
//   written off, below); false when the timeout elapsed first. Without a timeout it waits
//   as long as it takes. async_join(timeout) is the same inside a corio loop: the
//   coroutine sleeps, the loop runs its other coroutines. Either honours the usual
//   negative-timeout rule (std::invalid_argument); async_join honours the ambient stop
//   token (operation_cancelled).
// - Any thread of any process fork()ed after construction may call any member.
//
// Shared state: a second, small shm_region (joinable_state below) made by the
// constructor next to the queue's own, shared the same way (copies share it, children
// inherit it). The counter does not need to be inside the ring's mapping, only mapped by
// the same processes; the queue itself only gained a hook its pop calls.
//
// No lost wake-up: join sleeps on the event_count all_done. task_done() and every
// write-off change `unfinished` / `written_off` first (an RMW) and then call
// all_done.notify_all(); join announces itself (prepare_wait) and then re-reads both
// words (event_count::wait_until). event_count's argument (ipc/event_count.hpp) applies:
// the notifier's data write and the waiter's announcement are each followed by a seq_cst
// fence, so either join's re-read sees the finished count, or notify_all sees the
// announced waiter and bumps the epoch, which the futex wait compares atomically.
// Ordering of what the tasks did: task_done's decrement is a release compare-exchange
// and join reads the count with an acquire load (later decrements, read-modify-writes,
// continue the release sequence), so everything a consumer wrote before
// its task_done is visible to the code after join returns.
//
// Processes that die (SIGKILL, a crash). Python's JoinableQueue hangs join() forever when
// a consumer dies holding a value. Here the rule is: a value whose process died before
// its task_done is counted as done (written off), so join() cannot hang on it.
// - Each process that holds values (taken by a get but not yet task_done, or inside a
//   put) has an entry in `holders`: its owner mark (pid and start-time token, the ring's
//   own, mpmc_ring.hpp "Owners") and how many it holds, in one 64-bit word. get adds one
//   while the value's ring slot is still claimed (a hook in queue_core::try_pop, after
//   the decode, before the slot is freed); task_done subtracts one (its own process's, when
//   it has any) after the unfinished count went down; put adds one for its duration. An
//   entry whose count reaches zero is freed, so only processes holding something use one.
// - A waiting join, every 10 ms, checks the owners of the entries: a dead owner's entry
//   is taken by a compare-exchange (only one joiner wins) and its count added to
//   `written_off`. Values lost inside a put or get claim (queue<T>::lost(), which join
//   calls then too) are written off as well: such a value has no consumer left to call
//   task_done.
// - The windows are ordered so that a death makes join return early rather than hang:
//   a consumer killed after its task_done's decrement but before it freed its entry, or
//   a producer killed inside its put (the value may still be delivered, or also counted
//   by lost()), writes off one value too many. Such an excess stays: a later join may
//   return while that many tasks are still unfinished. The same holds for a consumer
//   killed inside get between the entry's increment and the freeing of the slot (a few
//   instructions): its entry and lost() both count the value. No window is uncovered: a
//   get killed before the increment left its claim, which lost() counts. (A hook after
//   the get instead would leave the get's wake-up of a sleeping producer, a system call,
//   uncovered: the random-kill test caught that.) A get that throws decode_error consumed
//   a value without holding it: its task_done may still be called, from any process.
// - task_done in another process than the get's (a value handed on) is allowed; if the
//   getter then dies, its entry still counts the value and join writes it off again
//   (early return, never a hang). With more than 256 processes holding values at once,
//   the extra ones are not tracked (they still count for task_done and join, but their
//   death is not written off).

#include "event_count.hpp"
#include "mpmc_ring.hpp"
#include "queue.hpp"
#include "detail/shared_atomic.hpp"
#include "detail/shared_block.hpp"

#include "../coro/task.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace corio {

namespace detail {

inline constexpr std::size_t joinable_holder_slots = 256;

// Written by every process (producers, consumers, joiners); zero-filled means no task.
struct joinable_state {
  // Values put minus task_done calls (Python's _unfinished_tasks). Never below zero:
  // task_done decrements it by compare-exchange, only from a non-zero value.
  alignas(64) std::uint64_t unfinished;
  // Values of dead processes counted as done; only grows. join: unfinished <= written_off.
  std::uint64_t written_off;
  // How much of the queue's lost() is already in written_off.
  std::uint64_t lost_seen;
  // join sleeps here; task_done and write-offs notify.
  alignas(64) event_count_state all_done;
  // {owner mark << 32 | values held}; 0 is a free entry. A mark has its top bit set, so a
  // used entry is never 0.
  alignas(64) std::uint64_t holders[joinable_holder_slots];
};
static_assert(std::is_trivially_copyable_v<joinable_state>);
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);

class joinable_core {
 public:
  joinable_core() : block_("corio-joinable-queue") {}
  // The counter in a region another process made (ipc/handoff.hpp); std::invalid_argument
  // when it is too small.
  explicit joinable_core(shm_region received) : block_(std::move(received), "corio::joinable_queue") {}
  [[nodiscard]] const shm_region& region() const { return block_.region("corio::joinable_queue"); }

  // A put is about to start: one more unfinished task, held by this process meanwhile.
  void begin_put() noexcept {
    hold();
    (void)fetch_add(state().unfinished, 1, std::memory_order_relaxed);  // published by the ring's release
  }
  void end_put() noexcept { release(); }
  // The put did not happen (it threw, or try_put found the queue full).
  void cancel_put() noexcept {
    (void)fetch_sub(state().unfinished, 1, std::memory_order_relaxed);
    release();
    all_done().notify_all();
  }
  // A value is being taken out of the ring by this process (its slot still claimed).
  void taken() noexcept { hold(); }

  void task_done() {
    std::uint64_t u = load_relaxed(state().unfinished);
    // Release: what the caller did for the task is visible to whoever sees the count drop.
    do {
      if (u == 0)
        throw std::logic_error("corio::joinable_queue::task_done: called more times than values were put");
    } while (!compare_exchange_release(state().unfinished, u, u - 1));
    release();
    all_done().notify_all();
  }

  [[nodiscard]] bool all_finished() const noexcept {
    // written_off first: it only grows, so a later, larger unfinished cannot pass for done.
    const std::uint64_t w = load_acquire(state().written_off);
    return load_acquire(state().unfinished) <= w;
  }
  [[nodiscard]] std::uint64_t unfinished() const noexcept {
    const std::uint64_t w = load_acquire(state().written_off);
    const std::uint64_t u = load_acquire(state().unfinished);
    return u > w ? u - w : 0;
  }

  // Writes off the values of dead holders and the queue's newly lost values.
  void write_off_dead(std::uint64_t queue_lost) noexcept;

  [[nodiscard]] event_count all_done() const noexcept { return event_count(state().all_done); }
  [[nodiscard]] joinable_state& state() const noexcept { return block_.state(); }

 private:
  static constexpr std::uint64_t count_mask = 0xffffffffULL;
  [[nodiscard]] static std::size_t home(std::uint32_t mark) noexcept { return (mark * 2654435761u) % joinable_holder_slots; }

  void hold() noexcept;
  void release() noexcept;

  shared_block<joinable_state> block_;
};

inline void joinable_core::hold() noexcept {
  const std::uint64_t mine = std::uint64_t{mpmc_claim_mark()} << 32;
  for (int round = 0; round < 2; ++round) {
    const std::size_t start = home(static_cast<std::uint32_t>(mine >> 32));
    for (std::size_t n = 0; n < joinable_holder_slots; ++n) {
      std::uint64_t& entry = state().holders[(start + n) % joinable_holder_slots];
      std::uint64_t w = load_relaxed(entry);
      while (w == 0 || (w & ~count_mask) == mine) {
        // Relaxed: the entry is read only to write off a dead owner, which orders nothing.
        if (compare_exchange_relaxed(entry, w, (w == 0 ? mine : w) + 1))
          return;
      }
    }
    write_off_dead(0);  // full: free the entries of dead processes, then look once more
  }
  // More than joinable_holder_slots live holders: this value is not tracked (see the top).
}

inline void joinable_core::release() noexcept {
  const std::uint64_t mine = std::uint64_t{mpmc_claim_mark()} << 32;
  const std::size_t start = home(static_cast<std::uint32_t>(mine >> 32));
  for (std::size_t n = 0; n < joinable_holder_slots; ++n) {
    std::uint64_t& entry = state().holders[(start + n) % joinable_holder_slots];
    std::uint64_t w = load_relaxed(entry);
    while ((w & ~count_mask) == mine && w != 0) {
      if (compare_exchange_relaxed(entry, w, (w & count_mask) == 1 ? 0 : w - 1))
        return;
    }
  }
  // Not found: a task_done for a value another process took, or an untracked one.
}

inline void joinable_core::write_off_dead(std::uint64_t queue_lost) noexcept {
  std::uint64_t freed = 0;
  for (std::uint64_t& entry : state().holders) {
    std::uint64_t w = load_relaxed(entry);
    if (w == 0 || mpmc_claim_owner_alive(static_cast<std::uint32_t>(w >> 32)))
      continue;
    // Death is final: nobody but write-offs changes a dead owner's entry, and of several
    // joiners only the one whose exchange succeeds counts it.
    if (compare_exchange_acquire(entry, w, 0))
      freed += w & count_mask;
  }
  std::uint64_t seen = load_relaxed(state().lost_seen);
  while (seen < queue_lost) {
    if (compare_exchange_relaxed(state().lost_seen, seen, queue_lost)) {
      freed += queue_lost - seen;
      break;
    }
  }
  if (freed != 0) {
    (void)fetch_add(state().written_off, freed, std::memory_order_seq_cst);  // then notify (no lost wake-up)
    all_done().notify_all();
  }
}

}  // namespace detail

template <class T>
class joinable_queue {
 public:
  using timeout_type = typename queue<T>::timeout_type;

  // As queue<T>'s constructor; also reserves the task counter's shared memory.
  explicit joinable_queue(std::size_t capacity = 1024, queue_options options = {})
      : joinable_queue(queue<T>(capacity, options), std::make_shared<detail::joinable_core>()) {}

  // queue<T>::put, counting one unfinished task when the value is queued.
  void put(const T& v, bool block = true, timeout_type timeout = {}) {
    counted_put([&] { queue_.put(v, block, timeout); return true; });
  }
  bool try_put(const T& v) {
    return counted_put([&] { return queue_.try_put(v); });
  }
  [[nodiscard]] task<void> async_put(T v, timeout_type timeout = {}) {
    core_->begin_put();
    try {
      co_await queue_.async_put(std::move(v), timeout);
    } catch (...) {
      core_->cancel_put();
      throw;
    }
    core_->end_put();
  }

  // queue<T>::get; the value is a task until task_done().
  // (The holder entry is counted by the core's taken hook, inside the pop: see the top.)
  T get(bool block = true, timeout_type timeout = {}) { return queue_.get(block, timeout); }
  std::optional<T> try_get() { return queue_.try_get(); }
  [[nodiscard]] task<T> async_get(timeout_type timeout = {}) { return queue_.async_get(timeout); }

  // One task finished. std::logic_error when every value put already had its task_done.
  void task_done() { core_->task_done(); }

  // Waits until every value put had its task_done (or was written off: see the top).
  // true: all done; false: the timeout elapsed first.
  bool join(timeout_type timeout = {}) {
    const auto deadline = detail::queue_deadline(timeout, "join");
    const auto done = [this] { return core_->all_finished(); };
    for (;;) {
      const auto slice = next_slice(deadline);
      if (core_->all_done().wait_until(done, slice))
        return true;
      if (deadline && std::chrono::steady_clock::now() >= *deadline)
        return after_deadline();
      core_->write_off_dead(queue_.lost());
    }
  }
  [[nodiscard]] task<bool> async_join(timeout_type timeout = {}) {
    const auto deadline = detail::queue_deadline(timeout, "join");
    const auto done = [this] { return core_->all_finished(); };
    for (;;) {
      const auto slice = next_slice(deadline);
      if (co_await core_->all_done().async_wait_until(done, slice))
        co_return true;
      if (deadline && std::chrono::steady_clock::now() >= *deadline)
        co_return after_deadline();
      core_->write_off_dead(queue_.lost());
    }
  }

  // Tasks put and neither task_done nor written off (approximate under concurrency).
  [[nodiscard]] std::uint64_t unfinished_tasks() const noexcept { return core_->unfinished(); }

  void close() noexcept { queue_.close(); }
  [[nodiscard]] bool closed() const noexcept { return queue_.closed(); }
  [[nodiscard]] std::size_t size() const noexcept { return queue_.size(); }
  [[nodiscard]] bool empty() const noexcept { return queue_.empty(); }
  [[nodiscard]] bool full() const noexcept { return queue_.full(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return queue_.capacity(); }
  [[nodiscard]] std::size_t slot_bytes() const noexcept { return queue_.slot_bytes(); }
  [[nodiscard]] std::uint64_t max_value_bytes() const noexcept { return queue_.max_value_bytes(); }
  [[nodiscard]] std::uint64_t lost() noexcept { return queue_.lost(); }

 private:
  // How often a waiting join looks for dead holders.
  static constexpr std::chrono::milliseconds scan_every{10};

  template <class Put>
  bool counted_put(Put put) {
    core_->begin_put();
    bool queued = false;
    try {
      queued = put();
    } catch (...) {
      core_->cancel_put();
      throw;
    }
    if (!queued) {
      core_->cancel_put();
      return false;
    }
    core_->end_put();
    return true;
  }

  static std::chrono::steady_clock::time_point next_slice(std::optional<std::chrono::steady_clock::time_point> deadline) {
    const auto scan = std::chrono::steady_clock::now() + scan_every;
    return deadline ? std::min(scan, *deadline) : scan;
  }
  bool after_deadline() {
    core_->write_off_dead(queue_.lost());
    return core_->all_finished();
  }

  template <class Object>
  friend struct detail::handoff_traits;  // ipc/handoff.hpp rebuilds one from received regions
  joinable_queue(queue<T> q, std::shared_ptr<detail::joinable_core> core)
      : queue_(std::move(q)), core_(std::move(core)) {
    // Both live as long as the last handle of this process (core_ is destroyed first, when
    // no get can run any more); a fork()ed child inherits both addresses.
    queue_.core_->set_taken_hook([](void* core) noexcept { static_cast<detail::joinable_core*>(core)->taken(); },
                                 core_.get());
  }

  queue<T> queue_;
  std::shared_ptr<detail::joinable_core> core_;
};

}  // namespace corio
