#pragma once
// corio::pool internals shared by the public header and pool.cpp: the completion state of
// one submitted task (what a pool_future points at), the completion sink of
// imap_unordered, and the chunk runner of map.
//
// Who touches a pool_state
// - The collector thread (or a caller of get() that drains the result rings) completes
//   it once: set_reply() or set_error(), then complete(). The pool's pending table owns
//   one reference until then.
// - The future's owner reads it after ready() (phase_ == done, acquire: pairs with the
//   release in complete(), so the value written before is visible) and owns the other
//   reference.
// - An awaiting coroutine (pool_await_ready, pool.cpp) sleeps on done_ec, an event_count
//   in the state: complete() stores phase_ = done, then notifies (no system call when
//   nobody waits). The sleep is an operation of the awaiting loop's own ring, so it takes
//   the loop's rules: the ambient stop token cancels it (with_timeout, when_any: the
//   await ends with the cancellation error, the task's reply later lands in the state and
//   is dropped with it), and a loop destroyed during the wait cancels it first. The
//   completer never touches the awaiting loop, so it can never write into a dead one.
// - A state with a continuation (the callbacks of apply_async / map_async, the gathering
//   of map_async's chunks) is not completed by the completer: it hands its reference to
//   the pool's deferred list, and the collector thread, outside every lock, runs the
//   continuation and then complete(). So a callback may call the pool (submit, even
//   get() of another future) without deadlocking on the table lock, and it has run
//   before ready() turns true (as in Python, where the callback runs before get() returns).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../event_count.hpp"
#include "../remote_call.hpp"

