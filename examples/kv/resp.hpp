#pragma once
// RESP2 (the Redis serialization protocol, version 2): an in-place request parser and a
// reply encoder. No I/O and no corio here, so the code can move to a library later.
//
//     std::vector<std::string_view> argv;
//     kv::resp::parse_result r = kv::resp::parse_command(buffer, argv);
//     // complete: argv holds the arguments (views into `buffer`), r.consumed bytes used
//     // incomplete: read more; r.need is the smallest buffer size that can complete it
//     // error: reply "-ERR " + r.error and close, as Redis does
//
//     std::string out;
//     kv::resp::append_bulk(out, "value");   // "$5\r\nvalue\r\n"
//
// Requests: a client sends either a multibulk array of bulk strings
// ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") or an inline command, one line of words separated by
// blanks ("PING\r\n", what telnet and redis-benchmark's PING_INLINE send). Like Redis:
// - an array header of more than 1M elements, or not an integer, is "invalid multibulk
//   length"; a count of 0 or less is an empty command (skipped);
// - a bulk length that is negative, not an integer, or above 512 MiB (proto-max-bulk-len)
//   is "invalid bulk length"; an element not starting with '$' is "expected '$', got 'c'";
// - a header line or an inline request longer than 64 KiB without its line end is "too
//   big ..." (so a client cannot grow the buffer without end by never ending a line);
// - integers follow Redis' string2ll: an optional '-', no '+', no leading zeros, no blanks.
// Stricter than Redis: the two bytes after a bulk's data must be "\r\n" (Redis skips them
// unread), so a wrong length is reported instead of silently shifting the stream.
//
// Cost: parse_command touches each byte once per call; a command that arrives in pieces
// is parsed again from its start on the next call, bounded by parse_result::need for big
// bulks (the caller waits until the buffer holds `need` bytes before retrying).

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace kv::resp {

inline constexpr std::size_t max_bulk_length = 512u * 1024 * 1024;  // proto-max-bulk-len
inline constexpr std::int64_t max_array_length = 1024 * 1024;
inline constexpr std::size_t max_inline_length = 64 * 1024;  // also the header line limit

// Redis' string2ll: the whole of `s` must be a canonical decimal int64.
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

enum class parse_status { complete, incomplete, error };

struct parse_result {
  parse_status status;
  std::size_t consumed = 0;     // complete: bytes of the buffer this command used
  std::size_t need = 0;         // incomplete: the buffer must grow to at least this many bytes
  std::string_view error = {};  // error: the text after "-ERR " (see error_text)
  char got = 0;                 // error: the offending byte, when there is one

  // The whole message after "-ERR "; Redis quotes the offending byte as is.
  std::string error_text() const {
    std::string s(error);
    if (error.ends_with(' ')) {  // "... got ": the byte follows
      s.push_back('\'');
      s.push_back(got);
      s.push_back('\'');
    }
    return s;
  }
};

namespace detail {

inline parse_result incomplete(std::size_t need) { return {parse_status::incomplete, 0, need, {}, 0}; }
inline parse_result failed(std::string_view why) { return {parse_status::error, 0, 0, why, 0}; }

// The line starting at `pos` up to "\r\n": sets `line` and returns the offset after "\n";
// 0 when the line is not complete yet.
inline std::size_t take_line(std::string_view buf, std::size_t pos, std::string_view& line) {
  const void* cr = std::memchr(buf.data() + pos, '\r', buf.size() - pos);
  if (cr == nullptr) return 0;
  const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(cr) - buf.data());
  if (at + 1 >= buf.size()) return 0;  // "\n" not here yet
  line = buf.substr(pos, at - pos);
  return at + 2;  // like Redis, the byte after '\r' is taken as the '\n'
}

inline parse_result parse_inline(std::string_view buf, std::vector<std::string_view>& argv) {
  const void* nl = std::memchr(buf.data(), '\n', buf.size());
  if (nl == nullptr) {
    if (buf.size() > max_inline_length) return failed("Protocol error: too big inline request");
    return incomplete(buf.size() + 1);
  }
  const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data());
  std::string_view line = buf.substr(0, end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::size_t first = argv.size();
  std::size_t i = 0;
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; };
  while (i < line.size()) {
    while (i < line.size() && blank(line[i])) ++i;
    if (i == line.size()) break;
    if (line[i] == '"' || line[i] == '\'') {  // quoted word, no escapes
      const char q = line[i];
      const std::size_t close = line.find(q, i + 1);
      if (close == std::string_view::npos || (close + 1 < line.size() && !blank(line[close + 1]))) {
        argv.resize(first);
        return failed("Protocol error: unbalanced quotes in request");
      }
      argv.push_back(line.substr(i + 1, close - i - 1));
      i = close + 1;
    } else {
      const std::size_t start = i;
      while (i < line.size() && !blank(line[i])) ++i;
      argv.push_back(line.substr(start, i - start));
    }
  }
  return {parse_status::complete, end + 1, 0, {}, 0};
}

inline parse_result parse_multibulk(std::string_view buf, std::vector<std::string_view>& argv) {
  std::string_view line;
  std::size_t pos = take_line(buf, 1, line);
  if (pos == 0) {
    if (buf.size() > max_inline_length) return failed("Protocol error: too big mbulk count string");
    return incomplete(buf.size() + 1);
  }
  std::int64_t count = 0;
  if (!parse_int64(line, count) || count > max_array_length)
    return failed("Protocol error: invalid multibulk length");
  if (count <= 0) return {parse_status::complete, pos, 0, {}, 0};
  const std::size_t first = argv.size();
  for (std::int64_t k = 0; k < count; ++k) {
    if (pos >= buf.size()) {
      argv.resize(first);
      return incomplete(pos + 1);
    }
    if (buf[pos] != '$') {
      argv.resize(first);
      parse_result r = failed("Protocol error: expected '$', got ");
      r.got = buf[pos];
      return r;
    }
    const std::size_t next = take_line(buf, pos + 1, line);
    if (next == 0) {
      argv.resize(first);
      if (buf.size() - pos > max_inline_length) return failed("Protocol error: too big bulk count string");
      return incomplete(buf.size() + 1);
    }
    std::int64_t length = 0;
    if (!parse_int64(line, length) || length < 0 || static_cast<std::uint64_t>(length) > max_bulk_length) {
      argv.resize(first);
      return failed("Protocol error: invalid bulk length");
    }
    const std::size_t end = next + static_cast<std::size_t>(length);
    if (buf.size() < end + 2) {
      argv.resize(first);
      return incomplete(end + 2);
    }
    if (buf[end] != '\r' || buf[end + 1] != '\n') {
      argv.resize(first);
      return failed("Protocol error: expected CRLF after bulk data");
    }
    argv.push_back(buf.substr(next, static_cast<std::size_t>(length)));
    pos = end + 2;
  }
  return {parse_status::complete, pos, 0, {}, 0};
}

}  // namespace detail

// Parses the command at the start of `buf` (which must not be empty). On complete, its
// arguments are appended to `argv` as views into `buf` (none for an empty command: skip
// it); on incomplete or error, `argv` is left as it was.
inline parse_result parse_command(std::string_view buf, std::vector<std::string_view>& argv) {
  return buf[0] == '*' ? detail::parse_multibulk(buf, argv) : detail::parse_inline(buf, argv);
}

// ---- replies -------------------------------------------------------------------------

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

}  // namespace kv::resp
