#pragma once
// corio::thread: a named thread with Python's threading.Thread shape, and
// current_thread_name() (threading.current_thread().name).
//
//     void loop() { std::printf("thread %s >>> 1\n", corio::current_thread_name().c_str()); }
//     corio::thread t("LoopThread", loop);   // Python: Thread(target=loop, name='LoopThread')
//     t.start();
//     t.join();
//
// Contract
// - A thread is created stopped; start() runs it, once (a second start() throws
//   std::logic_error, Python's "threads can only be started once"). join() waits for it;
//   join_for(timeout) waits at most that long and says whether it joined (Python's
//   join(timeout) then is_alive()). Joining a thread never started, or from itself,
//   throws std::logic_error.
// - The three ways of the tutorials: a function with its arguments (copied, like
//   std::thread), a callable object, or a class derived from corio::thread overriding
//   run(). A derived class must join() before its own members die: ~thread() joins, but
//   it runs after the derived part is destroyed.
// - The name: given, or "Thread-N" (N counts from 1 per process, as Python's). Inside the
//   thread, current_thread_name() returns it whole; the kernel gets its first 15 bytes
//   (pthread_setname_np's limit) so top -H, ps -L and gdb show it.
// - current_thread_name() on a thread corio did not start or name: "MainThread" for the
//   process's main thread (also in a forked child), otherwise the kernel's name for it.
// - An exception escaping the thread's function is printed to stderr as Python does
//   ("Exception in thread NAME: what") and the thread ends; join() does not rethrow it.
// - ~thread() joins a started thread that was not joined (Python waits for non-daemon
//   threads at exit); it never detaches.
// - Thread-safety: one owner calls start()/join(); name() and is_alive() may be read from
//   any thread.

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "thread_event.hpp"

namespace corio {

// The calling thread's name; see the contract.
[[nodiscard]] std::string current_thread_name();
// Names the calling thread: current_thread_name() returns `name`, the kernel its first
// 15 bytes (Python: threading.current_thread().name = name, which the kernel never sees).
void set_current_thread_name(std::string name);

class thread {
 public:
  // A thread whose work is run(), overridden by a derived class.
  thread();
  explicit thread(std::string name);
  // A thread that runs fn(args...) (arguments decay-copied, as std::thread does).
  template <class F, class... Args>
    requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>
  explicit thread(F&& fn, Args&&... args) : thread() {
    target_ = bind(std::forward<F>(fn), std::forward<Args>(args)...);
  }
  template <class F, class... Args>
    requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>
  thread(std::string name, F&& fn, Args&&... args) : thread(std::move(name)) {
    target_ = bind(std::forward<F>(fn), std::forward<Args>(args)...);
  }
  // Joins a started thread that was not joined.
  virtual ~thread();
  thread(const thread&) = delete;
  thread& operator=(const thread&) = delete;

  void start();
  void join();
  template <class Rep, class Period>
  bool join_for(std::chrono::duration<Rep, Period> timeout) {
    check_joinable("join_for");
    if (!finished_.wait_for(timeout)) return false;
    join();  // run() returned: only the thread's exit is left to wait for
    return true;
  }
  // True between start() and join().
  [[nodiscard]] bool joinable() const noexcept { return thread_.joinable(); }

  // True from start() until run() returned.
  [[nodiscard]] bool is_alive() const noexcept { return alive_.load(std::memory_order_acquire); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  // The kernel's thread id (Python's native_id); 0 until the thread runs.
  [[nodiscard]] int native_id() const noexcept { return tid_.load(std::memory_order_acquire); }

 protected:
  // The thread's work: by default the function given to the constructor.
  virtual void run();

  template <class F, class... Args>
  static std::function<void()> bind(F&& fn, Args&&... args) {
    return [f = std::decay_t<F>(std::forward<F>(fn)),
            tup = std::make_tuple(std::decay_t<Args>(std::forward<Args>(args))...)]() mutable {
      std::apply(f, tup);
    };
  }

 private:
  void main() noexcept;
  void check_joinable(const char* what) const;

  std::string name_;
  std::function<void()> target_;
  std::thread thread_;
  bool started_ = false;  // owner only
  std::atomic<bool> alive_{false};
  std::atomic<int> tid_{0};
  thread_event finished_;  // set when run() returned
};

}  // namespace corio
