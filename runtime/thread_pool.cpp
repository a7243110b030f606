#include "thread_pool.hpp"

#include <atomic>

#include "thread.hpp"

namespace corio {

namespace detail {

void throw_dropped_by_shutdown() {
  throw operation_cancelled("corio::thread_pool: the job was cancelled by shutdown(cancel_futures) before it started");
}

}  // namespace detail

namespace {

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
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw std::logic_error("corio::thread_pool: submit after shutdown()");
    job->next = nullptr;
    (tail_ ? tail_->next : head_) = job;
    tail_ = job;
  }
  ready_.notify_one();
}

void thread_pool::shutdown(bool wait, bool cancel_futures) {
  detail::pool_job* dropped = nullptr;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
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

void thread_pool::work(std::string name) {
  set_current_thread_name(std::move(name));
  for (;;) {
    detail::pool_job* job;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return head_ != nullptr || stopping_; });
      if (head_ == nullptr) return;  // stopping, and the queue is drained
      job = head_;
      head_ = job->next;
      if (head_ == nullptr) tail_ = nullptr;
    }
    job->run(job, false);
  }
}

thread_pool& default_thread_pool() {
  static thread_pool pool(thread_pool::default_size(), "corio-offload");
  return pool;
}

}  // namespace corio
