#include "detail/lua_script.hpp"

#include <vector>

namespace corio::dist::detail {

std::string lua_script::sha() const {
  const std::lock_guard lock(mutex_);
  return sha_;
}

task<resp::reply> lua_script::run(redis::client& c, std::span<const std::string_view> args,
                                  redis::command_options o) const {
  std::string sha = this->sha();
  if (sha.empty()) {
    sha = (co_await c.command(redis::command_options{.idempotent = redis::idempotency::yes}, "SCRIPT", "LOAD", body_)).str;
    const std::lock_guard lock(mutex_);
    sha_ = sha;
  }
  std::vector<std::string_view> argv = {"EVALSHA", sha};
  argv.insert(argv.end(), args.begin(), args.end());
  try {
    co_return co_await c.command_argv(argv, o);
  } catch (const redis::server_error& e) {
    if (e.code() != "NOSCRIPT") throw;
  }
  // Not cached there (co_await is not allowed inside the handler).
  argv[0] = "EVAL";
  argv[1] = body_;
  co_return co_await c.command_argv(argv, o);
}

}  // namespace corio::dist::detail
