#pragma once
// The commands of kv_server: lookup by name, routing to shards, and execution against one
// shard's store, writing RESP2 replies with the texts Redis 7 uses.
//
// Routing (route_of): a command whose keys all live on one shard runs there whole
// (execute()). A command with no key (PING, ECHO, CONFIG, an error) runs anywhere.
// DEL / EXISTS / MGET / MSET whose keys span shards are split: each shard handles its own
// keys (the *_part functions) and the caller combines the parts. DBSIZE and FLUSHALL touch
// every shard. A key's shard is hash(key) % shards.
//
// execute() never allocates on the common path (GET, SET of an existing key, PING): the
// reply goes into the caller's `out`, whose capacity is reused from batch to batch.

#include <array>
#include <cctype>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <corio/dist/resp.hpp>
#include "store.hpp"

namespace kv {

// The RESP2 codec is corio's (dist/resp.hpp): kv keeps calling it resp::.
namespace resp = corio::resp;

enum class command_id {
  unknown, ping, echo, quit, command, config, select,
  get, set, incr, decr, incrby, decrby, expire, pexpire, ttl, pttl,
  del, exists, mget, mset, dbsize, flushall,
};

inline command_id lookup(std::string_view name) noexcept {
  std::array<char, 12> low{};
  if (name.size() > low.size()) return command_id::unknown;
  for (std::size_t i = 0; i < name.size(); ++i)
    low[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  const std::string_view n(low.data(), name.size());
  struct row {
    std::string_view name;
    command_id id;
  };
  static constexpr row table[] = {
      {"get", command_id::get},         {"set", command_id::set},       {"ping", command_id::ping},
      {"echo", command_id::echo},       {"quit", command_id::quit},     {"command", command_id::command},
      {"config", command_id::config},   {"select", command_id::select}, {"incr", command_id::incr},
      {"decr", command_id::decr},       {"incrby", command_id::incrby}, {"decrby", command_id::decrby},
      {"expire", command_id::expire},   {"pexpire", command_id::pexpire}, {"ttl", command_id::ttl},
      {"pttl", command_id::pttl},       {"del", command_id::del},       {"exists", command_id::exists},
      {"mget", command_id::mget},       {"mset", command_id::mset},     {"dbsize", command_id::dbsize},
      {"flushall", command_id::flushall}, {"flushdb", command_id::flushall},
  };
  for (const row& r : table)
    if (r.name == n) return r.id;
  return command_id::unknown;
}

// `a` equals the lower-case `lower`, ignoring the case of `a`.
inline bool equals_lower(std::string_view a, std::string_view lower) noexcept {
  if (a.size() != lower.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != lower[i]) return false;
  return true;
}

inline unsigned shard_of(std::string_view key, unsigned shards) noexcept {
  return shards == 1 ? 0 : static_cast<unsigned>(std::hash<std::string_view>{}(key) % shards);
}

enum class route_kind { anywhere, one_shard, split, all_shards };
struct route {
  route_kind kind;
  unsigned shard = 0;  // one_shard
};

// Where `argv` (a command `id`) must run. A command with the wrong number of arguments
// runs anywhere (it only produces its error).
inline route route_of(command_id id, std::span<const std::string_view> argv, unsigned shards) noexcept {
  const std::size_t argc = argv.size();
  auto keys_from = [&](std::size_t first, std::size_t step) -> route {
    const unsigned s = shard_of(argv[first], shards);
    for (std::size_t i = first + step; i < argc; i += step)
      if (shard_of(argv[i], shards) != s) return {route_kind::split};
    return {route_kind::one_shard, s};
  };
  switch (id) {
    case command_id::get: case command_id::incr: case command_id::decr: case command_id::ttl:
    case command_id::pttl:
      return argc == 2 ? keys_from(1, 1) : route{route_kind::anywhere};
    case command_id::set:
      return argc >= 3 ? keys_from(1, argc) : route{route_kind::anywhere};
    case command_id::incrby: case command_id::decrby: case command_id::expire: case command_id::pexpire:
      return argc == 3 ? keys_from(1, argc) : route{route_kind::anywhere};
    case command_id::del: case command_id::exists: case command_id::mget:
      return argc >= 2 ? keys_from(1, 1) : route{route_kind::anywhere};
    case command_id::mset:
      return argc >= 3 && argc % 2 == 1 ? keys_from(1, 2) : route{route_kind::anywhere};
    case command_id::dbsize:
      return argc == 1 ? route{route_kind::all_shards} : route{route_kind::anywhere};
    case command_id::flushall:  // FLUSHALL [ASYNC|SYNC]: both flush at once here
      return argc == 1 || (argc == 2 && (equals_lower(argv[1], "async") || equals_lower(argv[1], "sync")))
                 ? route{route_kind::all_shards}
                 : route{route_kind::anywhere};
    default:
      return {route_kind::anywhere};
  }
}

namespace detail {

inline void wrong_arity(std::string& out, std::string_view name) {
  std::string msg = "ERR wrong number of arguments for '";
  for (char c : name) msg.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  msg += "' command";
  resp::append_error(out, msg);
}

inline void not_integer(std::string& out) { resp::append_error(out, "ERR value is not an integer or out of range"); }

inline void invalid_expire(std::string& out, std::string_view command) {
  std::string msg = "ERR invalid expire time in '";
  msg += command;
  msg += "' command";
  resp::append_error(out, msg);
}


// `ms` from now as a deadline; false if it overflows (Redis: "invalid expire time").
inline bool deadline_after(std::int64_t ms, std::int64_t& at) noexcept {
  const std::int64_t now = now_ms();
  if (ms > std::numeric_limits<std::int64_t>::max() - now) return false;
  at = now + ms;
  return true;
}

inline void do_set(store& s, std::span<const std::string_view> argv, std::string& out) {
  bool nx = false, xx = false, keepttl = false;
  std::int64_t ttl_ms = -1;
  for (std::size_t i = 3; i < argv.size(); ++i) {
    const std::string_view opt = argv[i];
    if (equals_lower(opt, "nx") && !xx) {
      nx = true;
    } else if (equals_lower(opt, "xx") && !nx) {
      xx = true;
    } else if (equals_lower(opt, "keepttl") && ttl_ms < 0) {
      keepttl = true;
    } else if ((equals_lower(opt, "ex") || equals_lower(opt, "px")) && ttl_ms < 0 && !keepttl && i + 1 < argv.size()) {
      std::int64_t v = 0;
      if (!resp::parse_int64(argv[++i], v)) return not_integer(out);
      const bool seconds = opt[0] == 'e' || opt[0] == 'E';
      if (v <= 0 || (seconds && v > std::numeric_limits<std::int64_t>::max() / 1000))
        return invalid_expire(out, "set");
      ttl_ms = seconds ? v * 1000 : v;
    } else {
      return resp::append_error(out, "ERR syntax error");
    }
  }
  std::int64_t at = 0;
  if (ttl_ms > 0 && !deadline_after(ttl_ms, at)) return invalid_expire(out, "set");
  if (nx || xx) {
    const bool exists = s.find(argv[1]) != nullptr;
    if (nx == exists) return resp::append_null(out);
  }
  entry& e = s.upsert(argv[1], argv[2]);
  if (!keepttl && (at != 0 || e.expire_at != 0)) s.expire(argv[1], e, at);
  resp::append_raw(out, "+OK\r\n");
}

inline void do_incr(store& s, std::string_view key, std::int64_t by, std::string& out) {
  std::int64_t v = 0;
  entry* e = s.find(key);
  if (e != nullptr && !resp::parse_int64(e->value, v)) return not_integer(out);
  if ((by > 0 && v > std::numeric_limits<std::int64_t>::max() - by) ||
      (by < 0 && v < std::numeric_limits<std::int64_t>::min() - by))
    return resp::append_error(out, "ERR increment or decrement would overflow");
  v += by;
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, v);
  const std::string_view text(digits, static_cast<std::size_t>(r.ptr - digits));
  if (e != nullptr)
    e->value.assign(text);  // INCR keeps the key's expiry, as in Redis
  else
    s.upsert(key, text);
  resp::append_integer(out, v);
}

inline void do_expire(store& s, std::span<const std::string_view> argv, bool seconds, std::string& out) {
  std::int64_t v = 0;
  if (!resp::parse_int64(argv[2], v)) return not_integer(out);
  entry* e = s.find(argv[1]);
  const char* name = seconds ? "expire" : "pexpire";
  if (seconds && (v > std::numeric_limits<std::int64_t>::max() / 1000 ||
                  v < std::numeric_limits<std::int64_t>::min() / 1000))
    return invalid_expire(out, name);
  const std::int64_t ms = seconds ? v * 1000 : v;
  std::int64_t at = 0;
  if (ms > 0 && !deadline_after(ms, at)) return invalid_expire(out, name);
  if (e == nullptr) return resp::append_integer(out, 0);
  if (ms <= 0) {
    s.erase(argv[1]);  // a deadline in the past deletes the key at once
  } else {
    s.expire(argv[1], *e, at);
  }
  resp::append_integer(out, 1);
}

inline void do_ttl(store& s, std::string_view key, bool seconds, std::string& out) {
  const entry* e = s.find(key);
  if (e == nullptr) return resp::append_integer(out, -2);
  if (e->expire_at == 0) return resp::append_integer(out, -1);
  const std::int64_t left = std::max<std::int64_t>(e->expire_at - now_ms(), 0);
  resp::append_integer(out, seconds ? (left + 500) / 1000 : left);
}

inline void do_config(std::span<const std::string_view> argv, std::string& out) {
  if (argv.size() < 2) return wrong_arity(out, argv[0]);
  if (!equals_lower(argv[1], "get")) {
    std::string msg = "ERR unknown subcommand '";
    msg += argv[1];
    msg += "'. Try CONFIG HELP.";
    return resp::append_error(out, msg);
  }
  if (argv.size() < 3) return wrong_arity(out, "config|get");
  // What redis-benchmark and redis-cli ask at start-up; nothing is persisted.
  std::size_t pairs = 0;
  for (std::size_t i = 2; i < argv.size(); ++i) pairs += equals_lower(argv[i], "save") || equals_lower(argv[i], "appendonly");
  resp::append_array_header(out, 2 * pairs);
  for (std::size_t i = 2; i < argv.size(); ++i) {
    if (equals_lower(argv[i], "save")) {
      resp::append_bulk(out, "save");
      resp::append_bulk(out, "");
    } else if (equals_lower(argv[i], "appendonly")) {
      resp::append_bulk(out, "appendonly");
      resp::append_bulk(out, "no");
    }
  }
}

inline void do_unknown(std::span<const std::string_view> argv, std::string& out) {
  // Redis 7: the name cut at 128 bytes, then up to 128 bytes of quoted arguments.
  std::string msg = "ERR unknown command '";
  msg += argv[0].substr(0, 128);
  msg += "', with args beginning with: ";
  std::string args;
  for (std::size_t i = 1; i < argv.size() && args.size() < 128; ++i) {
    args += '\'';
    args += argv[i].substr(0, 128 - args.size());
    args += "' ";
  }
  msg += args;
  resp::append_error(out, msg);
}

}  // namespace detail

// What DEL / EXISTS / MGET / MSET do with the keys of `argv` that live on shard `mine`
// (of `shards`), for a command split across shards.
inline std::int64_t del_part(store& s, std::span<const std::string_view> argv, unsigned mine, unsigned shards) {
  std::int64_t n = 0;
  for (std::size_t i = 1; i < argv.size(); ++i)
    if (shard_of(argv[i], shards) == mine) n += s.erase(argv[i]);
  return n;
}
inline std::int64_t exists_part(store& s, std::span<const std::string_view> argv, unsigned mine, unsigned shards) {
  std::int64_t n = 0;
  for (std::size_t i = 1; i < argv.size(); ++i)
    if (shard_of(argv[i], shards) == mine) n += s.find(argv[i]) != nullptr;
  return n;
}
// values[i - 1] gets the value of argv[i] (left empty when missing).
inline void mget_part(store& s, std::span<const std::string_view> argv, unsigned mine, unsigned shards,
                      std::vector<std::optional<std::string>>& values) {
  for (std::size_t i = 1; i < argv.size(); ++i)
    if (shard_of(argv[i], shards) == mine)
      if (const entry* e = s.find(argv[i])) values[i - 1].emplace(e->value);
}
inline void mset_part(store& s, std::span<const std::string_view> argv, unsigned mine, unsigned shards) {
  for (std::size_t i = 1; i + 1 < argv.size(); i += 2)
    if (shard_of(argv[i], shards) == mine) {
      entry& e = s.upsert(argv[i], argv[i + 1]);
      if (e.expire_at != 0) s.expire(argv[i], e, 0);  // SET semantics: the old TTL goes
    }
}

// Runs a command routed anywhere or to the shard owning `s` (see route_of); the reply
// goes to `out`. Returns false when the connection must close after the reply (QUIT).
inline bool execute(store& s, command_id id, std::span<const std::string_view> argv, std::string& out) {
  using namespace detail;
  const std::size_t argc = argv.size();
  switch (id) {
    case command_id::get:
      if (argc != 2) break;
      if (const entry* e = s.find(argv[1]))
        resp::append_bulk(out, e->value);
      else
        resp::append_null(out);
      return true;
    case command_id::set:
      if (argc < 3) break;
      do_set(s, argv, out);
      return true;
    case command_id::ping:
      if (argc > 2) break;
      if (argc == 2)
        resp::append_bulk(out, argv[1]);
      else
        resp::append_raw(out, "+PONG\r\n");
      return true;
    case command_id::echo:
      if (argc != 2) break;
      resp::append_bulk(out, argv[1]);
      return true;
    case command_id::quit:
      resp::append_raw(out, "+OK\r\n");
      return false;
    case command_id::command:
      resp::append_raw(out, "*0\r\n");  // no command docs: redis-cli then just has no hints
      return true;
    case command_id::config:
      do_config(argv, out);
      return true;
    case command_id::select: {
      if (argc != 2) break;
      std::int64_t db = 0;
      if (!resp::parse_int64(argv[1], db))
        not_integer(out);
      else if (db != 0)
        resp::append_error(out, "ERR DB index is out of range");
      else
        resp::append_raw(out, "+OK\r\n");
      return true;
    }
    case command_id::incr: case command_id::decr:
      if (argc != 2) break;
      do_incr(s, argv[1], id == command_id::incr ? 1 : -1, out);
      return true;
    case command_id::incrby: case command_id::decrby: {
      if (argc != 3) break;
      std::int64_t by = 0;
      if (!resp::parse_int64(argv[2], by)) {
        not_integer(out);
      } else if (id == command_id::decrby && by == std::numeric_limits<std::int64_t>::min()) {
        resp::append_error(out, "ERR decrement would overflow");
      } else {
        do_incr(s, argv[1], id == command_id::incrby ? by : -by, out);
      }
      return true;
    }
    case command_id::expire: case command_id::pexpire:
      if (argc != 3) break;
      do_expire(s, argv, id == command_id::expire, out);
      return true;
    case command_id::ttl: case command_id::pttl:
      if (argc != 2) break;
      do_ttl(s, argv[1], id == command_id::ttl, out);
      return true;
    case command_id::del:
      if (argc < 2) break;
      resp::append_integer(out, del_part(s, argv, 0, 1));
      return true;
    case command_id::exists:
      if (argc < 2) break;
      resp::append_integer(out, exists_part(s, argv, 0, 1));
      return true;
    case command_id::mget:
      if (argc < 2) break;
      resp::append_array_header(out, argc - 1);
      for (std::size_t i = 1; i < argc; ++i)
        if (const entry* e = s.find(argv[i]))
          resp::append_bulk(out, e->value);
        else
          resp::append_null(out);
      return true;
    case command_id::mset:
      if (argc < 3 || argc % 2 == 0) break;
      mset_part(s, argv, 0, 1);
      resp::append_raw(out, "+OK\r\n");
      return true;
    case command_id::dbsize:
      break;  // all shards: the server combines them; here only the arity error is left
    case command_id::flushall:
      resp::append_error(out, "ERR syntax error");  // a bad option: the good ones go to all shards
      return true;
    case command_id::unknown:
      do_unknown(argv, out);
      return true;
  }
  wrong_arity(out, argv[0]);
  return true;
}

}  // namespace kv
