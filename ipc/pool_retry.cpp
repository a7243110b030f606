// corio::pool, the parent side of pool_options::retries: a task whose worker died is taken
// back from the pending table by the collector and sent again under a new id (any worker
// may take it), up to `retries` times. See detail/pool_core.hpp for the protocol.
//
// Ordering: a resent task gets its pending-table entry before its frame is visible in the
// task ring (as in submit), so its reply always finds the entry. Ids must enter the table
// in id order, so the resend takes submit_mutex_, but only by try_lock: a submitter may
// hold it while it waits for ring space, and that space comes from workers whose replies
// the collector must keep draining; a resend that cannot go now waits in the backlog and
// is tried again every millisecond.

#include <cstring>

#include "../runtime/errors.hpp"
#include "../runtime/loop.hpp"
#include "../runtime/timer.hpp"
#include "detail/pool_core.hpp"

namespace corio::detail {

bool pool_core::retry(std::uint64_t id) {
  if (options_.retries == 0) return false;
  pool_state_base* st = nullptr;
  {
    std::lock_guard tl(table_mutex_);
    if (id < base_id_ || id - base_id_ >= pending_.size()) return true;  // completed meanwhile
    st = pending_[id - base_id_];
    if (st == nullptr) return true;
    if (st->retries_used >= options_.retries) return false;
    pending_[id - base_id_] = nullptr;  // its reference moves to the backlog
  }
  ++st->retries_used;
  retry_backlog_.push_back(st);
  if (!resending_) {
    resending_ = true;
    loop::this_loop().spawn(resend_backlog());  // runs now: usually sent before this returns
  }
  return true;
}

bool pool_core::try_resend(pool_state_base* st) {
  std::unique_lock lk(submit_mutex_, std::try_to_lock);
  if (!lk.owns_lock() || terminating_.load(std::memory_order_acquire)) return false;
  const std::uint64_t id = next_id_;
  buffer_.resize(sizeof id);
  buffer_.insert(buffer_.end(), st->retry_request.begin(), st->retry_request.end());
  std::memcpy(buffer_.data(), &id, sizeof id);
  {
    std::lock_guard tl(table_mutex_);
    pending_.push_back(st);
  }
  if (!tasks_->try_send(buffer_)) {
    std::lock_guard tl(table_mutex_);
    pending_.pop_back();  // still ours: nobody else pushes while we hold submit_mutex_
    return false;
  }
  ++next_id_;
  event_count(sh_->tasks_ec).notify_all();
  return true;
}

task<void> pool_core::resend_backlog() {
  try {
    while (!retry_backlog_.empty()) {
      if (try_resend(retry_backlog_.front()))
        retry_backlog_.pop_front();
      else
        co_await sleep_for(std::chrono::milliseconds(1));
    }
  } catch (const operation_cancelled&) {
    // The collector is stopping: finish() fails what is left.
  }
  resending_ = false;
}

void pool_core::take_backlog(std::vector<pool_state_base*>& out) {
  out.insert(out.end(), retry_backlog_.begin(), retry_backlog_.end());
  retry_backlog_.clear();
}

}  // namespace corio::detail
