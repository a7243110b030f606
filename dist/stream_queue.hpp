#pragma once
// The untyped queue behind dist::queue<T>: encoded values in a Redis stream, one
// consumer group. Awaitable operations only; dist::queue<T> adds the codec and the
// blocking forms.
//
// Keys: "{name}:queue", the stream (one field "v" per entry). The hash tag {name} keeps
// every key of one queue in one Redis Cluster slot. The consumer group "corio" is created
// at the first put or get from id 0 (values put before any consumer came are delivered).
//
// Taking a value is at least once: a Lua script hands out one entry, stealing first an
// entry whose taker has not acknowledged it within the lease (XAUTOCLAIM), else the next
// new one (XREADGROUP); the taker then acknowledges and deletes it (XACK + XDEL, one
// script, idempotent). A taker killed in between leaves the entry pending; after the
// lease the next get takes it. Acknowledged entries are deleted, so the stream holds only
// what is queued or in flight (no memory growth: redis#6941). The scripts run by SHA1
// (detail/lua_script.hpp).
//
// Waiting: when the script finds nothing it returns the newest entry's id; the waiter then
// blocks in XREAD on its loop's blocking client until an entry newer than that arrives, at
// most a second at a time (so a lease that expires is noticed and a stop request is never
// far), and runs the script again.
//
// A consumer group that vanished (Redis restarted without persistence) is re-created from
// id 0 by the script and reported once through the manager's warning, never spun on.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "../coro/task.hpp"

namespace corio::dist {
struct queue_options;
namespace detail {

class manager_core;

// The largest value a queue takes: Redis' proto-max-bulk-len (512 MiB) is the limit of
// one bulk string, and a value travels as one.
inline constexpr std::size_t max_value_bytes = 512u * 1024 * 1024;

class stream_queue {
 public:
  using timeout_type = std::optional<std::chrono::nanoseconds>;

  stream_queue(std::shared_ptr<manager_core> m, std::string name, std::size_t maxsize,
               std::chrono::milliseconds lease);

  // Throws std::length_error above max_value_bytes; queue_full when bounded and full
  // (block = false, or the timeout passed).
  [[nodiscard]] task<void> put(std::span<const std::byte> value, bool block, timeout_type timeout);
  // Nothing when no value came (block = false, or the timeout passed).
  [[nodiscard]] task<std::optional<std::string>> get(bool block, timeout_type timeout);
  // Values queued and not yet taken.
  [[nodiscard]] task<std::size_t> size();
  // Drops every value, queued or in flight.
  [[nodiscard]] task<void> clear();

  const std::string& name() const noexcept { return name_; }
  void check_size(std::size_t bytes) const;

 private:
  task<void> ensure_group();
  std::string who() const;  // for messages: corio::dist::queue "NAME"
  // One attempt: the value, or the id to wait after.
  struct taken {
    std::optional<std::string> value;
    std::string wait_after;
  };
  task<taken> take_once();

  std::shared_ptr<manager_core> m_;
  std::string name_;
  std::string key_;
  std::size_t maxsize_;
  std::string lease_ms_;
  bool group_ready_ = false;
};

}  // namespace detail
}  // namespace corio::dist
