#include "thread.hpp"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <stdexcept>

namespace corio {

namespace {

// The name given through corio; empty for a thread corio never named.
thread_local std::string this_thread_name;

// The kernel keeps 16 bytes with the terminating NUL (TASK_COMM_LEN).
constexpr std::size_t kernel_name_max = 15;

int current_tid() noexcept { return static_cast<int>(::syscall(SYS_gettid)); }

std::string next_default_name() {
  static std::atomic<unsigned> counter{0};
  return "Thread-" + std::to_string(counter.fetch_add(1, std::memory_order_relaxed) + 1);
}

}  // namespace

std::string current_thread_name() {
  if (!this_thread_name.empty()) return this_thread_name;
  if (current_tid() == ::getpid()) return "MainThread";
  char kernel_name[kernel_name_max + 1] = {};
  if (::pthread_getname_np(::pthread_self(), kernel_name, sizeof kernel_name) != 0) return "Dummy";
  return kernel_name;
}

void set_current_thread_name(std::string name) {
  // Failure only means the kernel's view keeps the old name: not worth an exception.
  (void)::pthread_setname_np(::pthread_self(), name.substr(0, kernel_name_max).c_str());
  this_thread_name = std::move(name);
}

thread::thread() : name_(next_default_name()) {}

thread::thread(std::string name) : name_(std::move(name)) {
  if (name_.empty()) name_ = next_default_name();
}

thread::~thread() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void thread::start() {
  if (started_) throw std::logic_error("corio::thread::start: thread " + name_ + " can only be started once");
  alive_.store(true, std::memory_order_relaxed);
  try {
    thread_ = std::thread([this] { main(); });
  } catch (...) {
    alive_.store(false, std::memory_order_relaxed);
    throw;
  }
  started_ = true;
}

void thread::check_joinable(const char* what) const {
  if (!thread_.joinable())
    throw std::logic_error(std::string("corio::thread::") + what + ": thread " + name_ +
                           " was not started (or was joined)");
  if (thread_.get_id() == std::this_thread::get_id())
    throw std::logic_error(std::string("corio::thread::") + what + ": thread " + name_ + " cannot join itself");
}

void thread::join() {
  check_joinable("join");
  thread_.join();
}

void thread::run() {
  if (target_) target_();
}

void thread::main() noexcept {
  // Release: a reader that sees the tid also sees the thread started.
  tid_.store(current_tid(), std::memory_order_release);
  set_current_thread_name(name_);
  try {
    run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "Exception in thread %s: %s\n", name_.c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "Exception in thread %s: (not a std::exception)\n", name_.c_str());
  }
  // Release: whoever sees the thread dead also sees everything run() wrote.
  alive_.store(false, std::memory_order_release);
  finished_.set();
}

}  // namespace corio
