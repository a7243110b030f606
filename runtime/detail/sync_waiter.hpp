#pragma once
// sync_waiter: the waiting machinery shared by mutex, semaphore, event, channel, oneshot
// and broadcast.
//
// Model. Each primitive guards its state with one spin_lock, so it may be used from any
// thread: by coroutines on any loop (the shards of a runtime, loops on threads of their
// own) and by plain threads through its blocking_* calls. A party that must wait puts a
// sync_waiter (in its awaiter, so it lives in the suspended frame; in a blocking call, on
// the thread's stack: no allocation per wait) at the tail of the primitive's intrusive
// FIFO wait_list, under the lock. The party that makes the resource available (unlock,
// release, set, send, receive, close) pops waiters from the head under the lock, records
// the outcome in the waiter's context (its awaiter's slot) and grants it through a
// wake_batch, which wakes it where it waits:
//   - a coroutine of the granter's own loop: onto that loop's ready queue, run by a drain
//     hook at the start of the next iteration. Never resumed inline, so a chain of
//     hand-offs (a thousand coroutines each locking and unlocking a mutex) never nests
//     stack frames. No atomic read-modify-write beyond the lock's.
//   - a coroutine of another loop: loop::post to ITS loop, made after the lock is
//     released (the wake_batch's destructor). A waiter always resumes on the loop it
//     suspended on, never on the granter's thread.
//   - a plain thread (owner == nullptr): granted is stored and the thread's futex woken,
//     under the lock. The woken thread takes the lock once before it returns, so the
//     granter is done with the waiter on the thread's stack before that stack unwinds.
//
// Cross-thread races, each settled by the lock:
//   - grant vs. cancellation. A stop request (from any thread) takes the lock: if the
//     waiter is still listed it is erased, marked cancelled and woken like a grant; if it
//     was granted first, the request does nothing. Exactly one of them wakes the waiter,
//     and a grant made first always wins: a lock handed over, a unit given, a value
//     received is never dropped.
//   - enqueue vs. a grant made between await_ready and await_suspend. await_suspend
//     re-tries the operation under the lock before it enqueues (suspend_on's try_now),
//     so no availability is missed and no wake-up is lost.
//   - wake-up vs. the waiter's frame. A granted or cancelled waiter cannot resume before
//     its wake-up runs (the ready queue or the post), so the pointers a wake_batch holds
//     after the lock is released stay valid until it has posted them.
//   - stop callback vs. resume. await_resume destroys the stop_callback first, which
//     waits for a callback still running on another thread.
// Visibility: the granter's writes to the awaiter (a value handed over) happen before the
// waiter reads them, through the lock (same-loop wake-up), the loop's post queue (another
// loop) or the release store of `granted` (a thread).
//
// Lifetimes: the primitive outlives every wait on it (destroying one with waiters is a
// bug); the loop a coroutine waits on outlives the wait (it does while the waiting
// coroutine is awaited to its end).

#include <atomic>
#include <coroutine>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <vector>

#include "../../coro/detail/trampoline.hpp"
#include "../../coro/stop.hpp"
#include "../errors.hpp"
#include "../loop.hpp"
#include "spin_lock.hpp"

namespace corio::detail {

class wait_list;
class ready_queue;

struct sync_waiter {
  static constexpr int granted = 1;

  sync_waiter* prev = nullptr;  // in the primitive's wait_list
  sync_waiter* next = nullptr;
  sync_waiter* ready_next = nullptr;  // in a ready queue or a wake_batch
  ready_queue* queue = nullptr;       // the owner loop's ready queue
  std::coroutine_handle<> handle;
  loop* owner = nullptr;      // the loop to resume on; nullptr: a blocked plain thread
  spin_lock* lock = nullptr;  // the primitive's lock, which guards list and state
  wait_list* list = nullptr;  // the list it waits on, for removal on cancellation
  void* context = nullptr;    // the awaiter's slot, for primitives that hand it a value
  bool cancelled = false;     // written under the lock before the wake-up
  // Written under the lock; read without it only by a blocked thread (acquire, paired
  // with the release in wake_batch::grant).
  std::atomic<int> state{0};
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
  // called when a waiter suspends, so a grant on the waiter's own loop never allocates).
  // Loop thread only.
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

// Wakes granted waiters where they wait (see the model above). Declared BEFORE the
// lock_guard of a critical section, so its destructor, which posts to other loops, runs
// after the lock is released:
//
//     detail::wake_batch wakes;
//     std::lock_guard guard(lock_);
//     if (sync_waiter* w = waiters_.pop_front()) wakes.grant(w);
class wake_batch {
 public:
  wake_batch() = default;
  wake_batch(const wake_batch&) = delete;
  wake_batch& operator=(const wake_batch&) = delete;
  ~wake_batch() {
    for (sync_waiter* w = head_; w != nullptr;) {
      sync_waiter* const next = w->ready_next;  // once posted, w may resume and vanish
      // Out of memory here leaves nothing safe to do: the destructor is noexcept.
      w->owner->post([w] { detail::resume(w->handle); });
      w = next;
    }
  }

