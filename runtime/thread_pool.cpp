#include "thread_pool.hpp"

#include <atomic>
#include <chrono>

#include "detail/bounded_spin.hpp"
#include "thread.hpp"

namespace corio {

namespace {

// The pool this thread works for (nullptr on other threads), and whether this worker
// took that pool's spinning_ in before_publish (it gives it back in work()).
thread_local thread_pool* worker_pool = nullptr;
thread_local bool holds_poll = false;

}  // namespace

namespace detail {

void throw_dropped_by_shutdown() {
  throw operation_cancelled("corio::thread_pool: the job was cancelled by shutdown(cancel_futures) before it started");
}

void before_publish() noexcept {
  thread_pool* pool = worker_pool;
  if (pool == nullptr || holds_poll) return;
  unsigned idle = 0;
  holds_poll = pool->spinning_.compare_exchange_strong(idle, 1, std::memory_order_relaxed);
}

}  // namespace detail

namespace {

// What incoming_ holds once the pool is shut down: submits see it and throw, so nothing
// is pushed after shutdown's last take. Never run or dereferenced.
detail::pool_job closed_mark;

// How long an idle worker polls the queue before it sleeps (see "Idle workers").
constexpr std::chrono::microseconds idle_spin{50};

std::string default_prefix() {
  static std::atomic<unsigned> pools{0};
  return "corio-pool-" + std::to_string(pools.fetch_add(1, std::memory_order_relaxed));
}

}  // namespace

thread_pool::thread_pool(std::size_t threads, std::string thread_name_prefix) {
  if (threads == 0) threads = 1;
  if (thread_name_prefix.empty()) thread_name_prefix = default_prefix();
  threads_.reserve(threads);
  try {
    for (std::size_t i = 0; i < threads; ++i)
      threads_.emplace_back([this, name = thread_name_prefix + "_" + std::to_string(i)]() mutable {
        work(std::move(name));
      });
  } catch (...) {
    shutdown();  // join the ones that started
    throw;
  }
}

thread_pool::~thread_pool() { shutdown(); }

void thread_pool::enqueue(detail::pool_job* job) {
  detail::pool_job* top = incoming_.load(std::memory_order_relaxed);
  do {
    if (top == &closed_mark) throw std::logic_error("corio::thread_pool: submit after shutdown()");
    job->next = top;
  } while (!incoming_.compare_exchange_weak(top, job, std::memory_order_seq_cst, std::memory_order_relaxed));
  if (sleeping_.load(std::memory_order_seq_cst) == 0 || spinning_.load(std::memory_order_seq_cst) != 0) return;
  { const std::lock_guard lock(mutex_); }  // the sleeper is inside ready_.wait now
  ready_.notify_one();
}

void thread_pool::shutdown(bool wait, bool cancel_futures) {
  detail::pool_job* dropped = nullptr;
  {
    const std::lock_guard lock(mutex_);
    if (!closed_) {
      take_incoming_locked(&closed_mark);
      closed_ = true;
      has_work_.store(true, std::memory_order_relaxed);
    }
    if (cancel_futures) {
      dropped = std::exchange(head_, nullptr);
      tail_ = nullptr;
    }
  }
  ready_.notify_all();
  // Outside the lock: a dropped job completes its future, which runs done callbacks
  // (they may submit to another pool) and posts to loops.
  while (dropped != nullptr) {
    detail::pool_job* job = std::exchange(dropped, dropped->next);
    job->run(job, true);
  }
  if (!wait) return;
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
}

bool thread_pool::needs_wake_locked() const noexcept {
  return sleeping_.load(std::memory_order_relaxed) > 0 && spinning_.load(std::memory_order_relaxed) == 0;
}

void thread_pool::take_incoming_locked(detail::pool_job* leave) noexcept {
  if (closed_) return;  // shutdown took the last jobs and left closed_mark for good
  // Acquire for the jobs' contents, written before their push; seq_cst because this is
  // the re-check of the Dekker pairs in "Idle workers" (an x86 xchg is a full barrier
  // anyway).
  detail::pool_job* newest_first = incoming_.exchange(leave, std::memory_order_seq_cst);
  if (newest_first == nullptr) return;
  detail::pool_job* const last = newest_first;
  detail::pool_job* oldest_first = nullptr;
  while (newest_first != nullptr) {
    detail::pool_job* job = std::exchange(newest_first, newest_first->next);
    job->next = std::exchange(oldest_first, job);
  }
  (tail_ ? tail_->next : head_) = oldest_first;
  tail_ = last;
}

detail::pool_job* thread_pool::pop_locked(bool& wake_more) noexcept {
  if (head_ == nullptr) take_incoming_locked();
  detail::pool_job* job = head_;
  if (job == nullptr) return nullptr;
  head_ = job->next;
  if (head_ == nullptr) tail_ = nullptr;
  has_work_.store(head_ != nullptr || closed_, std::memory_order_relaxed);
  // The submits that queued the rest may have skipped the wake-up because this worker was
  // spinning; it is busy now, so it passes the wake-up on.
  wake_more = (head_ != nullptr || incoming_.load(std::memory_order_seq_cst) != nullptr) && needs_wake_locked();
  return job;
}

void thread_pool::spin_for_work() noexcept {
  (void)detail::spin_until(
      [this] {
        return has_work_.load(std::memory_order_relaxed) || incoming_.load(std::memory_order_relaxed) != nullptr;
      },
      idle_spin);
}

void thread_pool::poll_then_release(std::unique_lock<std::mutex>& lock) noexcept {
  lock.unlock();
  spin_for_work();
  // Cleared before the re-check under mutex_, seq_cst: a submit that saw it set and
  // skipped the wake-up pushed before this store (see "Idle workers").
  spinning_.store(0, std::memory_order_seq_cst);
  lock.lock();
}

void thread_pool::work(std::string name) {
  set_current_thread_name(std::move(name));
  worker_pool = this;
  for (;;) {
    detail::pool_job* job = nullptr;
    bool wake_more = false;
    bool may_spin = true;  // once per idle spell: a spin that found nothing ends in a sleep
    {
      std::unique_lock lock(mutex_);
      if (std::exchange(holds_poll, false)) {
        // Claimed as the last job finished: poll now if there is nothing to take, else
        // give it back before pop_locked decides whether to pass a wake-up on.
        if (head_ == nullptr && incoming_.load(std::memory_order_seq_cst) == nullptr && !closed_) {
          may_spin = false;
          poll_then_release(lock);
        } else {
          // seq_cst, as poll_then_release's: pop_locked's wake-up decision below then sees
          // the jobs of every submit that saw the claim and skipped its wake-up.
          spinning_.store(0, std::memory_order_seq_cst);
        }
      }
      for (;;) {
        job = pop_locked(wake_more);
        if (job != nullptr || closed_) break;
        if (may_spin && spinning_.load(std::memory_order_relaxed) == 0) {
          may_spin = false;
          // Set and tested under mutex_, so at most one worker spins.
          spinning_.store(1, std::memory_order_relaxed);
          poll_then_release(lock);
          continue;
        }
        sleeping_.fetch_add(1, std::memory_order_seq_cst);
        if (incoming_.load(std::memory_order_seq_cst) == nullptr) ready_.wait(lock);  // see "Idle workers"
        sleeping_.fetch_sub(1, std::memory_order_relaxed);
        may_spin = true;  // woken: a new spell (the job may have gone to another worker)
      }
    }
    if (wake_more) ready_.notify_one();
    if (job == nullptr) return;  // closed, and the queue is drained
    job->run(job, false);
  }
}

thread_pool& default_thread_pool() {
  static thread_pool pool(thread_pool::default_size(), "corio-offload");
  return pool;
}

}  // namespace corio
