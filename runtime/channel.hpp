#pragma once
// channel<T>: a bounded async FIFO between coroutines of one loop (asyncio.Queue with a
// maxsize, a Go channel).
//
//     corio::channel<int> ch(16);
//     // producer:  co_await ch.send(i);     // suspends while 16 values wait: backpressure
//     //            ch.close();              // no more values
//     // consumer:  while (auto v = co_await ch.receive()) use(*v);   // ends after close
//
// Contract
// - Loop-local, not thread-safe: every call is made on the thread of one loop; only stop
//   requests may come from any thread. Destroying a channel with waiters is a bug.
// - capacity() values are buffered; a send that finds the buffer full suspends until a
//   receive makes room. Capacity 0 is a rendezvous: each send waits for its receiver.
// - Order: values are received in the order their sends completed or, for suspended
//   senders, started (waiting senders and receivers are FIFO). A value handed over is
//   never lost, even when the waiter's cancellation races with the hand-over.
// - close(): later sends throw channel_closed, and so do the sends suspended at that
//   moment (their values are not delivered). Buffered values can still be received;
//   receive() returns an empty optional once the channel is closed and drained.
// - Waiting honours the coroutine's stop token: a cancelled send() throws
//   operation_cancelled and delivers nothing; a cancelled receive() throws
//   operation_cancelled and takes nothing. Operations that complete at once never
//   suspend and ignore the token.
// - No allocation per operation: the buffer is allocated once, waiters live in frames.

#include <coroutine>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "detail/sync_waiter.hpp"

namespace corio {

// send() on a closed channel.
class channel_closed : public std::runtime_error {
 public:
  channel_closed() : std::runtime_error("channel send: the channel is closed") {}
};

template <class T>
class channel {
 public:
  explicit channel(std::size_t capacity) : capacity_(capacity), buffer_(capacity) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  class [[nodiscard]] send_awaiter : detail::sync_wait_base {
   public:
    send_awaiter(channel& ch, T value) : ch_(ch), value_(std::move(value)) { w_.context = this; }
    bool await_ready() {
      if (ch_.closed_) {
        rejected_ = true;
        return true;
      }
      return ch_.offer(std::move(value_));  // moved from only if taken
    }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, ch_.senders_);
    }
    void await_resume() {
      finish("channel send");
      if (rejected_) throw channel_closed();
    }

   private:
    friend channel;
    channel& ch_;
    T value_;
    bool rejected_ = false;
  };

  class [[nodiscard]] receive_awaiter : detail::sync_wait_base {
   public:
    explicit receive_awaiter(channel& ch) noexcept : ch_(ch) { w_.context = this; }
    bool await_ready() {
      value_ = ch_.try_receive();
      return value_.has_value() || ch_.closed_;
    }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      return suspend_on(h, ch_.receivers_);
    }
    std::optional<T> await_resume() {
      finish("channel receive");
      return std::move(value_);
    }

   private:
    friend channel;
    channel& ch_;
    std::optional<T> value_;
  };

  // co_await: delivers `value`, waiting while the buffer is full. Throws channel_closed.
  send_awaiter send(T value) { return send_awaiter(*this, std::move(value)); }
  // co_await: the next value, waiting while there is none; empty once closed and drained.
  receive_awaiter receive() noexcept { return receive_awaiter(*this); }

  // Delivers `value` if that needs no wait; false (and `value` untouched) when the buffer
  // is full or the channel closed.
  template <class U>
  bool try_send(U&& value) {
    if (closed_) return false;
    return offer(std::forward<U>(value));
  }
  // A value if one is ready now.
  std::optional<T> try_receive() {
    std::optional<T> v;
    if (size_ > 0) {
      v = std::move(*buffer_[head_]);
      buffer_[head_].reset();
      head_ = (head_ + 1) % capacity_;
      --size_;
      // Room again: the oldest waiting sender's value enters the buffer.
      if (detail::sync_waiter* w = senders_.pop_front()) {
        push(std::move(sender_of(w).value_));
        detail::grant(w);
      }
    } else if (detail::sync_waiter* w = senders_.pop_front()) {
      v = std::move(sender_of(w).value_);  // capacity 0: straight from the sender
      detail::grant(w);
    }
    return v;
  }

  // Ends the stream; see the contract. Closing twice is harmless.
  void close() noexcept {
    closed_ = true;
    while (detail::sync_waiter* w = receivers_.pop_front()) detail::grant(w);  // no value
    while (detail::sync_waiter* w = senders_.pop_front()) {
      sender_of(w).rejected_ = true;
      detail::grant(w);
    }
  }

  bool closed() const noexcept { return closed_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  bool empty() const noexcept { return size_ == 0; }
  bool full() const noexcept { return size_ == capacity_; }

 private:
  static send_awaiter& sender_of(detail::sync_waiter* w) noexcept {
    return *static_cast<send_awaiter*>(w->context);
  }
  static receive_awaiter& receiver_of(detail::sync_waiter* w) noexcept {
    return *static_cast<receive_awaiter*>(w->context);
  }

  // Hands `value` to the oldest waiting receiver or buffers it; false if neither can
  // take it now. A waiting receiver implies an empty buffer, so order is kept.
  template <class U>
  bool offer(U&& value) {
    if (detail::sync_waiter* w = receivers_.pop_front()) {
      receiver_of(w).value_.emplace(std::forward<U>(value));
      detail::grant(w);
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

  std::size_t capacity_;
  std::vector<std::optional<T>> buffer_;  // a ring: size_ values from head_
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  bool closed_ = false;
  detail::wait_list senders_;
  detail::wait_list receivers_;
};

}  // namespace corio
