#pragma once
// shard_mesh: the cross-shard plumbing of corio::runtime (runtime.hpp): one SPSC queue
// per ordered pair of shards, the drain hook that delivers messages, wake-ups, overflow
// lists and the shutdown (quiescence) bookkeeping. Internal: included by runtime.cpp only.
//
// Who may touch it: a runtime_state lives for one runtime::run; each shard_state's
// "owned by the shard's thread" fields are touched by that shard only, the atomics by
// anyone during the run. Destroyed by run() after every shard thread was joined.
//
// How a message reaches a shard, and how a sleeping shard is woken
//
// Shard `from` sends to shard `to` through queues[from][to]: `from` is its only producer,
// `to` its only consumer (spsc_queue.hpp). `to` drains all its inbound queues from a
// loop drain hook, called at every iteration and once more after the loop announced its
// sleep (loop.hpp).
//
// No polling, no lost wake-up: after publishing (the queue's release store of tail) the
// sender issues a seq_cst fence and reads the target's sleeping flag; the target stores
// sleeping = true (seq_cst) and its hook issues a seq_cst fence before reading the queues.
// The two fences are ordered one way or the other: either the sender's fence comes first
// and the target's later read of the queue sees the message, or the target's fence comes
// first and the sender sees sleeping == true and wakes it. A busy target is never woken.
//
// Waking: the sender puts an IORING_OP_MSG_RING SQE on its own ring that posts a CQE
// (user_data 0, skipped by the loop) into the target's ring, which ends its
// io_uring_enter. The SQE goes out with the sender's next batch of submissions, so a
// burst costs no extra system call. MSG_RING needs Linux 5.18; it is probed when run()
// starts, and without it (or if one fails) the target's eventfd is written instead
// (loop::wake). Duplicate wake-ups are filtered by the target's `wake_requested` flag:
// a sender wakes only if it turns the flag from false to true; the target clears it with
// an exchange (acq_rel, synchronising with that sender) before draining, so a sender that
// skipped because the flag was set knows a wake-up is on its way and will be followed by
// a drain that sees its message.
//
// A full queue: the message goes to the sender's overflow list for that target (an
// intrusive FIFO: no allocation, nothing dropped, order kept) and the sender raises
// `waiting[from][to]`. The sender retries at each drain-hook call; it may sleep meanwhile.
// The target, after popping from that queue, fences and reads the flag; if it is raised it
// wakes the sender exactly as a sender wakes a target. Same Dekker argument, the roles
// swapped: the sender stored the flag and its sleeping flag before its hook's fence and
// then reads head; the target stored head before its fence and then reads the flag and
// the sender's sleeping flag. Either the sender sees the freed slot or the target sees a
// sleeping sender with a raised flag.
//
// Shutdown (quiescence): `outstanding` counts submit_to requests whose reply has not been
// consumed; each shard publishes `quiet` = "stopping and no spawned task". Both change
// only on their own threads and each change that could make the runtime quiescent wakes
// shard 0, whose hook checks "outstanding == 0 and every shard quiet". That state is
// stable: a quiet shard gets new work only through a message, which is counted in
// `outstanding`, and a target that spawned a task while running fn clears its quiet flag
// before it replies (the reply's release/acquire chain orders that store before the
// decrement shard 0 reads).

#include <liburing.h>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <stop_token>
#include <vector>

#include "../../coro/detail/trampoline.hpp"
#include "../loop.hpp"
#include "../runtime.hpp"
#include "dekker_fence.hpp"
#include "io_op.hpp"
#include "spsc_queue.hpp"

namespace corio::detail {

// The CQE of a MSG_RING on the sender's ring: on failure, wake the target by eventfd.
struct ring_waker : io_op {
  runtime_state* state = nullptr;
  unsigned target = 0;
};

struct shard_state {
  runtime_state* owner = nullptr;
  unsigned index = 0;
  // Written once by the shard's thread before the ready latch; read-only afterwards.
  loop* lp = nullptr;
  int ring_fd = -1;

  // Cross-thread flags.
  alignas(cache_line) std::atomic<bool> wake_requested{false};
  std::atomic<bool> stop_requested{false};  // stop() or shutdown: request_stop the loop
  std::atomic<bool> exit{false};            // leave the loop (after quiescence)
  std::atomic<bool> quiet{false};

