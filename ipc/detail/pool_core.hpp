#pragma once
// corio::pool internals: the layout shared by the parent and its workers, and pool_core,
// the object behind a pool (shared with its futures). Used by pool.cpp (the parent side)
// and pool_worker.cpp (the worker side); not part of the public API.
//
// Shared layout (one shm_region, created before the first fork, so every worker maps it
// at the same address):
//   pool_shared          the claim lock, the claim counter, four event_counts, closing
//   pool_worker_slot[N]  what each worker is doing (one cache line each)
//   task ring            spsc_ring: the parent produces; the workers consume one frame at
//                        a time, serialised by the claim lock
//   result ring[N]       spsc_ring per worker: the worker produces, the parent consumes
//                        (serialised by drain_mutex among the parent's threads)
// Frames: task = [u64 task id][remote_call request], reply = [u64 task id][reply]; read
// only through split_id_frame (id_frame.hpp), which refuses a frame shorter than its id. A
// worker whose pool_options::initializer threw sends one error reply with id no_task,
// sets its slot's exit_reason and exits; max_tasks_per_child retires a worker the same
// way (exit_retired) right after a reply, so it never holds a task when it leaves.
//
// Claiming a task (worker, under claim_lock, a process-shared robust mutex)
//   1. peek the oldest frame; a frame whose id < next_claim was claimed by a worker that
//      died between step 4 and step 5: pop it and look again.
//   2. claim_pending = 1, current = id (own slot)   3. copy the request out
//   4. next_claim = id + 1 (the commit point)       5. pop   6. claim_pending = 0
// A worker killed holding the lock leaves claim_pending = 1; the next locker gets
// EOWNERDEAD and repairs: committed (current < next_claim) keeps current (the dead worker
// owned the task), otherwise current is cleared (the task is still in the ring and
// another worker will run it). So after any death, read under the lock, a slot's current
// names exactly the task its worker owned and had not replied to, or none.
//
// Replying (worker): publish the reply frame, then clear current (store_release), then
// notify results_ec. The collector, told of a death by the pidfd, drains the dead
// worker's ring before reading its slot: a reply published just before death is
// delivered, not reported lost.
//
// Wake-ups (event_count: announce, re-check, sleep; the notifier pays a syscall only
// when someone sleeps): tasks_ec (parent -> idle workers: a task or closing), space_ec
// (workers -> a submitter waiting for room), results_ec (workers -> the collector),
// drained_ec (collector -> a worker waiting for room in its result ring). Everyone spins
// pool_options::spin polls before sleeping, so a busy pool makes no syscalls per task.

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "../../coro/task.hpp"
#include "../../runtime/detail/bounded_spin.hpp"  // spin_pause
#include "../../runtime/detail/dekker_fence.hpp"
#include "../event_count.hpp"
#include "../pool.hpp"
#include "../process.hpp"
#include "../shm_region.hpp"
#include "../spsc_ring.hpp"
#include "id_frame.hpp"
#include "pool_state.hpp"
#include "shared_atomic.hpp"

namespace corio {
class loop;
namespace detail {

inline constexpr std::uint64_t no_task = ~std::uint64_t{0};

struct pool_shared {
  pthread_mutex_t claim_lock;  // process-shared, robust; guards the task ring's consumer side
  alignas(64) std::uint64_t next_claim;  // id of the next task to claim (under claim_lock)
  alignas(64) event_count_state tasks_ec;
  alignas(64) event_count_state space_ec;
  alignas(64) event_count_state results_ec;
  alignas(64) event_count_state drained_ec;
  alignas(64) std::uint64_t closing;  // 1 after close(): workers exit once the ring is empty
};
static_assert(std::is_standard_layout_v<pool_shared>);

// Why a worker returned from worker_main (pool_worker_slot::exit_reason).
inline constexpr std::uint64_t exit_closing = 0;      // closing and no task left (or still running)
inline constexpr std::uint64_t exit_retired = 1;      // ran pool_options::max_tasks_per_child tasks
inline constexpr std::uint64_t exit_init_failed = 2;  // the initializer threw (its error is in the result ring)

// One per worker, written by that worker under claim_lock (current also when clearing
// after a reply), read by the collector under claim_lock after the worker died.
// exit_reason is written by the worker just before it returns and read by the collector
// after the pidfd said the process is gone (the exit orders the two); the collector resets
// it before forking the slot's next worker.
struct alignas(64) pool_worker_slot {
  std::uint64_t current;        // id of the task the worker owns, or no_task
  std::uint64_t claim_pending;  // 1 between steps 2 and 6 of a claim
  std::uint64_t exit_reason;    // exit_closing / exit_retired / exit_init_failed
};
static_assert(sizeof(pool_worker_slot) == 64);
static_assert(std::is_trivially_copyable_v<pool_worker_slot>);

class pool_core {
 public:
  pool_core(std::size_t workers, pool_options options);
  ~pool_core();

  void submit(pool_state_base* st, pool_encoder encode, void* context);
  bool wait(pool_state_base& st, const std::chrono::steady_clock::time_point* deadline);
  void close();
  void join();
  void terminate();
  std::vector<pid_t> pids() const {
    std::lock_guard lk(wait_mutex_);
    std::vector<pid_t> out;
    for (pid_t p : pids_)
      if (p != 0) out.push_back(p);
    return out;
  }
  std::size_t size() const noexcept { return n_; }

