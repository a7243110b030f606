#pragma once
// channel<T>: a bounded async FIFO between coroutines and threads (asyncio.Queue with a
// maxsize, a Go channel, tokio's mpsc).
//
//     corio::channel<int> ch(16);
//     // producer:  co_await ch.send(i);     // suspends while 16 values wait: backpressure
//     //            ch.close();              // no more values
//     // consumer:  while (auto v = co_await ch.receive()) use(*v);   // ends after close
//     // a plain thread:  ch.blocking_send(i);   auto v = ch.blocking_receive();
//
// Contract
// - Thread-safe: producers and consumers may be coroutines on any loops (shards of a
//   runtime, loops on threads of their own) and plain threads (blocking_send,
//   blocking_receive, try_*). A suspended coroutine is always resumed on its own loop
//   (detail/sync_waiter.hpp has the model and the race arguments). The channel must
//   outlive every operation on it; destroying it with waiters is a bug.
// - capacity() values are buffered; a send that finds the buffer full suspends until a
//   receive makes room. Capacity 0 is a rendezvous: each send waits for its receiver.
// - Order: values are received in the order their sends completed or, for suspended
//   senders, started (waiting senders and receivers are FIFO); with several producers,
//   each producer's values keep its own order. A value handed over is never lost, even
//   when the waiter's cancellation (from any thread) races with the hand-over.
// - close(): later sends throw channel_closed, and so do the sends suspended at that
//   moment (their values are not delivered). Buffered values can still be received;
//   receive() returns an empty optional once the channel is closed and drained.
// - Waiting honours the coroutine's stop token: a cancelled send() throws
//   operation_cancelled and delivers nothing; a cancelled receive() throws
//   operation_cancelled and takes nothing. Operations that complete at once never
//   suspend and ignore the token.
// - Cost: one uncontended spin_lock round (an atomic exchange, a release store) per
//   operation; a hand-over to a coroutine of another loop adds one loop::post. No
//   allocation per operation: the buffer is allocated once, waiters live in frames.

#include <coroutine>
#include <cstddef>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "detail/sync_waiter.hpp"

namespace corio {

// send() on a closed channel (or broadcast).
class channel_closed : public std::runtime_error {
 public:
  explicit channel_closed(const char* what = "channel send: the channel is closed") : std::runtime_error(what) {}
};

template <class T>
class channel {
  // What a waiting sender or receiver exposes to the party that completes it.
  struct send_slot {
    T value;
    bool rejected = false;  // closed before its value was taken
  };
  using receive_slot = std::optional<T>;

 public:
  explicit channel(std::size_t capacity) : capacity_(capacity), buffer_(capacity) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  class [[nodiscard]] send_awaiter : detail::sync_wait_base {
   public:
    send_awaiter(channel& ch, T value) : ch_(ch), slot_{std::move(value)} { w_.context = &slot_; }
    bool await_ready() {
      return detail::with_lock(ch_.lock_, [this](detail::wake_batch& wakes) { return ch_.start_send(slot_, wakes); });
    }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, ch_.lock_, ch_.senders_,
                        [this](detail::wake_batch& wakes) { return ch_.start_send(slot_, wakes); });
    }
    void await_resume() {
      finish("channel send");
      if (slot_.rejected) throw channel_closed();
    }