  // Owned by the shard's thread.
  alignas(cache_line) bool stop_done = false;
  bool quiet_seen = false;
  std::coroutine_handle<> parked;        // shards 1..N-1: the task that waits for exit
  std::coroutine_handle<> coordinator;   // shard 0: the task that waits for quiescence
  struct overflow_list {
    shard_message* head = nullptr;
    shard_message* tail = nullptr;
  };
  std::vector<overflow_list> overflow;  // per target
  std::size_t overflowing = 0;          // non-empty overflow lists
  std::vector<ring_waker> wakers;       // per target
};

struct runtime_state {
  unsigned count;
  bool msg_ring;
  std::vector<std::unique_ptr<shard_state>> shards;
  std::vector<std::unique_ptr<spsc_queue<shard_message*>>> queues;  // [from * count + to]
  std::atomic<bool> stopping{false};
  std::atomic<long> outstanding{0};
  std::stop_source main_stop;
  std::stop_token main_token = main_stop.get_token();
  std::exception_ptr startup_error;
  std::mutex startup_mutex;

  runtime_state(unsigned n, unsigned capacity, bool use_msg_ring) : count(n), msg_ring(use_msg_ring) {
    for (unsigned i = 0; i < n; ++i) {
      auto s = std::make_unique<shard_state>();
      s->owner = this;
      s->index = i;
      s->overflow.resize(n);
      s->wakers.resize(n);
      for (unsigned t = 0; t < n; ++t) {
        s->wakers[t].state = this;
        s->wakers[t].target = t;
        s->wakers[t].complete = [](io_op* op, int res, unsigned) noexcept {
          auto* w = static_cast<ring_waker*>(op);
          if (res < 0 && !w->state->shards[w->target]->exit.load(std::memory_order_acquire))
            w->state->shards[w->target]->lp->wake();
        };
      }
      shards.push_back(std::move(s));
    }
    waiting = std::vector<pair_flag>(std::size_t{n} * n);
    queues.reserve(std::size_t{n} * n);
    for (std::size_t i = 0; i < std::size_t{n} * n; ++i)
      queues.push_back(std::make_unique<spsc_queue<shard_message*>>(capacity));
  }

  // [from * count + to]: shard `from` has overflowed messages for `to` (see the top).
  struct alignas(cache_line) pair_flag {
    std::atomic<bool> raised{false};
  };
  std::vector<pair_flag> waiting;

  spsc_queue<shard_message*>& queue(unsigned from, unsigned to) { return *queues[std::size_t{from} * count + to]; }
  std::atomic<bool>& waiting_flag(unsigned from, unsigned to) { return waiting[std::size_t{from} * count + to].raised; }

  // On shard `from`, right after a message to `to` was published.
  void wake_after_publish(unsigned from, unsigned to) noexcept {
    if (from == to) return;  // we are running: our own hook will see it
    // Dekker with the target's sleeping flag (see the top of this file).
    dekker_fence();
    wake_if_sleeping(from, to);
  }

  // On shard `from`, after a seq_cst fence that follows the publication.
  void wake_if_sleeping(unsigned from, unsigned to) noexcept {
    shard_state& target = *shards[to];
    if (!target.lp->sleeping()) return;
    // Acq_rel: the target's clearing exchange synchronises with the sender that set it.
    if (target.wake_requested.exchange(true, std::memory_order_acq_rel)) return;
    if (msg_ring) {
      shard_state& self = *shards[from];
      try {
        io_uring_sqe* sqe = self.lp->get_sqe();
        io_uring_prep_msg_ring(sqe, target.ring_fd, 0, 0, 0);
        self.lp->track(sqe, &self.wakers[to]);
        return;
      } catch (...) {
        // No SQE: fall through to the eventfd.
      }
    }
    target.lp->wake();
  }

