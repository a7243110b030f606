#pragma once
// sync_waiter: the waiting machinery shared by mutex, semaphore, event and channel.
//
// Model. The primitives are loop-local: every call on one primitive is made on the thread
// of one loop. A coroutine that must wait puts a sync_waiter (a member of its awaiter,
// so it lives in the suspended frame: no allocation per wait) at the tail of the
// primitive's intrusive FIFO wait_list. The party that makes the resource available
// (unlock, release, set, send, receive, close) pops waiters from the head and grants
// them: it records the outcome in the awaiter, then schedules the waiter on the loop's
// ready queue. Waiters are never resumed inline, so a chain of hand-offs (a thousand
// coroutines each locking and unlocking a mutex) never nests stack frames; the queue is
// run by a loop drain hook at the start of the next iteration, before the loop sleeps.
//
// Cancellation. While suspended, a waiter borrows its coroutine's stop token (stop.hpp)
// through a std::stop_callback. A stop request on the loop's thread removes the waiter
// from its list at once and schedules it with `cancelled` set (its awaiter then throws
// operation_cancelled). A stop request from another thread cannot touch the list: it
// marks the waiter cancel_posted and posts the removal to the loop (loop::post). The two
// state bits settle the race between that post and a grant made meanwhile on the loop:
//
//     granter (loop thread):   fetch_or(granted)       saw cancel_posted -> the post resumes
//     stop callback (other):   fetch_or(cancel_posted) saw granted       -> nothing to do
//
// Both are read-modify-writes on one atomic, so whichever comes second sees the first's
// bit: exactly one side schedules the waiter. A grant always wins over a later
// cancellation: granted work (a lock handed over, a value received) is never dropped.
// acq_rel on both sides orders the grant's writes to the awaiter before the posted closure reads them.
// The awaiter's frame cannot resume before the posted closure runs, so the closure's
// pointer stays valid; await_resume destroys the stop_callback first, which waits for a
// callback still running on another thread.

#include <atomic>
#include <coroutine>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <vector>

#include "../../coro/detail/trampoline.hpp"
#include "../../coro/stop.hpp"
#include "../errors.hpp"
#include "../loop.hpp"

namespace corio::detail {

class wait_list;
class ready_queue;

struct sync_waiter {
  static constexpr unsigned char granted = 1;
  static constexpr unsigned char cancel_posted = 2;

  sync_waiter* prev = nullptr;  // in the primitive's wait_list
  sync_waiter* next = nullptr;
  sync_waiter* ready_next = nullptr;  // in the loop's ready queue
  ready_queue* queue = nullptr;       // that queue
  std::coroutine_handle<> handle;
  loop* owner = nullptr;
  wait_list* list = nullptr;  // the list it waits on, for removal on cancellation
  void* context = nullptr;    // the awaiter, for primitives that hand it a value
  bool cancelled = false;     // loop thread only
  std::atomic<unsigned char> state{0};
};

// An intrusive FIFO of waiters with O(1) removal from the middle (for cancellation).
class wait_list {
 public:
  wait_list() = default;
  wait_list(const wait_list&) = delete;
  wait_list& operator=(const wait_list&) = delete;

  bool empty() const noexcept { return head_ == nullptr; }
  sync_waiter* front() const noexcept { return head_; }

  void push_back(sync_waiter* w) noexcept {
    w->next = nullptr;
    w->prev = tail_;
    if (tail_)
      tail_->next = w;
    else
      head_ = w;
    tail_ = w;
  }
  sync_waiter* pop_front() noexcept {
    sync_waiter* w = head_;
    if (w) erase(w);
    return w;
  }
  void erase(sync_waiter* w) noexcept {
    (w->prev ? w->prev->next : head_) = w->next;
    (w->next ? w->next->prev : tail_) = w->prev;
    w->prev = w->next = nullptr;
  }

 private:
  sync_waiter* head_ = nullptr;
  sync_waiter* tail_ = nullptr;
};

// The ready queue of one loop, run by a drain hook registered on that loop. One per
// (thread, loop): waiters scheduled on a loop whose run() ended are resumed only if that
// same loop runs again, never by a later loop of the thread.
class ready_queue {
 public:
  ready_queue() = default;
  ready_queue(const ready_queue&) = delete;
  ready_queue& operator=(const ready_queue&) = delete;

  // The queue of `lp`, registering its drain hook on first use (this may allocate; it is
  // called when a waiter suspends, so grants never allocate). Loop thread only.
  static ready_queue& of(loop& lp) {
    static thread_local registry r;
    if (&lp == r.last_loop && lp.stop_token() == r.last_id) return *r.last_queue;
    return r.find_or_add(lp);
  }

  // Loop thread only. Resumes w->handle at the loop's next iteration.
  void schedule(sync_waiter* w) noexcept {
    w->ready_next = nullptr;
    if (tail_)
      tail_->ready_next = w;
    else
      head_ = w;
    tail_ = w;
  }
  bool empty() const noexcept { return head_ == nullptr; }

