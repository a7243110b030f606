#pragma once
// A Lua script run by its SHA1 (EVALSHA): its body crosses the network once per process
// (SCRIPT LOAD at the first call), not with every call, and the server does not hash it
// again each time. A server without it (restarted, SCRIPT FLUSH, another cluster node)
// answers NOSCRIPT, and the call is made again with EVAL, which runs it and caches it
// there. NOSCRIPT means the script did not run: the second send never applies it twice.
// The SHA1 is computed here (detail/sha1.hpp), and SCRIPT LOAD must answer exactly it: any
// other answer is redis::unexpected_reply, and no EVALSHA is sent with it.
//
// Who may touch it: any thread (`loaded_` is guarded by a mutex); a script object usually
// lives for the whole process (a function-local static).

#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "../../coro/task.hpp"
#include "../redis_client.hpp"

namespace corio::dist::detail {

class lua_script {
 public:
  explicit lua_script(std::string body);
  lua_script(const lua_script&) = delete;
  lua_script& operator=(const lua_script&) = delete;

  // `args` is what follows the script in EVAL: numkeys, the keys, the arguments.
  task<resp::reply> run(redis::client& c, std::span<const std::string_view> args, redis::command_options o = {}) const;

 private:
  bool loaded() const;

  std::string body_;
  std::string sha_;  // SHA1 of body_, 40 lowercase hex digits
  mutable std::mutex mutex_;
  mutable bool loaded_ = false;  // SCRIPT LOAD answered sha_ once in this process
};

}  // namespace corio::dist::detail
