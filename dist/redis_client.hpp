#pragma once
// redis::client: a Redis connection on the corio loop, shared by many coroutines.
//
//     using corio::redis::client, corio::redis::options;
//     client c = co_await client::connect(options("127.0.0.1:6379").password("s3cret"));
//     co_await c.command("SET", "greeting", "hello");
//     corio::resp::reply r = co_await c.command("GET", "greeting");   // r.str == "hello"
//
// Addresses (options::address()): "HOST:PORT" (a name, a numeric IPv4 or "[IPv6]"),
// "redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]", "unix:/path/redis.sock" or "/path"; or a
// list of them, comma-separated ("10.0.0.5:7000,10.0.0.6:7000"): seeds, tried in order
// until one answers. Fields set in options win over the URL's. A name ("localhost",
// "redis.internal") is resolved off the loop thread (runtime/resolve.hpp) at the connect
// and again at every reconnect, so a server whose name now points elsewhere is followed;
// its addresses are tried in turn (tcp_stream::connect by name), all within
// connect_timeout. A name that does not resolve fails the connect like a refused one
// (connection_error quoting resolve's text). Cluster nodes that announce host names
// (cluster-announce-hostname, cluster-preferred-endpoint-type hostname) are resolved the
// same way. Numeric hosts need no lookup.
//
// Redis Cluster: configured the same way (one seed is enough, more survive a seed being
// down); the client detects it at connect (CLUSTER SLOTS in the handshake) and sends each
// command to the node serving its keys' hash slot (hash_slot.hpp: CRC16, {hash tags}),
// one connection per node, made at the node's first command with the same handshake and
// reconnect rules. It follows `MOVED` (the slot lives elsewhere now: the slot map is
// corrected and refreshed, the command sent there) and `ASK` (the slot is migrating and
// the key has left: `ASKING` and the command go to the named node, once; the map stays),
// at most 16 redirections per command; `TRYAGAIN` (a multi-key command mid-migration) and
// `CLUSTERDOWN` are retried after a backoff like -LOADING. A redirected command was not
// run, so it is sent again whatever its idempotency. Keys of one command in different
// slots: cross_slot_error before sending. SELECT of a database other than 0 is refused by a
// cluster at connect. Not supported in cluster mode: MULTI/EXEC and WATCH (the client
// pins no connection), reads from replicas.
//
// Handshake, at every (re)connect, pipelined in one write: `AUTH user password` (an ACL
// user) or `AUTH password` (requirepass) when a password is set, `SELECT db` when db is
// not 0, `CLIENT SETNAME name` when a name is set; at the first connect also
// `CLUSTER SLOTS` (the cluster probe; its error on a single Redis is the expected answer).
//
// Pipelining: commands from any number of coroutines of the client's loop go into one
// FIFO; everything queued during one loop turn goes out in one write, and replies come
// back in order to their waiters. So a coroutine that waits does not hold the connection:
// the next one's command is already on the wire. Blocking commands (BLPOP, XREADGROUP
// ... BLOCK) hold every later reply back until they return (in a cluster, those of their
// node): give them a client of their own.
//
// Deadlines and cancellation: command_options::deadline, and the awaiting coroutine's
// stop token, end the wait with timed_out / operation_cancelled. The command itself was
// (or will be) sent all the same and may be applied: its reply is read and dropped, in
// order, so the connection stays usable.
//
// Failures:
// - An error reply throws server_error; WRONGPASS / NOAUTH / NOPERM throw auth_error and
//   are never retried (at the handshake they make the client fail every later command
//   at once, with no retry storm).
// - `-LOADING` (the server is loading its data after a restart): the command was not
//   run; it is sent again after a backoff, as long as reconnect_for allows.
// - The connection lost (reset, server restart): the client reconnects with a bounded
//   exponential backoff (backoff_min doubling to backoff_max) for at most reconnect_for.
//   Commands not yet written are sent on the new connection; a command written but not
//   answered is sent again only if it is idempotent (command_options::idempotent, by
//   default the read-only commands: GET, XLEN, XRANGE, PING, ...); any other throws
//   connection_error ("... may or may not have been applied"). The first connect does
//   not retry: a wrong address fails at once (after the last seed). A cluster node's
//   connection, made later from the slot map, does retry as a reconnect does.
//
// Who may touch it: the thread of the loop it was connected on; all calls, and its
// destruction, happen there. Destroying (or close()) fails the commands still waiting
// with connection_error. The client is a handle: moving it moves the connection.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "../coro/task.hpp"
#include "redis_endpoint.hpp"
#include "redis_error.hpp"
#include "reply_parser.hpp"

namespace corio::redis {

// How to reach the server. A class with chainable setters, not an aggregate, on purpose:
// GCC 12 destroys an aggregate temporary with non-trivial members twice when it is built
// inside a co_await expression (docs/design.md, toolchain notes), and
// `co_await client::connect(options("10.0.0.5:6379").password(pw))` is natural code.
class options {
 public:
  options() = default;
  explicit options(std::string address) : address_(std::move(address)) {}

