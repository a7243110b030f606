#include "process_semaphore.hpp"

#include <atomic>
#include <stdexcept>
#include <string>

#include "detail/shared_atomic.hpp"

namespace corio {
namespace {

// Takes one unit if there is one. Acquire on success: pairs with release()'s CAS.
bool take_unit(process_semaphore_state& s) noexcept {
  std::atomic_ref<std::uint64_t> count(s.count);
  std::uint64_t c = count.load(std::memory_order_relaxed);
  while (c > 0) {
    if (count.compare_exchange_weak(c, c - 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  }
  return false;
}

}  // namespace

process_semaphore::process_semaphore(std::uint64_t initial) : process_semaphore(initial, 0) {}

process_semaphore::process_semaphore(std::uint64_t initial, std::uint64_t bound) : block_("process_semaphore") {
  block_.state().count = initial;
  block_.state().bound = bound;
}

bool process_semaphore::try_acquire() noexcept { return take_unit(block_.state()); }

bool process_semaphore::acquire(deadline_type deadline) {
  process_semaphore_state& s = block_.state();
  event_count ev(s.wake);
  while (!take_unit(s)) {
    if (!ev.wait_until([&] { return detail::load_relaxed(s.count) > 0; }, deadline)) return false;
  }
  return true;
}

task<bool> process_semaphore::async_acquire(deadline_type deadline) {
  process_semaphore_state& s = block_.state();
  event_count ev(s.wake);
  while (!take_unit(s)) {
    // Named before it is tested: see process_condition.hpp (a GCC 12 coroutine bug).
    const bool ready = co_await ev.async_wait_until([&] { return detail::load_relaxed(s.count) > 0; }, deadline);
    if (!ready) co_return false;
  }
  co_return true;
}

void process_semaphore::release(std::uint64_t n) {
  process_semaphore_state& s = block_.state();
  const std::uint64_t bound = detail::load_relaxed(s.bound);
  std::atomic_ref<std::uint64_t> count(s.count);
  std::uint64_t c = count.load(std::memory_order_relaxed);
  do {
    if (c + n < c || c + n > (std::uint64_t{1} << 63))
      throw std::overflow_error("process_semaphore::release: the count would pass 2^63");
    if (bound != 0 && c + n > bound)
      throw std::range_error("process_bounded_semaphore::release: released too many times (count " +
                             std::to_string(c) + " + " + std::to_string(n) + " > bound " + std::to_string(bound) +
                             ")");
  } while (!count.compare_exchange_weak(c, c + n, std::memory_order_release, std::memory_order_relaxed));
  event_count(s.wake).notify_all();
}

std::uint64_t process_semaphore::value() const noexcept { return detail::load_relaxed(block_.state().count); }

}  // namespace corio