  void send(unsigned from, unsigned to, shard_message* m) noexcept {
    shard_state& self = *shards[from];
    auto& list = self.overflow[to];
    if (list.head == nullptr && queue(from, to).try_push(m)) {
      wake_after_publish(from, to);
      return;
    }
    // Full (or older messages wait in the overflow list): keep FIFO order.
    m->next = nullptr;
    if (list.head == nullptr) {
      list.head = m;
      ++self.overflowing;
      // Seq_cst: ordered before this shard's sleeping flag and hook fence (see the top).
      waiting_flag(from, to).store(true, std::memory_order_seq_cst);
    } else {
      list.tail->next = m;
    }
    list.tail = m;
  }

  // On shard `from`, after its hook's fence: moves overflowed messages into their queues.
  // True if it moved any.
  bool flush_overflow(unsigned from) noexcept {
    shard_state& self = *shards[from];
    bool any = false;
    for (unsigned to = 0; to < count && self.overflowing > 0; ++to) {
      auto& list = self.overflow[to];
      if (list.head == nullptr) continue;
      bool moved = false;
      while (list.head != nullptr) {
        // Read the link first: once published, the message belongs to the target.
        shard_message* const next = list.head->next;
        if (!queue(from, to).try_push(list.head)) break;
        list.head = next;
        moved = true;
      }
      if (list.head == nullptr) {
        list.tail = nullptr;
        --self.overflowing;
        waiting_flag(from, to).store(false, std::memory_order_relaxed);
      }
      if (moved) wake_after_publish(from, to);
      any = any || moved;
    }
    return any;
  }

  bool quiescent() const noexcept {
    if (outstanding.load(std::memory_order_seq_cst) != 0) return false;
    for (const auto& s : shards)
      if (!s->quiet.load(std::memory_order_seq_cst)) return false;
    return true;
  }

  // Wakes shard 0 so it re-checks quiescence (a shard went quiet, outstanding hit zero).
  void notify_coordinator() noexcept { shards[0]->lp->wake(); }

  // The drain hook of shard `index`, on its thread.
  bool drain(unsigned index) noexcept {
    shard_state& self = *shards[index];
    self.wake_requested.exchange(false, std::memory_order_acq_rel);
    // Dekker with senders (see the top of this file).
    dekker_fence();
    bool found = self.overflowing > 0 && flush_overflow(index);
    bool popped = false;
    for (unsigned from = 0; from < count; ++from) {
      auto& q = queue(from, index);
      // Bounded: a message delivered here may send another to this very queue.
      for (std::size_t budget = q.capacity(); budget > 0; --budget) {
        shard_message** front = q.front();
        if (front == nullptr) break;
        shard_message* m = *front;
        q.pop();
        m->deliver(m);
        popped = true;
      }
    }
    found = found || popped;
    if (popped) {
      // Slots were freed: wake senders that wait with overflowed messages (see the top).
      dekker_fence();
      for (unsigned from = 0; from < count; ++from)
        if (from != index && waiting_flag(from, index).load(std::memory_order_relaxed)) wake_if_sleeping(index, from);
    }
    if (self.stop_requested.load(std::memory_order_relaxed) && !self.stop_done) [[unlikely]] {
      self.stop_done = true;
      self.lp->request_stop();
    }
    if (stopping.load(std::memory_order_acquire)) [[unlikely]] {
      update_quiet(index);
      if (index == 0 && self.coordinator && quiescent()) {
        detail::resume(std::exchange(self.coordinator, {}));
        found = true;
      }
    }
    if (self.parked && self.exit.load(std::memory_order_acquire)) {
      detail::resume(std::exchange(self.parked, {}));
      found = true;
    }
    return found;
  }

  void update_quiet(unsigned index) noexcept {
    shard_state& self = *shards[index];
    const bool q = self.lp->spawned() == 0;
    if (q == self.quiet_seen) return;
    self.quiet_seen = q;
    self.quiet.store(q, std::memory_order_seq_cst);
    if (q && index != 0) notify_coordinator();
  }

  void request_stop_everywhere() noexcept {
    main_stop.request_stop();
    for (auto& s : shards) {
      s->stop_requested.store(true, std::memory_order_seq_cst);
      if (s->lp != nullptr) s->lp->wake();
    }
  }

  void tell_shards_to_exit() noexcept {
    for (auto& s : shards) {
      s->exit.store(true, std::memory_order_seq_cst);
      if (s->lp != nullptr) s->lp->wake();  // eventfd: immediate, needs no further iteration
    }
  }
};

}  // namespace corio::detail
