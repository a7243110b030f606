#pragma once
// dist::queue<T>: the vocabulary of corio::queue<T> (ipc/queue.hpp) for a queue that lives
// in Redis, so processes on any host reach it (the seeds' manager queues). Made by
// dist::manager::queue<T>(name); a cheap handle (copies share one queue).
//
//     auto q = m.queue<std::string>("task_queue");
//     q.put("ImageUrl_0");                          // outside a loop: blocks
//     std::string v = q.get(true, std::chrono::seconds(10));   // queue_empty after 10 s
//     co_await q.async_put(v);                      // inside a loop: awaitables
//
// Contract
// - put(v) encodes v with corio's codec in the caller (encode_error there); a value that
//   encodes to more than 512 MiB throws std::length_error and nothing is queued.
// - get(block, timeout): the oldest value not taken; queue_empty when none came (block =
//   false, or the timeout passed). Each value goes to one get, at least once: a getter
//   killed between taking a value and acknowledging it (one round trip later) leaves it
//   to the next get after the lease (queue_options::lease, 60 s). decode_error for bytes
//   that are not a T (the value is consumed).
// - put on a bounded queue (queue_options::maxsize) waits while it is full, polling;
//   queue_full when block = false or the timeout passed.
// - size() and empty() count values queued and not taken; approximate while others work.
//   clear() drops every value (queued or in flight).
// - Order: values are taken in the order Redis received the puts.
// - Values cross machines as corio's codec writes them: trivially copyable types as their
//   bytes, so the hosts must agree on byte order and layout (any x86-64 / arm64 Linux).
// - The blocking calls run the manager's private loop and throw std::logic_error on a
//   loop thread; the async_ forms run on the caller's loop and honour its stop token.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "../ipc/codec.hpp"
#include "../ipc/queue.hpp"
#include "detail/manager_core.hpp"
#include "stream_queue.hpp"

namespace corio::dist {

template <class T>
class queue {
 public:
  using timeout_type = std::optional<std::chrono::nanoseconds>;

  queue(std::shared_ptr<detail::manager_core> m, const std::string& name, const queue_options& o)
      : m_(m), q_(std::make_shared<detail::stream_queue>(std::move(m), name, o.maxsize, o.lease)) {}

  void put(const T& v, bool block = true, timeout_type timeout = {}) {
    m_->run_blocking("queue::put", async_put(v, block, timeout));
  }
  bool try_put(const T& v) {
    try {
      put(v, false);
      return true;
    } catch (const queue_full&) {
      return false;
    }
  }
  T get(bool block = true, timeout_type timeout = {}) { return m_->run_blocking("queue::get", async_get(block, timeout)); }
  std::optional<T> try_get() {
    try {
      return get(false);
    } catch (const queue_empty&) {
      return std::nullopt;
    }
  }
  std::size_t size() { return m_->run_blocking("queue::size", q_->size()); }
  bool empty() { return size() == 0; }
  // Drops every value, queued or taken and not yet acknowledged (a fresh start for a
  // queue left over from an earlier run).
  void clear() { m_->run_blocking("queue::clear", q_->clear()); }

  // Awaitable forms, for a coroutine on a corio loop. The value is encoded before the
  // task starts (an encoding error throws here, in the caller).
  [[nodiscard]] task<void> async_put(const T& v, bool block = true, timeout_type timeout = {}) {
    std::vector<std::byte> bytes = corio::encode(v);
    q_->check_size(bytes.size());
    return put_bytes(q_, std::move(bytes), block, timeout);
  }
  [[nodiscard]] task<T> async_get(bool block = true, timeout_type timeout = {}) { return get_value(q_, block, timeout); }
  [[nodiscard]] task<std::size_t> async_size() { return q_->size(); }
  [[nodiscard]] task<void> async_clear() { return q_->clear(); }

  const std::string& name() const noexcept { return q_->name(); }

 private:
  static task<void> put_bytes(std::shared_ptr<detail::stream_queue> q, std::vector<std::byte> bytes, bool block,
                              timeout_type timeout) {
    co_await q->put(bytes, block, timeout);
  }
  static task<T> get_value(std::shared_ptr<detail::stream_queue> q, bool block, timeout_type timeout) {
    std::optional<std::string> v = co_await q->get(block, timeout);
    if (!v)
      throw queue_empty("corio::dist::queue \"" + q->name() + "\" get: " +
                        (block ? std::string("no value within the timeout") : std::string("empty")));
    co_return corio::decode<T>(std::as_bytes(std::span(v->data(), v->size())));
  }

  std::shared_ptr<detail::manager_core> m_;
  std::shared_ptr<detail::stream_queue> q_;
};

}  // namespace corio::dist
