#include "thread_pool.hpp"

namespace corio {

thread_pool::thread_pool(std::size_t threads) {
  if (threads == 0) threads = 1;
  threads_.reserve(threads);
  try {
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
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

void thread_pool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
}

void thread_pool::work() {
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
    job->run(job);
  }
}

thread_pool& default_thread_pool() {
  static thread_pool pool;
  return pool;
}

}  // namespace corio
