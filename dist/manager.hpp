#pragma once
// dist::manager: the seeds' BaseManager(address, authkey) on Redis. It names a Redis
// server (and its password), hands out queues that live there, and owns the connections.
//
//     corio::dist::manager m(corio::redis::options("10.0.0.5:6379").password(pw));
//     auto tasks = m.queue<std::string>("task_queue");     // any host with the same name
//     tasks.put("ImageUrl_0");                             // blocking call, outside a loop
//     std::string url = tasks.get(true, std::chrono::seconds(10));
//     // inside a corio loop: co_await tasks.async_put(v); co_await tasks.async_get();
//
// Connections: per event loop that uses the manager, one client for ordinary commands
// (pipelined, shared by the loop's coroutines) and one for blocking reads, made at first
// use. The blocking calls (put, get, size, ...) run a private loop of the manager's; they
// must not be called on a loop thread (std::logic_error says to co_await the async_ form).
//
// At the first connection the manager reads the server's configuration and warns (through
// on_warning, by default a line on stderr) when Redis is set up to lose queued data:
// maxmemory-policy other than noeviction (entries may be evicted), or no persistence at
// all (appendonly no and no save points: a restart empties every queue).
//
// Who may touch it: one thread (a manager per thread otherwise). Loops that used it must
// still exist when it is destroyed. Queues hold the manager's state, not the manager: they
// may outlive it.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "detail/manager_core.hpp"
#include "queue.hpp"

namespace corio::dist {

class manager {
 public:
  explicit manager(redis::options o) : core_(std::make_shared<detail::manager_core>(std::move(o))) {}

  // A queue stored in Redis under `name` (keys "{name}:..."): every manager that names the
  // same server and queue shares it. Connects at first use, not here.
  template <class T>
  dist::queue<T> queue(const std::string& name, queue_options o = {});

  // Where the configuration warnings go (default: a line on stderr).
  manager& on_warning(std::function<void(const std::string&)> f) {
    core_->on_warning_ = std::move(f);
    return *this;
  }
  // Connects now and checks the server (otherwise done at first use); blocking form.
  void connect();
  // What the manager's connections did (commands, writes, reconnects; in a Redis Cluster
  // the MOVED and ASK redirections followed), summed over the loops that used it.
  redis::client_stats stats() const noexcept { return core_->stats(); }

  // The state the manager's queues, task pools and workers share (for dist's own types).
  const std::shared_ptr<detail::manager_core>& core() const noexcept { return core_; }

 private:
  std::shared_ptr<detail::manager_core> core_;
};

template <class T>
dist::queue<T> manager::queue(const std::string& name, queue_options o) {
  return dist::queue<T>(core_, name, o);
}

}  // namespace corio::dist
