#pragma once
// fork_thread: a thread that lives exactly as long as its owner (an executor) and runs the
// owner's fork()s.
//
// Why: PR_SET_PDEATHSIG follows the *thread* that forked, not the process. Linux signals
// a child when the thread that forked it exits (even while the rest of the parent runs).
// Workers forked by whichever thread happened to build or use the owner (a short-lived
// std::thread, a thread_pool job) would be SIGKILLed when that thread ends; workers forked
// here die when the owner dies (or the whole parent does), never earlier.
//
// The child of a fork made here has one thread, a copy of this one, running on its stack:
// the job must not return into this thread's loop in the child (process::start's child
// leaves with _exit, so it never does).
//
// Who may touch it: run() from any thread, one caller at a time per job (callers are
// serialised). Destroyed by its owner, on any thread but its own: the destructor joins.

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace corio::detail {

class fork_thread {
 public:
  fork_thread() : thread_([this] { serve(); }) {}
  ~fork_thread() {
    {
      std::lock_guard lk(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  fork_thread(const fork_thread&) = delete;
  fork_thread& operator=(const fork_thread&) = delete;

  // Runs job on the fork thread and waits for it; rethrows what it threw.
  void run(const std::function<void()>& job) {
    std::lock_guard one(callers_);
    std::unique_lock lk(mutex_);
    job_ = &job;
    error_ = nullptr;
    cv_.notify_all();
    cv_.wait(lk, [&] { return job_ == nullptr; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void serve() {
    std::unique_lock lk(mutex_);
    for (;;) {
      cv_.wait(lk, [&] { return stopping_ || job_ != nullptr; });
      if (job_ == nullptr) return;  // stopping, no job left
      lk.unlock();  // the job forks: the child must not inherit a held mutex it would need
      std::exception_ptr error;
      try {
        (*job_)();
      } catch (...) {
        error = std::current_exception();
      }
      lk.lock();
      error_ = std::move(error);
      job_ = nullptr;
      cv_.notify_all();
    }
  }

  std::mutex callers_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable cv_;
  const std::function<void()>* job_ = nullptr;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it reads exist
};

}  // namespace corio::detail