 private:
  // ---- shared memory ----
  bool tasks_available() const noexcept {
    const auto* h = reinterpret_cast<const spsc_ring_header*>(task_mem_.data());
    return load_acquire(h->write_index) != load_acquire(h->read_index);  // frames below are complete
  }
  bool results_available() const noexcept {
    for (auto& m : result_mem_) {
      const auto* h = reinterpret_cast<const spsc_ring_header*>(m.data());
      if (load_acquire(h->write_index) != load_acquire(h->read_index)) return true;
    }
    return false;
  }
  void lock_claim();
  void unlock_claim() noexcept { ::pthread_mutex_unlock(&sh_->claim_lock); }

  // ---- worker process ----
  void worker_main(std::size_t index);
  bool run_initializer(spsc_ring& out);  // false: it threw, and its error reply is sent
  bool claim(std::size_t index, std::vector<std::byte>& request, std::uint64_t& id);

  // ---- parent ----
  bool drain_all();  // takes drain_mutex_
  bool drain_locked();  // drain_mutex_ held
  std::size_t drain_ring(spsc_ring& ring);  // table_mutex_ held too
  void note_init_failure(std::span<const std::byte> reply);  // table_mutex_ held
  void break_pool();  // every worker's initializer failed: fail everything, refuse submits
  void break_on_corrupt_ring(const std::runtime_error& e);  // collector: likewise, with e
  std::string refuse_submits(const char* reason);  // both: submits throw worker_lost from now on
  void finish_batch();
  // A state leaves the pending table (the caller passes the table's reference): completed
  // now, or queued for run_deferred when it has a continuation (pool_state.hpp).
  void settle(pool_state_base* st) noexcept;
  void run_deferred();  // collector thread (finish() after it stopped), no lock held
  void fail(std::uint64_t id, std::exception_ptr e);
  void fail_all(std::exception_ptr e);
  void start_worker(std::size_t index);
  task<void> watch(std::size_t index, process* p);
  void on_exit(std::size_t index, process& p);
  task<void> collect();
  void kill_all();  // on the collector thread
  void stop_collector();
  void finish(std::exception_ptr (*error)());  // the end of join() and terminate()

  // ---- retries (pool_retry.cpp; pool_options::retries) ----
  // Collector: takes task `id` of a dead worker back to run it again; false when it has
  // no retry left (the caller fails it). True also when it completed meanwhile.
  bool retry(std::uint64_t id);
  bool try_resend(pool_state_base* st);  // pushes one backlog entry; false: not now
  task<void> resend_backlog();
  // Moves the backlog's entries (and their references) to `out`, for fail_all. Collector,
  // or finish() after it stopped.
  void take_backlog(std::vector<pool_state_base*>& out);

  struct layout {
    std::size_t task_bytes, result_bytes, slots_at, tasks_at, results_at, total;
  };
  static layout plan(std::size_t workers, const pool_options& options);

  const std::size_t n_;
  const pool_options options_;
  const layout plan_;
  shm_region shm_;
  pool_shared* sh_;
  pool_worker_slot* slots_;
  std::span<std::byte> task_mem_;
  std::vector<std::span<std::byte>> result_mem_;

  // Producer side of the task ring (submitters).
  std::mutex submit_mutex_;
  std::optional<spsc_ring> tasks_;
  std::vector<std::byte> buffer_;
  std::uint64_t next_id_ = 0;
  bool closed_ = false;  // under submit_mutex_
  std::atomic<bool> terminating_{false};

  // Tasks submitted and not completed: pending_[id - base_id_], nullptr once completed.
  std::mutex table_mutex_;
  std::deque<pool_state_base*> pending_;
  std::uint64_t base_id_ = 0;

  // Consumer side of the result rings (the collector and helping get() callers).
  std::mutex drain_mutex_;
  std::vector<spsc_ring> results_;

  // States with continuations, completed and waiting for the collector (settle).
  std::mutex deferred_mutex_;
  std::vector<pool_state_base*> deferred_;
  std::atomic<bool> has_deferred_{false};

  // The initializer's error (table_mutex_), and broken_ once no worker is left to run
  // anything because every initializer failed: submit then throws worker_lost.
  std::string init_error_;
  std::atomic<bool> broken_{false};
  bool corrupt_ = false;  // collector thread only: a result ring was corrupt; drain no more

  // Blocked get() callers; live worker bookkeeping.
  mutable std::mutex wait_mutex_;
  std::condition_variable wait_cv_;
  std::vector<pid_t> pids_;  // 0 once a slot has no worker
  std::size_t live_ = 0;

  // The collector thread and what only it touches.
  std::thread collector_;
  loop* collector_loop_ = nullptr;
  std::promise<void>* started_ = nullptr;
  std::vector<std::unique_ptr<process>> workers_;
  std::atomic<bool> stopping_{false};
  bool collector_done_ = false;  // join/terminate finished (their caller's thread)
  // Tasks taken back from dead workers, waiting for room in the task ring; each entry
  // owns the reference the pending table had. Collector thread (finish() after it).
  std::deque<pool_state_base*> retry_backlog_;
  bool resending_ = false;
};

}  // namespace detail
}  // namespace corio