  options& address(std::string a) { return set(address_, std::move(a)); }
  // An ACL user; empty: the requirepass form, `AUTH password`.
  options& user(std::string u) { return set(user_, std::move(u)); }
  // Empty: no AUTH.
  options& password(std::string p) { return set(password_, std::move(p)); }
  // SELECT this database; -1 (the default): the URL's, else 0.
  options& db(int d) { return set(db_, d); }
  options& client_name(std::string n) { return set(client_name_, std::move(n)); }
  // Each connect and handshake must finish within this.
  options& connect_timeout(std::chrono::milliseconds d) { return set(connect_timeout_, d); }
  // Give up reconnecting (and retrying -LOADING) after this.
  options& reconnect_for(std::chrono::milliseconds d) { return set(reconnect_for_, d); }
  // The pause between reconnect attempts: `min`, doubling up to `max`.
  options& backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) {
    backoff_min_ = min;
    return set(backoff_max_, max);
  }

  const std::string& address() const noexcept { return address_; }
  const std::string& user() const noexcept { return user_; }
  const std::string& password() const noexcept { return password_; }
  int db() const noexcept { return db_; }
  const std::string& client_name() const noexcept { return client_name_; }
  std::chrono::milliseconds connect_timeout() const noexcept { return connect_timeout_; }
  std::chrono::milliseconds reconnect_for() const noexcept { return reconnect_for_; }
  std::chrono::milliseconds backoff_min() const noexcept { return backoff_min_; }
  std::chrono::milliseconds backoff_max() const noexcept { return backoff_max_; }

 private:
  template <class T, class V>
  options& set(T& field, V&& v) {
    field = std::forward<V>(v);
    return *this;
  }

  std::string address_ = "127.0.0.1:6379";
  std::string user_;
  std::string password_;
  int db_ = -1;
  std::string client_name_;
  std::chrono::milliseconds connect_timeout_{2000};
  std::chrono::milliseconds reconnect_for_{30000};
  std::chrono::milliseconds backoff_min_{10};
  std::chrono::milliseconds backoff_max_{1000};
};

enum class idempotency { by_name, yes, no };

struct command_options {
  std::optional<std::chrono::steady_clock::time_point> deadline{};
  // May the command be sent again when the connection was lost before its reply came?
  // by_name: yes for read-only commands (redis_client.cpp lists them).
  idempotency idempotent = idempotency::by_name;
};

// What the client did, for tests and tuning.
struct client_stats {
  std::uint64_t commands = 0;    // commands sent (a re-send counts again)
  std::uint64_t writes = 0;      // socket writes (batches)
  std::uint64_t reconnects = 0;  // successful reconnects after a loss
  // Redis Cluster (all 0 for a single Redis, nodes 1):
  std::uint64_t moved = 0;          // MOVED redirections followed
  std::uint64_t asked = 0;          // ASK redirections followed
  std::uint64_t map_refreshes = 0;  // slot maps read again (after a MOVED or a lost node)
  std::uint64_t nodes = 0;          // connections made, one per node
};

inline client_stats& operator+=(client_stats& a, const client_stats& b) noexcept {
  a.commands += b.commands;
  a.writes += b.writes;
  a.reconnects += b.reconnects;
  a.moved += b.moved;
  a.asked += b.asked;
  a.map_refreshes += b.map_refreshes;
  a.nodes += b.nodes;
  return a;
}

namespace detail {
class router;
}

class client {
 public:
  // Connects and runs the handshake; throws connection_error, auth_error, server_error
  // (e.g. SELECT of a database that does not exist), timed_out (connect_timeout).
  [[nodiscard]] static task<client> connect(const options& o);

  client(client&&) noexcept;
  client& operator=(client&&) noexcept;
  ~client();

  // Sends one command: `c.command("SET", key, value)`, or with options first,
  // `c.command(command_options{.deadline = t}, "GET", key)`. The arguments (anything that
  // converts to std::string_view) are copied before this returns. The reply is returned,
  // or an error reply thrown as server_error. (Not an initializer list: GCC 12 rejects a
  // braced list inside a co_await expression.)
  template <class... A>
  [[nodiscard]] task<resp::reply> command(const A&... args) {
    const std::string_view argv[] = {std::string_view(args)...};
    return command_argv(argv, {});
  }
  template <class... A>
  [[nodiscard]] task<resp::reply> command(const command_options& o, const A&... args) {
    const std::string_view argv[] = {std::string_view(args)...};
    return command_argv(argv, o);
  }
  // A command whose arguments are only known at run time.
  [[nodiscard]] task<resp::reply> command_argv(std::span<const std::string_view> argv, command_options o = {});

  // The server (a cluster: the seed that answered), without credentials:
  // "127.0.0.1:6379", "unix:/run/redis.sock".
  const std::string& address() const noexcept;
  // Connected to a Redis Cluster?
  bool cluster() const noexcept;
  client_stats stats() const noexcept;
  // Closes the connection; waiting commands fail with connection_error. Idempotent.
  void close() noexcept;

  // For connect(): wraps a router connected and shaken hands with.
  static client adopt(std::shared_ptr<detail::router> r) noexcept { return client(std::move(r)); }

 private:
  explicit client(std::shared_ptr<detail::router> r) noexcept;
  std::shared_ptr<detail::router> router_;
};


}  // namespace corio::redis
