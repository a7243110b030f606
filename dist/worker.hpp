#pragma once
// dist::worker: serves a dist::task_pool's tasks by name, on any host.
//
//     corio::dist::manager m(corio::redis::options("10.0.0.5:6379").password(pw));
//     corio::dist::worker w(m, "images", {.concurrency = 8, .lease = std::chrono::seconds(30)});
//     w.define("square", [](int x) { return x * x; });            // runs on a thread pool
//     w.define("fetch", [](std::string url) -> corio::task<std::string> { ... });  // on the loop
//     w.run();                                                    // until the stop token
//
// Functions: a plain function runs on corio's thread pool (offload), so the loop keeps
// renewing leases while it computes; a function returning task<R> runs on the worker's
// loop. Arguments are decoded as std::tuple of the parameter types (decayed), the result
// encoded with corio's codec; an exception becomes the submitter's remote_error.
//
// Serving (detail/pool_protocol.hpp has the protocol): up to `concurrency` tasks at a time.
// Each fetch takes over one task whose lease ran out (its worker died or stalled), if any,
// and reads as many new tasks as there are free slots, in one write (a task taken over
// beyond the free slots waits for one, its lease renewed); with nothing to do the worker
// waits for new tasks on a connection of its own, at most lease/2 at a time. The results
// finished in one loop turn are recorded by one script; one script every lease/3 renews
// the leases of all the tasks in hand. A task
// taken over for the (max_deliveries+1)-th time goes to the dead letters instead of
// running again. N worker processes per host: start N programs (or fork after defining,
// before run), each with its own manager.
//
// Who may touch it: one thread; run() blocks it (the manager's private loop), async_run()
// serves on the caller's loop until its stop token is requested. Either waits for the
// tasks in hand to finish before returning. Either throws, after the tasks in hand, what
// no retry mends: redis::auth_error (refused credentials or permissions) and a fetch whose
// reply is not its command's (redis::unexpected_reply, redis::cluster_error).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <stop_token>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../ipc/codec.hpp"
#include "../runtime/thread_pool.hpp"
#include "detail/manager_core.hpp"
#include "detail/pool_protocol.hpp"
#include "manager.hpp"

namespace corio::dist {

struct worker_options {
  unsigned concurrency = 4;                   // tasks at a time in this process
  std::chrono::milliseconds lease{30000};     // a silent worker's task is taken over after this
  unsigned max_deliveries = 3;                // then a task that kills its worker is dead-lettered
};

struct worker_stats {
  std::uint64_t tasks = 0;          // tasks run to their end here
  std::uint64_t results = 0;        // results recorded
  std::uint64_t duplicates = 0;     // results dropped: the task was taken over and done elsewhere
  std::uint64_t undeliverable = 0;  // results dropped: the reply key held no stream (a warning each)
  std::uint64_t leases_lost = 0;    // renewals refused: the task had been taken over
  std::uint64_t dead_lettered = 0;
};

namespace detail {

// The result and the (decayed) parameter types of a lambda, functor or function pointer.
template <class R, class... A>
struct fn_signature {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};
template <class F>
struct fn_traits : fn_traits<decltype(&F::operator())> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...) const> : fn_signature<R, A...> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...)> : fn_signature<R, A...> {};
template <class R, class... A>
struct fn_traits<R (*)(A...)> : fn_signature<R, A...> {};

template <class T>
struct is_task : std::false_type {};
template <class T>
struct is_task<task<T>> : std::true_type {};

inline std::string as_string(const std::vector<std::byte>& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// Decodes the arguments, calls f (on the thread pool, or awaits it if it is a coroutine),
// returns the encoded result.
template <class F>
task<std::string> invoke_named(std::shared_ptr<F> f, std::string args) {
  using traits = fn_traits<F>;
  using R = typename traits::result;
  auto tuple = corio::decode<typename traits::args>(std::as_bytes(std::span(args.data(), args.size())));
  if constexpr (is_task<R>::value) {
    using V = typename R::value_type;
    if constexpr (std::is_void_v<V>) {
      co_await std::apply(*f, std::move(tuple));
      co_return std::string();
    } else {
      V v = co_await std::apply(*f, std::move(tuple));
      co_return as_string(corio::encode(v));
    }
  } else if constexpr (std::is_void_v<R>) {
    co_await offload([&] { std::apply(*f, std::move(tuple)); });
    co_return std::string();
  } else {
    R v = co_await offload([&] { return std::apply(*f, std::move(tuple)); });
    co_return as_string(corio::encode(v));
  }
}

}  // namespace detail

class worker {
 public:
  worker(manager& m, const std::string& pool = "pool", worker_options o = {})
      : m_(m.core()), keys_(pool), options_(o) {}

  // Registers fn under `name` (replacing one of that name).
  template <class F>
  worker& define(const std::string& name, F fn) {
    fns_[name] = [f = std::make_shared<F>(std::move(fn))](std::string args) {
      return detail::invoke_named<F>(f, std::move(args));
    };
    return *this;
  }

  // Serves until `stop` is requested (blocking; the manager's private loop).
  void run(std::stop_token stop = {}) { m_->run_blocking("worker::run", async_run(), std::move(stop)); }
  // Serves on the caller's loop until the coroutine's stop token is requested.
  [[nodiscard]] task<void> async_run();

  const worker_stats& stats() const noexcept { return stats_; }

 private:
  // Runs t and records its result. Throws only operation_cancelled (the worker stops): a
  // failure to record is a warning (the task comes back after its lease), a reply of the
  // wrong shape is kept in ended_by_ for async_run, so one task never stops the others'
  // task group.
  task<void> run_one(detail::pool_task t);
  task<void> run_and_record(detail::pool_task t);
  task<void> renew_leases();
  struct completion_batch;
  // Records r with the other results of this loop turn; what became of it.
  task<detail::pool_outcome> complete(detail::pool_result r);
  task<void> flush_completions();

  std::shared_ptr<detail::manager_core> m_;
  detail::pool_keys keys_;
  worker_options options_;
  std::map<std::string, std::function<task<std::string>(std::string)>> fns_;
  worker_stats stats_;
  std::set<std::string> running_;  // stream entries of the tasks in hand
  std::shared_ptr<completion_batch> batch_;  // results waiting for this turn's flush
  std::exception_ptr ended_by_;  // a task's lying reply (unexpected_reply): ends async_run
};

}  // namespace corio::dist
