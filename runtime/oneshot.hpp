#pragma once
// oneshot<T>: one value, or one error, from one sender to one receiver, across loops and
// threads (tokio's oneshot; a std::promise / std::future pair whose future a coroutine
// can await).
//
//     auto [tx, rx] = corio::oneshot<int>();
//     std::thread worker([tx = std::move(tx)]() mutable { tx.send(42); });
//     int v = co_await rx.receive();        // a plain thread: rx.blocking_receive()
//
// Contract
// - oneshot<T>() makes a connected pair, oneshot_sender<T> and oneshot_receiver<T>, both
//   move-only; each may live on any thread or loop. They share one heap block (the only
//   allocation), freed by whichever end goes last.
// - send(value) / send_error(exception_ptr): at most once (a second call throws
//   std::logic_error); never blocks. They return false when the receiver is gone (the
//   value is dropped, as it would be unread). is_closed(): the receiver is gone.
// - A sender destroyed without sending completes the receive with oneshot_dropped ("the
//   sender was dropped without sending").
// - co_await receive() gives the value, rethrows the sent error, or throws
//   oneshot_dropped, waiting until one of them is there; it resumes on the receiver's
//   loop. blocking_receive() does the same on a plain thread; try_receive() returns an
//   empty optional while nothing was sent. The result is taken once: receiving again
//   throws std::logic_error. A receive cancelled through the coroutine's stop token
//   throws operation_cancelled and takes nothing: the value waits for the next receive.
// - The receiver's frame must not be destroyed while it waits (as for every corio
//   awaiter); the race arguments are those of detail/sync_waiter.hpp: one spin_lock
//   guards the shared block, the sender's grant and a cancellation exclude each other.

#include <atomic>
#include <coroutine>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>

#include "detail/sync_waiter.hpp"

namespace corio {

// The receive of a oneshot whose sender was destroyed without sending.
class oneshot_dropped : public std::runtime_error {
 public:
  oneshot_dropped() : std::runtime_error("oneshot receive: the sender was dropped without sending") {}
};

namespace detail {

template <class T>
struct oneshot_state {
  enum class phase : unsigned char { empty, value, error, dropped, taken };

  spin_lock lock;  // guards everything but refs
  phase now = phase::empty;
  bool receiver_gone = false;
  std::optional<T> value;
  std::exception_ptr error;
  wait_list receivers;  // at most one
  // Acq_rel: the end that frees the block sees every write the other end made to it.
  std::atomic<int> refs{2};

  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Under lock: records the outcome and wakes the waiting receiver, if any.
  template <class Set>
  bool complete(wake_batch& wakes, phase to, Set set) {
    if (now != phase::empty) throw std::logic_error("oneshot send: the value was already sent");
    if (receiver_gone) return false;
    set();
    now = to;
    if (sync_waiter* w = receivers.pop_front()) wakes.grant(w);
    return true;
  }

