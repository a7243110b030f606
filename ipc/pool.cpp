// corio::pool, the parent side: building the pool, submitting, waiting, completing
// futures, the collector thread, close/join/terminate. The protocol with the workers is
// described in detail/pool_core.hpp; the worker side is pool_worker.cpp.

#include "pool.hpp"

#include <signal.h>
#include <string.h>

#include <cstring>
#include <string>
#include <system_error>

#include "../runtime/errors.hpp"
#include "../runtime/file_ops.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/timer.hpp"
#include "detail/pool_core.hpp"

namespace corio {
namespace detail {

namespace {

constexpr std::size_t align64(std::size_t n) { return (n + 63) & ~std::size_t{63}; }

std::string describe_exit(pid_t pid, int code) {
  if (code < 0) {
    const char* name = ::strsignal(-code);
    return "pool worker " + std::to_string(pid) + " died (killed by signal " + std::to_string(-code) + ": " +
           (name ? name : "unknown") + ")";
  }
  return "pool worker " + std::to_string(pid) + " died (exited with status " + std::to_string(code) + ")";
}


// A worker_lost built in place in its exception_ptr. make_exception_ptr(worker_lost(m))
// copies a temporary that shares its message buffer (libstdc++'s reference-counted
// string) and destroys it after the future may already be read on another thread:
// correct, but the count lives in the uninstrumented library, so ThreadSanitizer reports
// the free as a race. Failure paths only: the throw costs microseconds.
std::exception_ptr lost(const std::string& message) {
  try {
    throw worker_lost(message);
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------

pool_core::layout pool_core::plan(std::size_t workers, const pool_options& options) {
  if (workers == 0) throw std::invalid_argument("corio::pool: the pool needs at least one worker");
  layout l{};
  l.task_bytes = spsc_ring::bytes_for(options.task_ring_bytes);
  l.result_bytes = spsc_ring::bytes_for(options.result_ring_bytes);
  l.slots_at = align64(sizeof(pool_shared));
  l.tasks_at = l.slots_at + align64(sizeof(pool_worker_slot) * workers);
  l.results_at = l.tasks_at + align64(l.task_bytes);
  l.total = l.results_at + align64(l.result_bytes) * workers;
  return l;
}

pool_core::pool_core(std::size_t workers, pool_options options)
    : n_(workers), options_(options), plan_(plan(workers, options)), shm_(shm_region::create(plan_.total, "corio-pool")) {
  const std::size_t task_bytes = plan_.task_bytes, result_bytes = plan_.result_bytes;
  const std::size_t slots_at = plan_.slots_at, tasks_at = plan_.tasks_at, results_at = plan_.results_at;
  std::byte* base = shm_.data();
  sh_ = new (base) pool_shared{};
  slots_ = reinterpret_cast<pool_worker_slot*>(base + slots_at);
  for (std::size_t i = 0; i < workers; ++i) slots_[i] = pool_worker_slot{no_task, 0, exit_closing};

  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  const int r = ::pthread_mutex_init(&sh_->claim_lock, &attr);
  ::pthread_mutexattr_destroy(&attr);
  if (r != 0) throw_errno(r, "corio::pool: pthread_mutex_init (robust, process-shared)");

  task_mem_ = std::span<std::byte>(base + tasks_at, task_bytes);
  tasks_.emplace(spsc_ring::format(task_mem_));
  for (std::size_t i = 0; i < workers; ++i) {
    result_mem_.emplace_back(base + results_at + i * align64(result_bytes), result_bytes);
    results_.push_back(spsc_ring::format(result_mem_.back()));
  }
  pids_.assign(workers, 0);
  workers_.resize(workers);

  // Workers are forked by the collector thread: PR_SET_PDEATHSIG follows the thread that
  // forked, and this one lives exactly as long as the workers should.
  std::promise<void> started;
  started_ = &started;
  collector_ = std::thread([this] {
    loop lp;
    collector_loop_ = &lp;
    lp.run(collect());
  });
  try {
    started.get_future().get();
  } catch (...) {
    collector_.join();
    throw;
  }
}

pool_core::~pool_core() {
  if (collector_.joinable()) collector_.join();  // the pool's destructor stopped it
  ::pthread_mutex_destroy(&sh_->claim_lock);
}

// ---- parent: submitting and waiting -------------------------------------------------

void pool_core::submit(pool_state_base* st, pool_encoder encode, void* context) {
  std::lock_guard lk(submit_mutex_);
  if (terminating_.load(std::memory_order_acquire)) throw pool_terminated("corio::pool: the pool was terminated");
  if (closed_) throw std::logic_error("corio::pool: submit after close()");
  if (broken_.load(std::memory_order_acquire)) throw worker_lost(init_error_);  // written before broken_
  buffer_.resize(sizeof(std::uint64_t));
  encode(context, buffer_);
  if (buffer_.size() > tasks_->max_payload())
    throw std::length_error("corio::pool: a request of " + std::to_string(buffer_.size()) +
                            " bytes does not fit the task ring (largest " + std::to_string(tasks_->max_payload()) +
                            "; raise pool_options::task_ring_bytes)");
  const std::uint64_t id = next_id_++;
  std::memcpy(buffer_.data(), &id, sizeof id);
  if (options_.retries != 0) st->retry_request.assign(buffer_.begin() + sizeof id, buffer_.end());
  {
    std::lock_guard tl(table_mutex_);
    pending_.push_back(st);
    st->add_ref();
  }
  if (!tasks_->try_send(buffer_)) {
    event_count(sh_->tasks_ec).notify_all();
    event_count(sh_->space_ec).wait_until([&] {
      return tasks_->try_send(buffer_) || terminating_.load(std::memory_order_acquire) ||
             broken_.load(std::memory_order_acquire);
    });
    // Terminated while waiting: the task stays pending and terminate() fails it.
  }
  // The last worker's initializer failed meanwhile: break_pool's fail_all either saw this
  // task in the table or ran before the push, and then its store of broken_ (before it
  // took table_mutex_) is visible here.
  if (broken_.load(std::memory_order_acquire)) fail(id, lost(init_error_));
  event_count(sh_->tasks_ec).notify_all();
}

bool pool_core::wait(pool_state_base& st, const std::chrono::steady_clock::time_point* deadline) {
  // Help first: drain the result rings on this thread rather than wait for the collector.
  for (unsigned i = 0; i < options_.spin; ++i) {
    if (st.ready()) return true;
    if (std::unique_lock dl(drain_mutex_, std::defer_lock); results_available() && dl.try_lock()) {
      const bool any = drain_locked();  // a corrupt ring throws: dl unlocks
      dl.unlock();
      if (any) finish_batch();
      // Continuations run on the collector only: wake it (no system call when it is awake).
      if (has_deferred_.load(std::memory_order_acquire)) event_count(sh_->results_ec).notify_all();
      if (st.ready()) return true;
    }
    // A yield can take a whole time slice on a loaded machine: honour the deadline here too.
    if (deadline && i % 32 == 31 && std::chrono::steady_clock::now() >= *deadline) return st.ready();
    spin_pause(i);
  }
  std::unique_lock lk(wait_mutex_);
  while (!st.ready()) {
    if (!deadline) {
      wait_cv_.wait(lk);
    } else if (wait_cv_.wait_until(lk, *deadline) == std::cv_status::timeout) {
      return st.ready();
    }
  }
  return true;
}

// ---- parent: completing ----------------------------------------------------------------

bool pool_core::drain_all() {
  std::lock_guard lk(drain_mutex_);
  return drain_locked();
}

bool pool_core::drain_locked() {
  std::size_t count = 0;
  std::lock_guard tl(table_mutex_);
  // Until the rings are seen empty after a fence: the other half of the Dekker pair in
  // worker_main (a worker that saw an unconsumed reply did not notify).
  do {
    for (auto& ring : results_) count += drain_ring(ring);
    dekker_fence();
  } while (results_available());
  while (!pending_.empty() && pending_.front() == nullptr) {
    pending_.pop_front();
    ++base_id_;
  }
  return count != 0;
}

std::size_t pool_core::drain_ring(spsc_ring& ring) {
  return ring.drain([&](std::span<const std::byte> frame) {
      const auto [id, reply] = split_id_frame(frame, "corio::pool: a reply from a worker");
      if (id == no_task) return note_init_failure(reply);
      if (id < base_id_ || id - base_id_ >= pending_.size()) return;  // already failed
      pool_state_base*& slot = pending_[id - base_id_];
      if (!slot) return;
      pool_state_base* st = std::exchange(slot, nullptr);
      st->set_reply(reply);
      settle(st);
  });
}

void pool_core::note_init_failure(std::span<const std::byte> reply) {
  try {
    take_reply<void>(reply);
  } catch (const std::exception& e) {
    if (init_error_.empty()) init_error_ = std::string("corio::pool: the initializer failed in the workers: ") + e.what();
  }
}

void pool_core::settle(pool_state_base* st) noexcept {
  if (!st->deferred()) {
    st->complete();
    st->release();
    return;
  }
  {
    std::lock_guard lk(deferred_mutex_);
    deferred_.push_back(st);  // noexcept context: out of memory terminates
  }
  // release: the collector that sees the flag finds the entry.
  has_deferred_.store(true, std::memory_order_release);
  event_count(sh_->results_ec).notify_all();  // a syscall only when the collector sleeps
}

void pool_core::run_deferred() {
  std::vector<pool_state_base*> batch;
  {
    std::lock_guard lk(deferred_mutex_);
    batch.swap(deferred_);
    has_deferred_.store(false, std::memory_order_relaxed);  // under the mutex: no push is lost
  }
  for (pool_state_base* st : batch) {
    st->finish_deferred();
    st->release();
  }
  if (!batch.empty()) finish_batch();
}

// After completing a batch: wake blocked get() callers and workers waiting for room.
void pool_core::finish_batch() {
  event_count(sh_->drained_ec).notify_all();
  { std::lock_guard lk(wait_mutex_); }  // a waiter between its check and its sleep holds it
  wait_cv_.notify_all();
}

void pool_core::fail(std::uint64_t id, std::exception_ptr e) {
  {
    std::lock_guard tl(table_mutex_);
    if (id < base_id_ || id - base_id_ >= pending_.size()) return;
    pool_state_base* st = std::exchange(pending_[id - base_id_], nullptr);
    if (!st) return;
    st->set_error(std::move(e));
    settle(st);
  }
  finish_batch();
}

void pool_core::fail_all(std::exception_ptr e) {
  std::vector<pool_state_base*> failed;  // each with the reference the table or backlog had
  {
    std::lock_guard tl(table_mutex_);
    for (pool_state_base* st : pending_)
      if (st) failed.push_back(st);
    base_id_ += pending_.size();
    pending_.clear();
  }
  take_backlog(failed);
  for (pool_state_base* st : failed) st->set_error(e);
  // Our reference goes before any of them turns ready, so this thread never frees the
  // exception while a get() caller reads it (libstdc++'s count is atomic, but inside the
  // uninstrumented library: ThreadSanitizer would report the free as a race).
  e = nullptr;
  for (pool_state_base* st : failed) settle(st);
  finish_batch();
}

// ---- parent: the collector thread ----------------------------------------------------

void pool_core::start_worker(std::size_t index) {
  auto p = std::make_unique<process>(process_options{.parent_death_signal = SIGKILL},
                                     [this, index] { worker_main(index); });
  p->start();
  {
    std::lock_guard lk(wait_mutex_);
    pids_[index] = p->pid();
  }
  workers_[index] = std::move(p);
  loop::this_loop().spawn(watch(index, workers_[index].get()));
}

task<void> pool_core::watch(std::size_t index, process* p) {
  try {
    co_await p->async_join();
  } catch (const operation_cancelled&) {
    co_return;  // the collector is stopping
  }
  on_exit(index, *p);
}

void pool_core::on_exit(std::size_t index, process& p) {
  const int code = p.exitcode().value_or(-SIGKILL);
  const pid_t pid = p.pid();
  if (drain_all()) finish_batch();  // replies published before the death are not lost
  lock_claim();
  const std::uint64_t held = load_relaxed(slots_[index].current);
  const std::uint64_t reason = load_relaxed(slots_[index].exit_reason);
  store_relaxed(slots_[index].current, no_task);
  store_relaxed(slots_[index].exit_reason, exit_closing);  // for the slot's next worker
  unlock_claim();
  const bool terminating = terminating_.load(std::memory_order_acquire);
  if (held != no_task && !terminating && !retry(held))
    fail(held, lost(describe_exit(pid, code) + " while running this task"));
  // A worker that retired after max_tasks_per_child is replaced even after close() while
  // tasks are left; one whose initializer threw is not (its replacement would fail too,
  // forever, as Python's Pool does): the pool runs on with the others.
  const bool retired = code == 0 && reason == exit_retired;
  const bool init_failed = code == 0 && reason == exit_init_failed;
  const bool finished = code == 0 && load_acquire(sh_->closing) != 0 && !(retired && tasks_available());
  bool replaced = false;
  if (!terminating && !finished && !init_failed) {
    try {
      start_worker(index);  // destroys p (already reaped)
      replaced = true;
    } catch (const std::exception& e) {
      std::lock_guard lk(wait_mutex_);
      if (live_ == 1)  // nobody left to run the queued tasks: fail them rather than hang
        fail_all(lost(std::string("corio::pool: cannot replace a dead worker: ") + e.what()));
    }
  }
  if (!replaced) {
    bool none_left = false;
    {
      std::lock_guard lk(wait_mutex_);
      pids_[index] = 0;
      none_left = --live_ == 0;
    }
    if (none_left && init_failed && !terminating) break_pool();
    wait_cv_.notify_all();
  }
}

void pool_core::break_pool() {
  fail_all(lost(refuse_submits("corio::pool: the initializer failed in every worker")));
}

// Sets init_error_ to `reason` unless a reason is there already, then broken_; returns
// init_error_.
std::string pool_core::refuse_submits(const char* reason) {
  std::string message;
  {
    std::lock_guard tl(table_mutex_);
    if (init_error_.empty()) init_error_ = reason;
    message = init_error_;
  }
  broken_.store(true, std::memory_order_release);  // publishes init_error_ to submit
  event_count(sh_->space_ec).notify_all();           // a submitter waiting for room gives up
  return message;
}

task<void> pool_core::collect() {
  std::exception_ptr failed;
  try {
    {
      // All counted first: a worker that exits at once (its initializer threw) can be
      // reaped inside start_worker, and its on_exit must not see the last worker gone
      // while others are still to start. (A failed start fails the constructor.)
      std::lock_guard lk(wait_mutex_);
      live_ = n_;
    }
    for (std::size_t i = 0; i < n_; ++i) start_worker(i);
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    kill_all();
    loop::this_loop().request_stop();
    while (loop::this_loop().spawned() > 0) co_await sleep_for(std::chrono::milliseconds(1));
    started_->set_exception(failed);
    co_return;
  }
  started_->set_value();
  event_count results_ec(sh_->results_ec);
  unsigned batches = 0;
  while (!stopping_.load(std::memory_order_acquire)) {
    if (has_deferred_.load(std::memory_order_acquire)) run_deferred();
    bool drained = false;
    if (!corrupt_) {
      try {
        drained = drain_all();
      } catch (const std::runtime_error& e) {
        break_on_corrupt_ring(e);
      }
    }
    if (drained) {
      finish_batch();
      if (++batches % 16 == 0) co_await nop();  // let the loop reap pidfd completions
      continue;
    }
    bool any = false;
    for (unsigned i = 0; !any && i < options_.spin; ++i) {
      spin_pause(i);
      any = (!corrupt_ && results_available()) || stopping_.load(std::memory_order_relaxed) ||
            has_deferred_.load(std::memory_order_relaxed);
    }
    if (!any)
      co_await results_ec.async_wait_until([this] {
        return stopping_.load(std::memory_order_acquire) || (!corrupt_ && results_available()) ||
               has_deferred_.load(std::memory_order_acquire);
      });
  }
  loop::this_loop().request_stop();  // ends the watchers
  while (loop::this_loop().spawned() > 0) co_await sleep_for(std::chrono::milliseconds(1));
}

// A result ring held a frame no worker of this pool writes (its memory was corrupted, or
// written by another process): nothing read after it can be trusted. Every pending task
// fails with the error and later submits throw it (as worker_lost, like a pool whose
// workers cannot start), instead of the collector ending the program with std::terminate.
// The ring is not drained again here; a get() that helps drain meets the same error.
void pool_core::break_on_corrupt_ring(const std::runtime_error& e) {
  corrupt_ = true;
  (void)refuse_submits(e.what());  // wakes a submit waiting for room: no worker frees any now
  fail_all(lost(e.what()));
}

void pool_core::kill_all() {
  for (auto& w : workers_)
    if (w) w->kill();
}

void pool_core::stop_collector() {
  stopping_.store(true, std::memory_order_release);
  event_count(sh_->results_ec).notify_all();
  if (collector_.joinable()) collector_.join();
}

// ---- lifecycle -----------------------------------------------------------------------

void pool_core::close() {
  std::lock_guard lk(submit_mutex_);
  closed_ = true;
  store_release(sh_->closing, 1);  // after every push of this pool (under submit_mutex_)
  event_count(sh_->tasks_ec).notify_all();
}

void pool_core::join() {
  {
    std::lock_guard lk(submit_mutex_);
    if (!closed_) throw std::logic_error("corio::pool: join() before close() (or terminate())");
  }
  if (collector_done_) return;
  finish([] {
    return std::make_exception_ptr(worker_lost("corio::pool: every worker exited before this task was run"));
  });
}

void pool_core::terminate() {
  if (collector_done_) return;
  terminating_.store(true, std::memory_order_release);
  event_count(sh_->space_ec).notify_all();  // a submitter blocked on a full ring gives up
  {
    std::lock_guard lk(submit_mutex_);  // no submit inserts after this
    closed_ = true;
    store_release(sh_->closing, 1);
  }
  collector_loop_->post([this] { kill_all(); });
  finish([] {
    return std::make_exception_ptr(pool_terminated("corio::pool: the pool was terminated before this task completed"));
  });
}

// Once every worker is gone: the results they published still complete their tasks, the
// tasks left fail with error(). error() runs only after the collector stopped, so failing
// to build the exception (out of memory) cannot leave the pool running.
void pool_core::finish(std::exception_ptr (*error)()) {
  {
    std::unique_lock lk(wait_mutex_);
    wait_cv_.wait(lk, [&] { return live_ == 0; });
  }
  stop_collector();
  drain_all();
  fail_all(error());
  run_deferred();  // the collector has stopped: the continuations left run here
  collector_done_ = true;
}

// ---- entry points ----------------------------------------------------------------------

void pool_state_base::complete() noexcept {
  // release: publishes the value to ready(); the notify's fence orders it before the
  // check for a sleeping awaiter (event_count.hpp).
  phase_.store(done, std::memory_order_release);
  event_count(done_ec_).notify_all();
  // After done: the imap consumer that pops this index finds the future ready. The
  // caller still holds the pending table's reference, so *this is alive here.
  if (sink_) sink_->push(sink_index_);  // noexcept context: out of memory terminates
}

task<void> pool_await_ready(pool_state_base& state) {
  co_await state.done_event().async_wait_until([&state] { return state.ready(); });
}

void pool_submit(pool_core& core, pool_state_base* state, pool_encoder encode, void* context) {
  core.submit(state, encode, context);
}

bool pool_wait(pool_core& core, pool_state_base& state, const std::chrono::steady_clock::time_point* deadline) {
  return core.wait(state, deadline);
}

}  // namespace detail

// ---- pool --------------------------------------------------------------------------------

pool::pool(std::size_t workers, pool_options options)
    : core_(std::make_shared<detail::pool_core>(workers, options)) {}

pool::~pool() {
  try {
    core_->terminate();
  } catch (...) {
    // terminate() fails only on a broken robust mutex; nothing more to do in a destructor.
  }
}

void pool::close() { core_->close(); }
void pool::join() { core_->join(); }
void pool::terminate() { core_->terminate(); }
std::vector<pid_t> pool::worker_pids() const { return core_->pids(); }
std::size_t pool::size() const noexcept { return core_->size(); }

}  // namespace corio