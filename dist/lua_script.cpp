#include "detail/lua_script.hpp"

#include <vector>

#include "detail/reply_check.hpp"
#include "detail/sha1.hpp"

namespace corio::dist::detail {

lua_script::lua_script(std::string body) : body_(std::move(body)), sha_(sha1_hex(body_)) {}

bool lua_script::loaded() const {
  const std::lock_guard lock(mutex_);
  return loaded_;
}

task<resp::reply> lua_script::run(redis::client& c, std::span<const std::string_view> args,
                                  redis::command_options o) const {
  if (!loaded()) {
    const resp::reply r =
        co_await c.command(redis::command_options{.idempotent = redis::idempotency::yes}, "SCRIPT", "LOAD", body_);
    // EVALSHA is sent with the SHA1 computed here: an answer that differs is not Redis'.
    if (!is_bulk(r) || r.str != sha_)
      unexpected("corio::dist", "SCRIPT LOAD", describe(r) + ", not the script's SHA1 " + sha_);
    const std::lock_guard lock(mutex_);
    loaded_ = true;
  }
  std::vector<std::string_view> argv = {"EVALSHA", sha_};
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
