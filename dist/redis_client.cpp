#include "redis_client.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <utility>

#include "../coro/when_any.hpp"
#include "../runtime/address.hpp"
#include "../runtime/errors.hpp"
#include "../runtime/timer.hpp"
#include "detail/cluster_router.hpp"
#include "hash_slot.hpp"
#include "resp.hpp"

namespace corio::redis {

using std::chrono::steady_clock;

namespace {

// Redirections followed for one command before giving up: a migration moves a slot once
// (ASK, then MOVED), so more than a few means nodes that disagree for good.
constexpr int max_redirects = 16;

// Commands whose second sending cannot change anything, so a command lost with its
// connection may be sent again: the read-only ones.
bool read_only(std::string_view name, std::span<const std::string_view> argv) {
  static constexpr std::string_view names[] = {
      "GET",    "MGET",   "EXISTS", "TTL",     "PTTL",   "TYPE",  "STRLEN",   "GETRANGE",  "XLEN",
      "XRANGE", "XREVRANGE", "XPENDING", "XINFO", "PING", "ECHO", "INFO",  "DBSIZE",  "HGET",
      "HGETALL", "HMGET", "HLEN",   "HEXISTS", "LRANGE", "LLEN", "LINDEX", "SCARD",   "SMEMBERS",
      "SISMEMBER", "ZRANGE", "ZCARD", "ZSCORE", "KEYS",  "SCAN", "TIME", "ASKING",
  };
  if (std::find(std::begin(names), std::end(names), name) != std::end(names)) return true;
  return (name == "CONFIG" || name == "CLIENT" || name == "CLUSTER") && argv.size() > 1 &&
         (detail::upper_name(argv[1]) == "GET" || detail::upper_name(argv[1]) == "GETNAME" ||
          detail::upper_name(argv[1]) == "ID" || detail::upper_name(argv[1]) == "SLOTS");
}

}  // namespace

client::client(std::shared_ptr<detail::router> r) noexcept : router_(std::move(r)) {}
client::client(client&&) noexcept = default;
client& client::operator=(client&& o) noexcept {
  if (this != &o) {
    close();
    router_ = std::move(o.router_);
  }
  return *this;
}
client::~client() { close(); }

void client::close() noexcept {
  if (router_) router_->close();
}

const std::string& client::address() const noexcept { return router_->where(); }
bool client::cluster() const noexcept { return router_->cluster(); }
client_stats client::stats() const noexcept { return router_->stats(); }

namespace {

task<client> open_client(std::shared_ptr<detail::router> r) {
  co_await r->open();
  co_return client::adopt(std::move(r));
}

}  // namespace

// Not a coroutine: the options are read before this returns, so a temporary the caller
// built inside a co_await expression is never kept (and GCC 12 copies such temporaries
// bitwise into a coroutine frame).
task<client> client::connect(const options& given) {
  options o = given;
  std::vector<endpoint> seeds = parse_seeds(o.address());
  for (const endpoint& ep : seeds) {
    if (o.user().empty()) o.user(ep.user);
    if (o.password().empty()) o.password(ep.password);
    if (o.db() < 0 && ep.db > 0) o.db(ep.db);
  }
  if (o.db() < 0) o.db(0);
  return open_client(std::make_shared<detail::router>(std::move(o), std::move(seeds)));
}

namespace {

task<void> wait_done(std::shared_ptr<detail::pending> p) { co_await p->done.wait(); }

// Sends p where its slot lives, follows redirections, retries what the server did not run
// (-LOADING, -TRYAGAIN, -CLUSTERDOWN) after a backoff.
task<resp::reply> run(std::shared_ptr<detail::router> rt, std::shared_ptr<detail::pending> p, std::optional<int> slot,
                      std::optional<steady_clock::time_point> deadline) {
  auto backoff = rt->opts.backoff_min();
  const auto give_up = steady_clock::now() + rt->opts.reconnect_for();
  std::shared_ptr<detail::connection> c = rt->route(slot);
  bool asking = false;
  int redirects = 0;
  for (;;) {
    // ASKING and the command are queued back to back on one connection, so they go out
    // adjacent: ASKING admits only the next command.
    if (std::exchange(asking, false)) c->enqueue(detail::make_pending(std::array<std::string_view, 1>{"ASKING"}, "ASKING", true));
    c->enqueue(p);
    if (deadline) {
      auto r = co_await when_any(wait_done(p), sleep_until(*deadline));
      if (r.index() == 1) throw timed_out("redis " + c->where + ": no reply to " + p->name + " before its deadline");
    } else {
      co_await p->done.wait();
    }
    if (p->error) {
      if (rt->cluster()) {
        try {
          std::rethrow_exception(p->error);
        } catch (const connection_error&) {
          rt->lost_node(c);
        } catch (...) {
        }
      }
      std::rethrow_exception(p->error);
    }
    resp::reply r = std::move(*p->result);
    if (!r.is_error()) co_return r;
    const std::string code = detail::error_code(r);
    p->rearm();
    if (code == "MOVED" || code == "ASK") {
      const redirect to = parse_redirect(r.str, node_host(c->where));
      if (++redirects > max_redirects)
        throw cluster_error("redis " + c->where + ": " + p->name + " was redirected " + std::to_string(max_redirects) +
                            " times and again (" + r.str.substr(0, 128) +
                            "): the nodes do not agree on who serves slot " + std::to_string(to.slot));
      if (!slot) slot = to.slot;  // a server taken for a single Redis turned out a cluster
      if (to.what == redirect::kind::moved) {
        rt->moved(to);
      } else {
        rt->asked();
        asking = true;
      }
      c = rt->node(to.address);
      continue;  // a redirected command was not run: sent again, idempotent or not
    }
    const auto next_try = steady_clock::now() + backoff;
    const bool not_run = code == "LOADING" || code == "TRYAGAIN" || code == "CLUSTERDOWN";
    if (!not_run || next_try > give_up || (deadline && next_try > *deadline))
      std::rethrow_exception(detail::error_for(r, p->name, c->where));
    // Loading its data, or a slot in migration: the command was not run. Again after a pause.
    co_await sleep_for(backoff);
    backoff = std::min(backoff * 2, rt->opts.backoff_max());
    c = rt->route(slot);
  }
}

}  // namespace

task<resp::reply> client::command_argv(std::span<const std::string_view> argv, command_options o) {
  if (argv.empty()) throw std::invalid_argument("redis::client::command: no command");
  const std::string name = detail::upper_name(argv[0]);
  const bool idempotent =
      o.idempotent == idempotency::yes || (o.idempotent == idempotency::by_name && read_only(name, argv));
  std::optional<int> slot;
  if (router_->cluster()) slot = command_slot(argv);  // cross_slot_error before anything is sent
  return run(router_, detail::make_pending(argv, name, idempotent), slot, o.deadline);
}

}  // namespace corio::redis