   private:
    channel& ch_;
    send_slot slot_;
  };

  class [[nodiscard]] receive_awaiter : detail::sync_wait_base {
   public:
    explicit receive_awaiter(channel& ch) noexcept : ch_(ch) { w_.context = &slot_; }
    bool await_ready() {
      return detail::with_lock(ch_.lock_, [this](detail::wake_batch& wakes) { return ch_.start_receive(slot_, wakes); });
    }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, ch_.lock_, ch_.receivers_,
                        [this](detail::wake_batch& wakes) { return ch_.start_receive(slot_, wakes); });
    }
    std::optional<T> await_resume() {
      finish("channel receive");
      return std::move(slot_);
    }

   private:
    channel& ch_;
    receive_slot slot_;
  };

  // co_await: delivers `value`, waiting while the buffer is full. Throws channel_closed.
  send_awaiter send(T value) { return send_awaiter(*this, std::move(value)); }
  // co_await: the next value, waiting while there is none; empty once closed and drained.
  receive_awaiter receive() noexcept { return receive_awaiter(*this); }

  // From a plain thread (not a loop's: std::logic_error): send / receive that block the
  // thread instead of suspending a coroutine. Not cancellable.
  void blocking_send(T value) {
    send_slot slot{std::move(value)};
    detail::sync_waiter w;
    w.context = &slot;
    detail::block_on("channel blocking_send", lock_, senders_, w,
                     [&](detail::wake_batch& wakes) { return start_send(slot, wakes); });
    if (slot.rejected) throw channel_closed();
  }
  std::optional<T> blocking_receive() {
    receive_slot slot;
    detail::sync_waiter w;
    w.context = &slot;
    detail::block_on("channel blocking_receive", lock_, receivers_, w,
                     [&](detail::wake_batch& wakes) { return start_receive(slot, wakes); });
    return slot;
  }

  // Delivers `value` if that needs no wait; false (and `value` untouched) when the buffer
  // is full or the channel closed.
  template <class U>
  bool try_send(U&& value) {
    return detail::with_lock(lock_, [&](detail::wake_batch& wakes) {
      return !closed_ && offer(std::forward<U>(value), wakes);
    });
  }
  // A value if one is ready now.
  std::optional<T> try_receive() {
    return detail::with_lock(lock_, [this](detail::wake_batch& wakes) { return take(wakes); });
  }

  // Ends the stream; see the contract. Closing twice is harmless.
  void close() noexcept {
    detail::with_lock(lock_, [this](detail::wake_batch& wakes) {
      closed_ = true;
      while (detail::sync_waiter* w = receivers_.pop_front()) wakes.grant(w);  // no value
      while (detail::sync_waiter* w = senders_.pop_front()) {
        slot_of<send_slot>(w).rejected = true;
        wakes.grant(w);
      }
    });
  }

  // Snapshots: from another thread, stale as soon as they return.
  bool closed() const noexcept { return locked_read([this] { return closed_; }); }
  std::size_t size() const noexcept { return locked_read([this] { return size_; }); }
  std::size_t capacity() const noexcept { return capacity_; }
  bool empty() const noexcept { return size() == 0; }
  bool full() const noexcept { return size() == capacity_; }

 private:
  template <class Slot>
  static Slot& slot_of(detail::sync_waiter* w) noexcept {
    return *static_cast<Slot*>(w->context);
  }
  template <class F>
  auto locked_read(F f) const noexcept {
    std::lock_guard guard(lock_);
    return f();
  }

  // The rest runs under lock_.
  bool start_send(send_slot& slot, detail::wake_batch& wakes) {
    if (closed_) {
      slot.rejected = true;
      return true;
    }
    return offer(std::move(slot.value), wakes);  // moved from only if taken
  }
  bool start_receive(receive_slot& slot, detail::wake_batch& wakes) {
    slot = take(wakes);
    return slot.has_value() || closed_;
  }
  std::optional<T> take(detail::wake_batch& wakes) {
    std::optional<T> v;
    if (size_ > 0) {
      v = std::move(*buffer_[head_]);
      buffer_[head_].reset();
      head_ = (head_ + 1) % capacity_;
      --size_;
      // Room again: the oldest waiting sender's value enters the buffer.
      if (detail::sync_waiter* w = senders_.pop_front()) {
        push(std::move(slot_of<send_slot>(w).value));
        wakes.grant(w);
      }
    } else if (detail::sync_waiter* w = senders_.pop_front()) {
      v = std::move(slot_of<send_slot>(w).value);  // capacity 0: straight from the sender
      wakes.grant(w);
    }
    return v;
  }
  // Hands `value` to the oldest waiting receiver or buffers it; false if neither can
  // take it now. A waiting receiver implies an empty buffer, so order is kept.
  template <class U>
  bool offer(U&& value, detail::wake_batch& wakes) {
    if (detail::sync_waiter* w = receivers_.pop_front()) {
      slot_of<receive_slot>(w).emplace(std::forward<U>(value));
      wakes.grant(w);
      return true;
    }
    if (size_ == capacity_) return false;
    push(std::forward<U>(value));
    return true;
  }
  template <class U>
  void push(U&& value) {
    buffer_[(head_ + size_) % capacity_].emplace(std::forward<U>(value));
    ++size_;
  }

  mutable detail::spin_lock lock_;  // guards everything below
  std::size_t capacity_;
  std::vector<std::optional<T>> buffer_;  // a ring: size_ values from head_
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  bool closed_ = false;
  detail::wait_list senders_;
  detail::wait_list receivers_;
};

}  // namespace corio