  // Under lock: the result, once there. False while nothing was sent.
  bool ready() const noexcept { return now != phase::empty; }
  T take() {
    switch (std::exchange(now, phase::taken)) {
      case phase::value:
        return std::move(*value);
      case phase::error:
        std::rethrow_exception(error);
      case phase::dropped:
        throw oneshot_dropped();
      default:
        throw std::logic_error("oneshot receive: the result was already taken");
    }
  }
};

}  // namespace detail

template <class T>
class oneshot_sender {
 public:
  oneshot_sender(oneshot_sender&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  oneshot_sender& operator=(oneshot_sender&& o) noexcept {
    if (this != &o) {
      drop();
      state_ = std::exchange(o.state_, nullptr);
    }
    return *this;
  }
  ~oneshot_sender() { drop(); }

  bool send(T value) {
    return detail::with_lock(state().lock, [&](detail::wake_batch& wakes) {
      return state_->complete(wakes, phase::value, [&] { state_->value.emplace(std::move(value)); });
    });
  }
  bool send_error(std::exception_ptr error) {
    return detail::with_lock(state().lock, [&](detail::wake_batch& wakes) {
      return state_->complete(wakes, phase::error, [&] { state_->error = std::move(error); });
    });
  }
  bool is_closed() const {
    std::lock_guard guard(state().lock);
    return state_->receiver_gone;
  }

 private:
  using phase = typename detail::oneshot_state<T>::phase;
  template <class U>
  friend struct oneshot;
  explicit oneshot_sender(detail::oneshot_state<T>* s) noexcept : state_(s) {}

  detail::oneshot_state<T>& state() const {
    if (state_ == nullptr) throw std::logic_error("oneshot send: the sender was moved from");
    return *state_;
  }
  void drop() noexcept {
    if (state_ == nullptr) return;
    detail::with_lock(state_->lock, [this](detail::wake_batch& wakes) {
      if (state_->now != phase::empty) return;
      state_->now = phase::dropped;
      if (detail::sync_waiter* w = state_->receivers.pop_front()) wakes.grant(w);
    });
    std::exchange(state_, nullptr)->release();
  }

  detail::oneshot_state<T>* state_;
};

template <class T>
class oneshot_receiver {
 public:
  oneshot_receiver(oneshot_receiver&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  oneshot_receiver& operator=(oneshot_receiver&& o) noexcept {
    if (this != &o) {
      drop();
      state_ = std::exchange(o.state_, nullptr);
    }
    return *this;
  }
  ~oneshot_receiver() { drop(); }

  class [[nodiscard]] receive_awaiter : detail::sync_wait_base {
   public:
    explicit receive_awaiter(detail::oneshot_state<T>& s) noexcept : s_(s) {}
    bool await_ready() {
      std::lock_guard guard(s_.lock);
      return s_.ready();
    }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, s_.lock, s_.receivers, [this](detail::wake_batch&) { return s_.ready(); });
    }
    T await_resume() {
      finish("oneshot receive");
      std::lock_guard guard(s_.lock);
      return s_.take();
    }

   private:
    detail::oneshot_state<T>& s_;
  };

  // co_await: the value (see the contract).
  receive_awaiter receive() { return receive_awaiter(state()); }
  // From a plain thread (not a loop's: std::logic_error): blocks it until the result is there.
  T blocking_receive() {
    detail::oneshot_state<T>& s = state();
    detail::sync_waiter w;
    detail::block_on("oneshot blocking_receive", s.lock, s.receivers, w, [&](detail::wake_batch&) { return s.ready(); });
    std::lock_guard guard(s.lock);
    return s.take();
  }
  // The value if it is there now (the error or the drop are thrown, as by receive()).
  std::optional<T> try_receive() {
    detail::oneshot_state<T>& s = state();
    std::lock_guard guard(s.lock);
    if (!s.ready()) return std::nullopt;
    return s.take();
  }

 private:
  template <class U>
  friend struct oneshot;
  explicit oneshot_receiver(detail::oneshot_state<T>* s) noexcept : state_(s) {}

  detail::oneshot_state<T>& state() const {
    if (state_ == nullptr) throw std::logic_error("oneshot receive: the receiver was moved from");
    return *state_;
  }
  void drop() noexcept {
    if (state_ == nullptr) return;
    {
      std::lock_guard guard(state_->lock);
      state_->receiver_gone = true;
    }
    std::exchange(state_, nullptr)->release();
  }

  detail::oneshot_state<T>* state_;
};

// A connected pair: `auto [tx, rx] = corio::oneshot<int>();`
template <class T>
struct oneshot {
  oneshot() : oneshot(new detail::oneshot_state<T>) {}

  oneshot_sender<T> sender;
  oneshot_receiver<T> receiver;

 private:
  explicit oneshot(detail::oneshot_state<T>* s) noexcept : sender(s), receiver(s) {}
};

}  // namespace corio
