#pragma once
// dist::task_pool: submit named functions to workers on any host, get futures back.
//
//     corio::dist::manager m(corio::redis::options("10.0.0.5:6379").password(pw));
//     corio::dist::task_pool pool(m, "images");
//     corio::dist::remote_future<int> f = pool.submit<int>("square", 7);
//     int v = f.get();                       // 49, computed by a dist::worker somewhere
//     // on a loop: auto f = co_await pool.async_submit<int>("square", 7); co_await f.async_get();
//
// Functions cross machines by name, never by address: workers register them
// (worker.hpp). The arguments travel as std::tuple<std::decay_t<A>...> through corio's
// codec and must match the worker's parameter types exactly (`submit<int>("square", 7)`
// and `define("square", [](int x) { return x * x; })`); R is the function's result type.
//
// What a future can end in:
// - the value (get, async_get);
// - corio::remote_error: the function threw (type name and message of the exception), or
//   the worker has no function of that name, or the arguments did not decode;
// - dist::dead_letter: the task killed its worker max_deliveries times (worker_options) and
//   was moved to the dead-letter stream {pool}:dead;
// - redis::auth_error, redis::unexpected_reply: the pool could not collect its results
//   (refused credentials; a reading of the results stream that is not Redis' answer, such
//   as entry ids that do not advance). Every future waiting then fails with it; the next
//   submit starts collecting afresh;
// - redis::server_error with code() WRONGTYPE: the pool's results stream was overwritten
//   with another type (a foreign write): what it held is gone and workers drop the
//   results sent there (stats()["undeliverable"]), so every future waiting fails.
// Delivery is at least once with leases and the result is recorded exactly once
// (detail/pool_protocol.hpp): a worker killed mid-task loses nothing (another takes the
// task over after the lease), and a stalled worker that wakes late adds no second result.
// remote_future::deliveries() says how many deliveries the task took.
//
// Who may touch it: one loop, or only the blocking calls (submit, get, wait_for, which run
// the manager's private loop). The pool collects its results on that loop with a reader
// of its own results stream ({pool}:results:<this manager's consumer name>). On a loop of
// the caller's, `co_await pool.async_close()` before that loop ends.

#include <chrono>
#include <cstdint>
#include <exception>
#include <span>
#include <map>
#include <optional>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "../coro/when_any.hpp"
#include "../ipc/codec.hpp"
#include "../ipc/remote_call.hpp"
#include "../runtime/event.hpp"
#include "../runtime/timer.hpp"
#include "detail/manager_core.hpp"
#include "detail/pool_protocol.hpp"
#include "manager.hpp"

namespace corio::dist {

// The task killed its worker too many times and went to the dead-letter stream.
class dead_letter : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

struct remote_result {
  event done;
  std::string status;  // ok | error | dead
  std::string payload;
  std::int64_t deliveries = 0;
  std::exception_ptr failure;  // the pool could not collect it (Redis refused or vanished)
};
task<void> wait_result(std::shared_ptr<remote_result> r);

// The untyped submitter: XADD, and one collector per pool reading its results stream (and
// trimming what it read).
class pool_submitter : public std::enable_shared_from_this<pool_submitter> {
 public:
  ~pool_submitter();
  pool_submitter(std::shared_ptr<manager_core> m, const std::string& pool);
  task<std::shared_ptr<remote_result>> submit(std::string fn, std::vector<std::byte> args);
  task<std::map<std::string, std::int64_t>> stats();
  manager_core& manager() noexcept { return *m_; }
  // Ends the collector: at once on the loop it runs on, else at that loop's next turn.
  // With the blocking API the collector runs on the manager's private loop and holds this
  // object, which holds the manager: stop_and_wait() runs that loop until the collector has
  // let go, or that cycle would keep both alive.
  void stop_and_wait();
  // Ends the collector and waits for it, on the loop it runs on.
  static task<void> close(std::shared_ptr<pool_submitter> self);

 private:
  static task<void> collect(std::shared_ptr<pool_submitter> self);
  // Hands the results of one entry of the results stream to their futures.
  void deliver(const resp::reply& fields);
  void begin_stop() noexcept;
  void fail_waiting(std::exception_ptr e);