  // Under the lock, for a waiter already taken off its list with its outcome recorded.
  void grant(sync_waiter* w) noexcept {
    if (w->owner == nullptr) {
      // Release: the blocked thread's acquire sees the outcome written before. Notified
      // under the lock: the thread cannot return (it takes the lock first) meanwhile.
      w->state.store(sync_waiter::granted, std::memory_order_release);
      w->state.notify_one();
      return;
    }
    w->state.store(sync_waiter::granted, std::memory_order_relaxed);  // read under the lock
    if (w->owner == loop::current()) {
      w->queue->schedule(w);
      return;
    }
    w->ready_next = nullptr;  // FIFO: waiters of one loop resume in the order granted
    (tail_ ? tail_->ready_next : head_) = w;
    tail_ = w;
  }

 private:
  sync_waiter* head_ = nullptr;
  sync_waiter* tail_ = nullptr;
};

// Runs f(wakes) under `lock`, then wakes what it granted.
template <class F>
decltype(auto) with_lock(spin_lock& lock, F&& f) {
  wake_batch wakes;
  std::lock_guard guard(lock);
  return f(wakes);
}

// A stop request for a waiting coroutine, from any thread (or inline, in await_suspend).
struct sync_canceller {
  sync_waiter* w;
  void operator()() const noexcept {
    with_lock(*w->lock, [this](wake_batch& wakes) {
      if (w->state.load(std::memory_order_relaxed) & sync_waiter::granted) return;  // the grant won
      w->list->erase(w);
      w->cancelled = true;
      wakes.grant(w);
    });
  }
};

// The suspend/resume half every waiting awaiter shares.
class sync_wait_base {
 public:
  sync_wait_base() = default;
  sync_wait_base(const sync_wait_base&) = delete;
  sync_wait_base& operator=(const sync_wait_base&) = delete;

 protected:
  // Under `lock`: try_now(wakes) once more (the resource may have come free since
  // await_ready), else enqueue on `list`; then arm cancellation. Returns false when the
  // wait ends at once (done now, or the token already stopped).
  template <class P, class TryNow>
  bool suspend_on(std::coroutine_handle<P> h, spin_lock& lock, wait_list& list, TryNow try_now) {
    w_.owner = &loop::this_loop();
    const std::stop_token* token = &never_stop;
    if constexpr (std::is_base_of_v<stop_carrier, P>) token = &h.promise().stop_token();
    if (token->stop_requested()) {
      w_.cancelled = true;
      return false;
    }
    w_.queue = &ready_queue::of(*w_.owner);
    w_.handle = h;
    w_.lock = &lock;
    w_.list = &list;
    const bool queued = with_lock(lock, [&](wake_batch& wakes) {
      if (try_now(wakes)) return false;
      list.push_back(&w_);
      return true;
    });
    // Last, outside the lock: the callback takes it, and may run inside this constructor
    // (a stop requested just now). Nothing resumes this frame before await_suspend
    // returns: every wake-up goes through this loop, which is running this call.
    if (queued && token->stop_possible()) on_stop_.emplace(*token, sync_canceller{&w_});
    return queued;
  }

  // Throws operation_cancelled("<what>") if the wait was cancelled.
  void finish(const char* what) {
    on_stop_.reset();  // waits for a callback running on another thread
    if (w_.cancelled) throw operation_cancelled(what);  // "mutex lock: Operation canceled"
  }

  sync_waiter w_;
  std::optional<std::stop_callback<sync_canceller>> on_stop_;
};

// The plain-thread half: blocks the calling thread until try_now(wakes) succeeds under
// the lock or a waker grants `w` (whose context the caller has set). Not on a loop's
// thread: the loop would stall, and deadlock if the wake-up had to come from it.
template <class TryNow>
void block_on(const char* what, spin_lock& lock, wait_list& list, sync_waiter& w, TryNow try_now) {
  if (loop::current() != nullptr)
    throw std::logic_error(std::string(what) + ": blocking call on a loop's thread (co_await the async form)");
  const bool queued = with_lock(lock, [&](wake_batch& wakes) {
    if (try_now(wakes)) return false;
    w.owner = nullptr;
    w.lock = &lock;
    w.list = &list;
    list.push_back(&w);
    return true;
  });
  if (!queued) return;
  // Acquire: pairs with the release store in wake_batch::grant.
  while (w.state.load(std::memory_order_acquire) == 0) w.state.wait(0, std::memory_order_acquire);
  // The granter notified under the lock: once we hold it, it is done with `w`.
  std::lock_guard done(lock);
}

}  // namespace corio::detail
