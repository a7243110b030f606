#include "process_recursive_mutex.hpp"

#include <stdexcept>

namespace corio {

process_recursive_mutex::process_recursive_mutex()
    : block_("process_recursive_mutex"), mutex_(block_.state().mutex) {}

process_recursive_mutex::process_recursive_mutex(process_recursive_mutex_state& state) noexcept
    : block_(state), mutex_(state.mutex) {}

process_recursive_mutex::process_recursive_mutex(shm_region received)
    : block_(std::move(received), "process_recursive_mutex"), mutex_(block_.state().mutex) {}

// A fresh acquisition (normal or taken from a dead holder) starts at depth 1; depth is
// only touched by the holder, ordered by the mutex's acquire and release.
lock_result process_recursive_mutex::entered(lock_result r) noexcept {
  if (r) block_.state().depth = 1;
  return r;
}

bool process_recursive_mutex::reentered() noexcept {
  if (!mutex_.held_by_this_thread()) return false;
  ++block_.state().depth;
  return true;
}

lock_result process_recursive_mutex::lock() {
  return reentered() ? lock_result::status::acquired : entered(mutex_.lock());
}

lock_result process_recursive_mutex::try_lock() {
  return reentered() ? lock_result::status::acquired : entered(mutex_.try_lock());
}

lock_result process_recursive_mutex::try_lock_until(clock::time_point deadline) {
  return reentered() ? lock_result::status::acquired : entered(mutex_.try_lock_until(deadline));
}

task<lock_result> process_recursive_mutex::async_lock(deadline_type deadline) {
  if (reentered()) co_return lock_result::status::acquired;
  co_return entered(co_await mutex_.async_lock(deadline));
}

void process_recursive_mutex::unlock() {
  if (!mutex_.held_by_this_thread())
    throw std::logic_error("process_recursive_mutex::unlock: the calling thread does not hold the lock");
  if (--block_.state().depth == 0) mutex_.unlock();
}

std::uint64_t process_recursive_mutex::depth() const noexcept {
  return mutex_.held_by_this_thread() ? block_.state().depth : 0;
}

}  // namespace corio
