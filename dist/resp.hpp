#pragma once
// RESP2 (the Redis serialization protocol, version 2): the limits, Redis' integer syntax and
// the encoders, shared by a server's replies (examples/kv_server) and a client's commands
// (redis_client). The parsers are next to it: command_parser.hpp reads what a client sends,
// reply_parser.hpp what a server answers. No I/O here.
//
//     std::string out;
//     corio::resp::append_bulk(out, "value");                 // "$5\r\nvalue\r\n"
//     corio::resp::append_command(out, {"SET", "k", "v"});    // "*3\r\n$3\r\nSET\r\n..."

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <string_view>

namespace corio::resp {

inline constexpr std::size_t max_bulk_length = 512u * 1024 * 1024;  // proto-max-bulk-len
inline constexpr std::int64_t max_array_length = 1024 * 1024;      // a request's arguments
inline constexpr std::size_t max_inline_length = 64 * 1024;        // also the header line limit

// Redis' string2ll: the whole of `s` must be a canonical decimal int64: an optional '-',
// no '+', no leading zeros, no blanks, no "-0".
inline bool parse_int64(std::string_view s, std::int64_t& out) noexcept {
  if (s.empty() || s.size() > 20) return false;
  if (s.size() == 1 && s[0] == '0') {
    out = 0;
    return true;
  }
  std::size_t i = 0;
  const bool negative = s[0] == '-';
  if (negative) ++i;
  if (i >= s.size() || s[i] < '1' || s[i] > '9') return false;  // no "+1", "01", "-0", "-"
  std::uint64_t v = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (negative) {
    if (v > max + 1) return false;
    out = v == max + 1 ? std::numeric_limits<std::int64_t>::min() : -static_cast<std::int64_t>(v);
  } else {
    if (v > max) return false;
    out = static_cast<std::int64_t>(v);
  }
  return true;
}

// ---- encoders ------------------------------------------------------------------------

inline void append_raw(std::string& out, std::string_view s) { out.append(s); }

inline void append_simple(std::string& out, std::string_view s) {
  out.push_back('+');
  out.append(s);
  out.append("\r\n", 2);
}

// `message` is the text after the '-', e.g. "ERR syntax error". CR and LF inside would
// break the framing, so they become spaces (as in Redis).
inline void append_error(std::string& out, std::string_view message) {
  out.push_back('-');
  const std::size_t at = out.size();
  out.append(message);
  for (std::size_t i = at; i < out.size(); ++i)
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  out.append("\r\n", 2);
}

inline void append_prefixed_number(std::string& out, char prefix, std::int64_t v) {
  char tmp[24];
  tmp[0] = prefix;
  const auto r = std::to_chars(tmp + 1, tmp + sizeof tmp - 2, v);
  char* p = r.ptr;
  *p++ = '\r';
  *p++ = '\n';
  out.append(tmp, static_cast<std::size_t>(p - tmp));
}

inline void append_integer(std::string& out, std::int64_t v) { append_prefixed_number(out, ':', v); }
inline void append_array_header(std::string& out, std::size_t n) {
  append_prefixed_number(out, '*', static_cast<std::int64_t>(n));
}
inline void append_bulk(std::string& out, std::string_view s) {
  append_prefixed_number(out, '$', static_cast<std::int64_t>(s.size()));
  out.append(s);
  out.append("\r\n", 2);
}
inline void append_null(std::string& out) { out.append("$-1\r\n", 5); }

// A command as a client sends it: an array of bulk strings (binary safe, any bytes).
inline void append_command(std::string& out, std::span<const std::string_view> argv) {
  append_array_header(out, argv.size());
  for (std::string_view a : argv) append_bulk(out, a);
}
inline void append_command(std::string& out, std::initializer_list<std::string_view> argv) {
  append_command(out, std::span<const std::string_view>(argv.begin(), argv.size()));
}

}  // namespace corio::resp
