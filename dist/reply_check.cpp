#include "detail/reply_check.hpp"

#include <charconv>
#include <limits>

namespace corio::dist::detail {

void unexpected(std::string_view who, std::string_view command, std::string_view what) {
  throw redis::unexpected_reply(std::string(who) + ": " + std::string(command) + " answered " + std::string(what) +
                                " (a broken or lying server?)");
}

namespace {

// Bytes shown quoted, cut to `max`, unprintable ones as \xNN.
void quote(std::string& out, std::string_view s, std::size_t max) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char c : s.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') {
      out += c;
    } else {
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  out += s.size() > max ? "\"..." : "\"";
}

// At most 8 elements of an array and 5 levels (XREAD's answer has 5) are shown, and
// nothing more once the text passes 128 bytes: a reply of a million elements makes a
// short message.
void render(std::string& out, const resp::reply& r, int depth) {
  using kind = resp::reply::kind;
  switch (r.type) {
    case kind::nil: out += "nil"; return;
    case kind::integer: out += std::to_string(r.integer); return;
    case kind::status: out += '+'; quote(out, r.str, 32); return;
    case kind::error: out += '-'; quote(out, r.str, 32); return;
    case kind::bulk: quote(out, r.str, 32); return;
    case kind::array: break;
  }
  out += '[';
  for (std::size_t i = 0; i < r.elements.size(); ++i) {
    if (i > 0) out += ", ";
    if (i == 8 || depth == 5 || out.size() > 128) {
      out += "... (" + std::to_string(r.elements.size()) + " elements)";
      break;
    }
    render(out, r.elements[i], depth + 1);
  }
  out += ']';
}

}  // namespace

std::string describe(const resp::reply& r) {
  std::string out;
  render(out, r, 0);
  return out;
}

std::optional<stream_id> stream_id::parse(std::string_view text) {
  const auto number = [](std::string_view s, std::uint64_t& out) {
    // from_chars takes no sign for an unsigned type; a full match, no overflow.
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && r.ec == std::errc{} && r.ptr == s.data() + s.size();
  };
  const auto dash = text.find('-');
  stream_id id;
  if (dash == std::string_view::npos || !number(text.substr(0, dash), id.ms) || !number(text.substr(dash + 1), id.seq))
    return std::nullopt;
  return id;
}

std::optional<stream_id> stream_id::next() const {
  constexpr auto max = std::numeric_limits<std::uint64_t>::max();
  if (seq < max) return stream_id{ms, seq + 1};
  if (ms < max) return stream_id{ms + 1, 0};
  return std::nullopt;
}

}  // namespace corio::dist::detail