namespace corio {

class loop;

// The pool was terminated (or destroyed) before the task completed.
class pool_terminated : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The completion callbacks of apply_async / map_async (Python's callback and
// error_callback): on_value(const R&) (on_value() for void) when the task succeeded,
// on_error(std::exception_ptr) when it failed. Either may be no_callback. Both must be
// copyable; they run in the parent, so they may capture anything by reference that
// outlives the task.
struct no_callback {};
template <class OnValue, class OnError = no_callback>
struct callbacks {
  callbacks(OnValue v, OnError e = {}) : on_value(std::move(v)), on_error(std::move(e)) {}
  OnValue on_value;
  OnError on_error;
};

namespace detail {

class pool_core;

template <class T>
inline constexpr bool is_callbacks_v = false;
template <class V, class E>
inline constexpr bool is_callbacks_v<callbacks<V, E>> = true;

// Completion order for imap_unordered: complete() pushes the chunk index.
class pool_sink {
 public:
  void push(std::size_t index) {
    {
      std::lock_guard lk(mutex_);
      done_.push_back(index);
    }
    cv_.notify_one();
  }
  std::size_t pop() {
    std::unique_lock lk(mutex_);
    cv_.wait(lk, [&] { return !done_.empty(); });
    const std::size_t i = done_.front();
    done_.pop_front();
    return i;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::size_t> done_;
};

class pool_state_base {
 public:
  pool_state_base() = default;
  pool_state_base(const pool_state_base&) = delete;
  pool_state_base& operator=(const pool_state_base&) = delete;
  virtual ~pool_state_base() = default;

  [[nodiscard]] bool ready() const noexcept { return phase_.load(std::memory_order_acquire) == done; }

  // ---- completer side (collector thread, under the pool's table lock) ----
  virtual void set_reply(std::span<const std::byte> reply) noexcept = 0;
  void set_error(std::exception_ptr e) noexcept { error_ = std::move(e); }
  void complete() noexcept;  // pool.cpp
  // True when complete() must wait for run_continuation() on the collector thread.
  [[nodiscard]] bool deferred() const noexcept { return deferred_; }
  // Collector thread, no lock held: the continuation, then complete().
  void finish_deferred() noexcept {
    run_continuation();
    complete();
  }

  // ---- owner side ----
  // What an awaiting coroutine sleeps on until ready() (pool_await_ready).
  event_count done_event() noexcept { return event_count(done_ec_); }
  void attach_sink(std::shared_ptr<pool_sink> sink, std::size_t index) {
    sink_ = std::move(sink);
    sink_index_ = index;
  }

  // pool_options::retries: the request (without its id) kept for another run after its
  // worker died, and the runs given so far. Written by the submitter before the task is
  // sent, then by the collector only.
  std::vector<std::byte> retry_request;
  unsigned retries_used = 0;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;  // last user is done
  }

 protected:
  void take_error() {
    if (taken_) throw std::logic_error("corio::pool_future: get() called twice");
    taken_ = true;
    if (error_) std::rethrow_exception(error_);
  }
  virtual void run_continuation() noexcept = 0;
  std::exception_ptr error_;
  bool deferred_ = false;  // set before the task is submitted, then read only

 private:
  static constexpr std::uint32_t pending = 0, done = 2;
  std::atomic<std::uint32_t> refs_{1};
  std::atomic<std::uint32_t> phase_{pending};
  event_count_state done_ec_{};
  std::shared_ptr<pool_sink> sink_;
  std::size_t sink_index_ = 0;
  bool taken_ = false;
};

// What a state stores for R (void: an empty marker, so one template serves both).
template <class R>
using stored_t = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

// A continuation sees the value (empty on error) and the error, and may change both: an
// exception escaping it becomes the task's error.
template <class R>
using pool_continuation = std::function<void(std::optional<stored_t<R>>& value, std::exception_ptr& error)>;

template <class R>
class pool_state final : public pool_state_base {
 public:
  void set_reply(std::span<const std::byte> reply) noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        take_reply<void>(reply);
        value_.emplace();
      } else {
        value_.emplace(take_reply<R>(reply));
      }
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  // map_async's gathered result (the state travels to no worker).
  void set_value(stored_t<R> v) noexcept(std::is_nothrow_move_constructible_v<stored_t<R>>) {
    value_.emplace(std::move(v));
  }
  // Before the task is submitted.
  void set_continuation(pool_continuation<R> c) {
    continuation_ = std::move(c);
    deferred_ = true;
  }
  R take() {
    take_error();
    if constexpr (!std::is_void_v<R>) return std::move(*value_);
  }

 private:
  void run_continuation() noexcept override {
    if (!continuation_) return;
    try {
      continuation_(value_, error_);
    } catch (...) {
      error_ = std::current_exception();
      value_.reset();
    }
  }
  std::optional<stored_t<R>> value_;
  pool_continuation<R> continuation_;
};

// The continuation that calls a callbacks pair.
template <class R, class OnValue, class OnError>
pool_continuation<R> callback_continuation(callbacks<OnValue, OnError> cb) {
  return [cb = std::move(cb)](std::optional<stored_t<R>>& value, std::exception_ptr& error) mutable {
    if (error) {
      if constexpr (!std::is_same_v<OnError, no_callback>) cb.on_error(error);
    } else if constexpr (std::is_same_v<OnValue, no_callback>) {
    } else if constexpr (std::is_void_v<R>) {
      cb.on_value();
    } else {
      cb.on_value(std::as_const(*value));
    }
  };
}

// An owning reference to a state (intrusive count: one allocation per task).
template <class S>
class state_ptr {
 public:
  state_ptr() = default;
  explicit state_ptr(S* s) noexcept : s_(s) {}
  state_ptr(state_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  state_ptr& operator=(state_ptr&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  ~state_ptr() { reset(); }
  void reset() noexcept {
    if (s_) std::exchange(s_, nullptr)->release();
  }
  S* get() const noexcept { return s_; }
  S* operator->() const noexcept { return s_; }
  S& operator*() const noexcept { return *s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  S* s_ = nullptr;
};

template <class S>
state_ptr<S> make_state() {
  return state_ptr<S>(new S());
}

// pool.cpp: the entry points the templates call.
using pool_encoder = void (*)(void* context, std::vector<std::byte>& out);
void pool_submit(pool_core& core, pool_state_base* state, pool_encoder encode, void* context);
// Blocks until state is ready or the deadline (nullptr: none) passed; true when ready.
bool pool_wait(pool_core& core, pool_state_base& state, const std::chrono::steady_clock::time_point* deadline);
// Inside a corio loop: suspends until state is ready; operation_cancelled on a stop request.
[[nodiscard]] task<void> pool_await_ready(pool_state_base& state);

template <class S>
state_ptr<S> share_state(const state_ptr<S>& p) {
  p->add_ref();
  return state_ptr<S>(p.get());
}

// `co_await future`: no coroutine frame when the task is already done; otherwise the
// awaiting coroutine awaits pool_await_ready (which inherits its stop token).
template <class R>
struct pool_future_awaiter {
  pool_state<R>* st;
  task<void> wait;  // started only when the state is not ready

  bool await_ready() const noexcept { return st->ready(); }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) {
    wait = pool_await_ready(*st);
    return std::move(wait).operator co_await().await_suspend(h);
  }
  R await_resume() {
    if (wait.valid()) std::move(wait).operator co_await().await_resume();  // rethrows a cancellation
    return st->take();
  }
};

// map / imap_unordered: the value of fn(item) for an item of a chunk.
template <class F, class T>
using map_result_t = std::decay_t<std::invoke_result_t<F&, typename std::vector<T>::reference>>;

// One request of map: runs fn on every item of its chunk. Trivially copyable when F is,
// so it travels as a remote_call callable.
template <class F, class T>
struct pool_chunk_runner {
  F fn;
  std::vector<map_result_t<F, T>> operator()(std::vector<T>& items) {
    std::vector<map_result_t<F, T>> out;
    out.reserve(items.size());
    for (auto&& item : items) out.push_back(fn(item));
    return out;
  }
};

// starmap: the items are tuples, fn takes their elements as arguments. Trivially
// copyable when F is.
template <class F>
struct star_runner {
  F fn;
  template <class Tuple>
  auto operator()(Tuple& args) {
    return std::apply(fn, args);
  }
};

// map_async: gathers the chunks' vectors as their continuations run (on the collector
// thread, one at a time: no lock), then settles the outer state the future holds. The
// error kept is the failed chunk's with the lowest index, as map rethrows.
template <class R>
class map_join {
 public:
  map_join(state_ptr<pool_state<std::vector<R>>> outer, std::size_t chunks)
      : outer_(std::move(outer)), parts_(chunks), remaining_(chunks) {}

  void chunk_done(std::size_t index, std::optional<std::vector<R>>& value, std::exception_ptr& error) {
    if (error) {
      if (index < error_index_) {
        error_ = error;
        error_index_ = index;
      }
    } else {
      parts_[index] = std::move(*value);
    }
    if (--remaining_ == 0) finish();
  }
  // Also called by map_async at once for an empty input (on the caller's thread).
  void finish() noexcept {
    if (error_) {
      outer_->set_error(error_);
    } else {
      try {
        std::vector<R> all;
        for (auto& part : parts_)
          for (auto& v : part) all.push_back(std::move(v));
        outer_->set_value(std::move(all));
      } catch (...) {
        outer_->set_error(std::current_exception());
      }
    }
    outer_->finish_deferred();
  }

 private:
  state_ptr<pool_state<std::vector<R>>> outer_;
  std::vector<std::vector<R>> parts_;
  std::size_t remaining_;
  std::exception_ptr error_;
  std::size_t error_index_ = ~std::size_t{0};
};

}  // namespace detail
}  // namespace corio