 private:
  // A loop is told apart from an earlier one at the same address by its stop state
  // (std::stop_token compares its shared state, which the copy kept here keeps alive, so
  // no later loop can share it). A destroyed loop leaves a token with no source
  // (!stop_possible()); its entry is dropped once its queue is empty.
  struct entry {
    std::stop_token id;
    std::unique_ptr<ready_queue> queue;
  };
  struct registry {
    loop* last_loop = nullptr;
    std::stop_token last_id;
    ready_queue* last_queue = nullptr;
    std::vector<entry> entries;

    ready_queue& find_or_add(loop& lp) {
      ready_queue* q = nullptr;
      std::erase_if(entries, [&](const entry& e) {
        if (e.id == lp.stop_token()) q = e.queue.get();
        return !e.id.stop_possible() && e.queue->empty() && e.queue.get() != last_queue;
      });
      if (q == nullptr) {
        entries.reserve(entries.size() + 1);  // no throw after the hook is registered
        auto fresh = std::make_unique<ready_queue>();
        lp.add_drain_hook(&ready_queue::drain, fresh.get());
        q = fresh.get();
        entries.push_back({lp.stop_token(), std::move(fresh)});
      }
      last_loop = &lp;
      last_id = lp.stop_token();
      last_queue = q;
      return *q;
    }
  };

  static bool drain(void* self) {
    auto& q = *static_cast<ready_queue*>(self);
    sync_waiter* w = q.head_;
    if (w == nullptr) return false;
    // Take the whole batch: waiters scheduled by the ones resumed here run next
    // iteration, after the loop has submitted and reaped I/O (no starvation of I/O).
    q.head_ = q.tail_ = nullptr;
    while (w) {
      sync_waiter* next = w->ready_next;  // w's frame may be gone after the resume
      detail::resume(w->handle);
      w = next;
    }
    return true;
  }

  sync_waiter* head_ = nullptr;
  sync_waiter* tail_ = nullptr;
};

// Called by the primitive, on the loop thread, after it removed `w` from its list and
// recorded the outcome in the awaiter.
inline void grant(sync_waiter* w) noexcept {
  if (w->state.fetch_or(sync_waiter::granted, std::memory_order_acq_rel) & sync_waiter::cancel_posted)
    return;  // a stop request from another thread posted a closure; it resumes w
  w->queue->schedule(w);
}

// Loop thread: removes a waiter that was not granted and schedules it as cancelled.
inline void cancel_here(sync_waiter* w) noexcept {
  w->list->erase(w);
  w->cancelled = true;
  w->state.fetch_or(sync_waiter::granted, std::memory_order_relaxed);  // no second schedule
  w->queue->schedule(w);
}

struct sync_canceller {
  sync_waiter* w;
  void operator()() const noexcept {
    if (loop::current() == w->owner) {
      // This thread runs the waiter's loop (and the call may be inside the stop_callback
      // constructor, in await_suspend): the list may be touched directly.
      if (!(w->state.load(std::memory_order_relaxed) & sync_waiter::granted)) cancel_here(w);
      return;
    }
    if (w->state.fetch_or(sync_waiter::cancel_posted, std::memory_order_acq_rel) & sync_waiter::granted)
      return;  // granted first: the grant scheduled it
    sync_waiter* const waiter = w;
    // Out of memory here leaves nothing safe to do: noexcept terminates.
    waiter->owner->post([waiter] {
      if (waiter->state.load(std::memory_order_acquire) & sync_waiter::granted)
        waiter->queue->schedule(waiter);  // granted after the post: resume it
      else
        cancel_here(waiter);
    });
  }
};

// The suspend/resume half every waiting awaiter shares. `Derived` provides try_now()
// (the fast path, also re-checked in await_suspend) and result().
class sync_wait_base {
 public:
  sync_wait_base() = default;
  sync_wait_base(const sync_wait_base&) = delete;
  sync_wait_base& operator=(const sync_wait_base&) = delete;

 protected:
  // Enqueues on `list` and arms cancellation. Returns false when the wait ends at once
  // (the token is already stopped).
  template <class P>
  bool suspend_on(std::coroutine_handle<P> h, wait_list& list) {
    w_.owner = &loop::this_loop();
    const std::stop_token* token = &never_stop;
    if constexpr (std::is_base_of_v<stop_carrier, P>) token = &h.promise().stop_token();
    if (token->stop_requested()) {
      w_.cancelled = true;
      return false;
    }
    w_.queue = &ready_queue::of(*w_.owner);
    w_.handle = h;
    w_.list = &list;
    list.push_back(&w_);
    // Last: the callback may run inside this constructor (a stop requested just now).
    if (token->stop_possible()) on_stop_.emplace(*token, sync_canceller{&w_});
    return true;
  }

  // Throws operation_cancelled("<what>") if the wait was cancelled.
  void finish(const char* what) {
    on_stop_.reset();  // waits for a callback running on another thread
    if (w_.cancelled) throw operation_cancelled(what);  // "mutex lock: Operation canceled"
  }

  sync_waiter w_;
  std::optional<std::stop_callback<sync_canceller>> on_stop_;
};

}  // namespace corio::detail
