// corio::pool, the worker side: claiming tasks from the shared ring under the robust claim
// lock, running them, replying. Runs in fork()ed workers only (and lock_claim also in the
// parent's collector). The protocol is described in detail/pool_core.hpp.

#include <pthread.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "../runtime/errors.hpp"
#include "detail/pool_core.hpp"
#include "remote_call.hpp"

namespace corio::detail {

void pool_core::lock_claim() {
  const int r = ::pthread_mutex_lock(&sh_->claim_lock);
  if (r == 0) return;
  if (r != EOWNERDEAD) throw_errno(r, "corio::pool: pthread_mutex_lock (claim lock)");
  // The previous holder died inside a claim: settle its slot (see the top of the file).
  const std::uint64_t next = load_relaxed(sh_->next_claim);
  for (std::size_t i = 0; i < n_; ++i) {
    if (load_relaxed(slots_[i].claim_pending) == 0) continue;
    if (load_relaxed(slots_[i].current) >= next) store_relaxed(slots_[i].current, no_task);
    store_relaxed(slots_[i].claim_pending, 0);
  }
  ::pthread_mutex_consistent(&sh_->claim_lock);
}

// ---- worker process --------------------------------------------------------------------

bool pool_core::claim(std::size_t index, std::vector<std::byte>& request, std::uint64_t& id) {
  if (!tasks_available()) return false;
  lock_claim();
  struct unlock_guard {
    pool_core* c;
    ~unlock_guard() { c->unlock_claim(); }
  } guard{this};
  // A fresh consumer view each time: the true read index is the shared one, and the
  // previous holder of the lock may have been another worker.
  spsc_ring ring = spsc_ring::attach(task_mem_);
  pool_worker_slot& me = slots_[index];
  for (;;) {
    auto frame = ring.peek();
    if (!frame) return false;
    if (frame->size() < id_frame_header) {
      ring.pop();  // dropped, so that the worker replacing this one does not die of it too
      throw_short_id_frame("corio::pool: a task", frame->size());
    }
    const auto [fid, body] = split_id_frame(*frame, "corio::pool: a task");
    if (fid < load_relaxed(sh_->next_claim)) {  // claimed by a worker that died before popping
      ring.pop();
      continue;
    }
    store_relaxed(me.claim_pending, 1);
    store_relaxed(me.current, fid);
    request.assign(body.begin(), body.end());
    store_relaxed(sh_->next_claim, fid + 1);
    ring.pop();
    store_relaxed(me.claim_pending, 0);
    id = fid;
    return true;
  }
}

// The initializer's error travels as a reply to the task id no_task, then the worker
// returns with exit_init_failed in its slot; the collector keeps the message for the
// tasks it then fails (pool.cpp, note_init_failure).
bool pool_core::run_initializer(spsc_ring& out) {
  if (!options_.initializer) return true;
  try {
    options_.initializer();
    return true;
  } catch (...) {
    std::vector<std::byte> reply(sizeof no_task);
    std::memcpy(reply.data(), &no_task, sizeof no_task);
    append_error_reply(reply, sizeof no_task);
    (void)out.try_send(reply);  // the ring is fresh and empty: it fits (a short message)
    event_count(sh_->results_ec).notify_all();
    return false;
  }
}

void pool_core::worker_main(std::size_t index) {
  spsc_ring out = spsc_ring::attach(result_mem_[index]);
  const auto* out_header = reinterpret_cast<const spsc_ring_header*>(result_mem_[index].data());
  event_count tasks_ec(sh_->tasks_ec), space_ec(sh_->space_ec), results_ec(sh_->results_ec),
      drained_ec(sh_->drained_ec);
  if (!run_initializer(out)) {
    store_release(slots_[index].exit_reason, exit_init_failed);
    return;
  }
  std::vector<std::byte> request, reply;
  for (std::uint64_t done = 1;; ++done) {
    std::uint64_t id = 0;
    bool got = claim(index, request, id);
    for (unsigned i = 0; !got && i < options_.spin; ++i) {
      spin_pause(i);
      got = claim(index, request, id);
    }
    if (!got) {
      --done;  // no task this round
      // closing first (acquire), then the ring: every task pushed before close() is seen.
      if (load_acquire(sh_->closing) != 0 && !tasks_available()) return;
      tasks_ec.wait_until([&] { return tasks_available() || load_acquire(sh_->closing) != 0; });
      continue;
    }
    space_ec.notify_all();
    reply.resize(sizeof id);
    std::memcpy(reply.data(), &id, sizeof id);
    run_call(request, reply);
    auto send = [&] {
      try {
        return out.try_send(reply);
      } catch (const std::length_error&) {
        append_error_reply(reply, sizeof id);  // too large for the ring: say so instead
        return out.try_send(reply);
      }
    };
    const std::uint64_t before = load_relaxed(out_header->write_index);  // only we write it
    if (!send()) {
      results_ec.notify_all();
      drained_ec.wait_until(send);
    }
    store_release(slots_[index].current, no_task);  // after the reply: the collector drains first
    // Wake the collector only when the ring was empty before this reply: otherwise the
    // consumer has not caught up with an earlier reply, whose notify (or the consumer's
    // re-check after draining) covers this one. Dekker pair with drain_locked: we store
    // write_index, fence, load read_index; the consumer stores read_index, fences, loads
    // write_index: one of the two sees the other.
    dekker_fence();
    if (load_acquire(out_header->read_index) >= before) results_ec.notify_all();
    if (done == options_.max_tasks_per_child) {  // replied and cleared current: nothing in flight
      store_release(slots_[index].exit_reason, exit_retired);
      return;
    }
  }
}


}  // namespace corio::detail