  std::shared_ptr<manager_core> m_;
  pool_keys keys_;
  std::string results_;
  std::string who_;  // for messages: corio::dist::task_pool "P"
  std::unordered_map<std::string, std::shared_ptr<remote_result>> waiting_;
  bool collecting_ = false;
  bool stopping_ = false;
  bool reading_ = false;  // the collector waits in its blocking read (else it trims)
  loop* collector_loop_ = nullptr;
  std::optional<redis::client> collector_client_;  // the collector's own connection
  event collector_done_;
};

// Throws what the result says, or returns its payload's bytes.
std::span<const std::byte> result_bytes(const remote_result& r);

}  // namespace detail

template <class R>
class remote_future {
 public:
  remote_future(std::shared_ptr<detail::pool_submitter> p, std::shared_ptr<detail::remote_result> r)
      : p_(std::move(p)), r_(std::move(r)) {}

  // Blocks (the manager's private loop) until the result is there.
  R get() { return p_->manager().run_blocking("remote_future::get", async_get()); }
  // Blocks at most d; true when the result is there.
  bool wait_for(std::chrono::nanoseconds d) {
    if (r_->done.is_set()) return true;
    return p_->manager().run_blocking("remote_future::wait_for", wait_some(r_, d));
  }
  [[nodiscard]] task<R> async_get() { return value_of(r_); }
  bool ready() const noexcept { return r_->done.is_set(); }
  // How many times the task was delivered to a worker (1 unless one died or stalled).
  std::int64_t deliveries() const noexcept { return r_->deliveries; }

 private:
  static task<R> value_of(std::shared_ptr<detail::remote_result> r) {
    co_await r->done.wait();
    const auto bytes = detail::result_bytes(*r);
    if constexpr (!std::is_void_v<R>) co_return corio::decode<R>(bytes);
  }
  static task<bool> wait_some(std::shared_ptr<detail::remote_result> r, std::chrono::nanoseconds d);

  std::shared_ptr<detail::pool_submitter> p_;
  std::shared_ptr<detail::remote_result> r_;
};

class task_pool {
 public:
  explicit task_pool(manager& m, const std::string& name = "pool")
      : p_(std::make_shared<detail::pool_submitter>(m.core(), name)) {}
  // Futures not yet resolved stay unresolved: get them first. With the blocking API this
  // is all; a pool used on a loop of the caller's must be closed there first (async_close).
  ~task_pool() { p_->stop_and_wait(); }

  // On the caller's loop, before the loop ends: stops collecting results and waits until
  // the collector (a coroutine on that loop) has ended, so nothing of the pool outlives it.
  [[nodiscard]] task<void> async_close() { return detail::pool_submitter::close(p_); }
  task_pool(const task_pool&) = delete;
  task_pool& operator=(const task_pool&) = delete;

  // Queues fn(args...) for a worker (blocking: one round trip to Redis).
  template <class R, class... A>
  remote_future<R> submit(const std::string& fn, const A&... args) {
    return p_->manager().run_blocking("task_pool::submit", async_submit<R>(fn, args...));
  }
  template <class R, class... A>
  [[nodiscard]] task<remote_future<R>> async_submit(const std::string& fn, const A&... args) {
    return submit_encoded<R>(p_, fn, corio::encode(std::tuple<std::decay_t<A>...>(args...)));
  }
  // The pool's counters in Redis: written (results recorded), duplicates (late results
  // dropped), undeliverable (results dropped: their reply key held no stream, a foreign
  // write), dead (tasks moved to the dead letters).
  std::map<std::string, std::int64_t> stats() { return p_->manager().run_blocking("task_pool::stats", p_->stats()); }

 private:
  template <class R>
  static task<remote_future<R>> submit_encoded(std::shared_ptr<detail::pool_submitter> p, std::string fn,
                                               std::vector<std::byte> args) {
    auto r = co_await p->submit(std::move(fn), std::move(args));
    co_return remote_future<R>(std::move(p), std::move(r));
  }

  std::shared_ptr<detail::pool_submitter> p_;
};

template <class R>
task<bool> remote_future<R>::wait_some(std::shared_ptr<detail::remote_result> r, std::chrono::nanoseconds d) {
  co_await when_any(detail::wait_result(r), sleep_for(d));
  co_return r->done.is_set();
}

}  // namespace corio::dist
