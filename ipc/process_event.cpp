#include "process_event.hpp"

#include "detail/shared_atomic.hpp"

namespace corio {

process_event::process_event() : block_("process_event") {}

void process_event::set() noexcept {
  detail::store_release(block_.state().flag, 1);
  event_count(block_.state().wake).notify_all();
}

void process_event::clear() noexcept { detail::store_release(block_.state().flag, 0); }

bool process_event::is_set() const noexcept { return detail::load_acquire(block_.state().flag) != 0; }

// A waiter woken by set() returns true even when a clear() came before it re-checked
// (Python's semantics): the event_count's epoch, which only set() moves, tells it so.
bool process_event::wait(deadline_type deadline) {
  if (is_set()) return true;
  event_count ev(block_.state().wake);
  const event_count::key k = ev.prepare_wait();
  for (event_count::key now = k; !over(ev, k, now); now = ev.prepare_wait())
    if (!ev.wait(k, deadline)) return is_set();
  return true;
}

task<bool> process_event::async_wait(deadline_type deadline) {
  if (is_set()) co_return true;
  event_count ev(block_.state().wake);
  const event_count::key k = ev.prepare_wait();
  for (event_count::key now = k; !over(ev, k, now); now = ev.prepare_wait()) {
    const bool woken = co_await ev.async_wait(k, deadline);  // named: see process_condition.hpp
    if (!woken) co_return is_set();
  }
  co_return true;
}

// Called announced (prepare_wait returned `now`): the wait is over when the flag is up or
// a set() moved the epoch since the first announcement; the announcement is then withdrawn.
bool process_event::over(event_count& ev, event_count::key first, event_count::key now) const noexcept {
  if (!is_set() && now == first) return false;
  ev.cancel_wait();
  return true;
}

}  // namespace corio
