#pragma once
// Checks on what a Redis server answers, before the answer is used (design.md's trust
// model: a peer may write garbage). The queue, the task pool and the worker read types,
// array lengths, counts and stream entry ids from replies; each goes through here, and a
// wrong shape is redis::unexpected_reply naming the command, never a crash, an unbounded
// loop or an index past the end.

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "../redis_error.hpp"
#include "../reply_parser.hpp"

namespace corio::dist::detail {

// Throws redis::unexpected_reply: "<who>: <command> answered <what> (a broken or lying
// server?)".
[[noreturn]] void unexpected(std::string_view who, std::string_view command, std::string_view what);

// A reply in short, for those messages: nil, 5, "0-x" (a bulk string), +"OK", -"ERR x",
// [1, "a", [...]]; strings cut to 32 bytes (unprintable ones as \xNN), arrays to 8
// elements and 5 levels: a huge reply makes a short message.
std::string describe(const resp::reply& r);

// A stream entry id, "ms-seq": two unsigned 64-bit decimals.
struct stream_id {
  std::uint64_t ms = 0, seq = 0;

  // Nothing unless `text` is exactly that (no sign, no blank, no overflow).
  static std::optional<stream_id> parse(std::string_view text);
  std::string text() const { return std::to_string(ms) + "-" + std::to_string(seq); }
  // The smallest id after this one (XTRIM MINID of it removes this and all before);
  // nothing for the largest id.
  std::optional<stream_id> next() const;
  friend auto operator<=>(const stream_id&, const stream_id&) = default;
};

// Is `r` an array of exactly `n` elements? (With n = 0: of any length.)
inline bool is_array(const resp::reply& r, std::size_t n = 0) {
  return r.type == resp::reply::kind::array && (n == 0 || r.elements.size() == n);
}
inline bool is_bulk(const resp::reply& r) { return r.type == resp::reply::kind::bulk; }
inline bool is_integer(const resp::reply& r) { return r.type == resp::reply::kind::integer; }

}  // namespace corio::dist::detail
