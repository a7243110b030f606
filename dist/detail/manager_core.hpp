#pragma once
// What a dist::manager and its queues share: the server's options, this process's consumer
// name, and per event loop the two clients (commands, blocking reads). See manager.hpp.

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "../../coro/task.hpp"
#include "../../runtime/event.hpp"
#include "../../runtime/loop.hpp"
#include "../redis_client.hpp"

namespace corio::dist {

struct queue_options {
  // 0: unbounded. Otherwise put waits (try_put fails) while the queue holds this many.
  std::size_t maxsize = 0;
  // A value taken by a get whose reply never arrived (the connection died, the process
  // was killed between reading and acknowledging) is handed out again after this.
  std::chrono::milliseconds lease{60000};
};

namespace detail {

// What the manager and its queues share.
class manager_core {
 public:
  explicit manager_core(redis::options o);
  ~manager_core();

  // The clients of the current loop, connected (and the server checked) at first use.
  task<redis::client*> commands();
  task<redis::client*> blocking();

  // Runs `t` to its end on the manager's private loop; `what` names the caller for the
  // error raised on a loop thread.
  template <class T>
  T run_blocking(const char* what, task<T> t, std::stop_token token = {}) {
    check_not_on_loop(what);
    if (!own_) own_ = std::make_unique<loop>();
    return own_->run(std::move(t), std::move(token));
  }

  // Is `lp` the private loop of the blocking calls?
  bool owns(const loop* lp) const noexcept { return lp != nullptr && lp == own_.get(); }

  void warn(const std::string& text) const { on_warning_(text); }
  const std::string& consumer() const noexcept { return consumer_; }
  // A task id no other submitter, of any process or time, makes.
  std::string next_task_id() { return consumer_ + ":" + std::to_string(tasks_++); }
  const std::string& where() const noexcept { return where_; }
  const redis::options& options() const noexcept { return options_; }
  // What the clients of every loop did, summed.
  redis::client_stats stats() const noexcept;

  std::function<void(const std::string&)> on_warning_;

 private:
  // One connection attempt that every coroutine asking for the client meanwhile awaits:
  // 2,000 submits started in one loop turn open one connection, not 2,000 (which, on a
  // busy machine, overran the connect timeout of a redis-server just started).
  struct connecting {
    event done;
    std::exception_ptr failure;
  };
  struct per_loop {
    loop* owner;
    std::optional<redis::client> commands;
    std::optional<redis::client> blocking;
    std::shared_ptr<connecting> commands_attempt, blocking_attempt;
  };
  per_loop& here();
  // The client in `slot`, connected by the first caller while the others wait for it.
  task<redis::client*> connected(std::optional<redis::client> per_loop::*slot,
                                 std::shared_ptr<connecting> per_loop::*attempt, bool check);
  task<void> check_server(redis::client& c);
  static void check_not_on_loop(const char* what);

  redis::options options_;
  std::string consumer_;  // this manager in consumer groups: host:pid:random
  std::uint64_t tasks_ = 0;
  std::string where_;
  bool checked_ = false;
  // Declared before the clients, so destroyed after them: the clients close first (their
  // readers then see a closed connection), then the loop drains their operations.
  std::unique_ptr<loop> own_;
  std::vector<std::unique_ptr<per_loop>> loops_;
};

}  // namespace detail

}  // namespace corio::dist
