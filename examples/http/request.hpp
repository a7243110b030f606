#pragma once
// The HTTP/1.1 request parser of examples/http_hello.cpp, in place over the bytes read so
// far. No I/O and no corio here, so tests/fuzz/http_request_fuzz.cpp can feed it anything.
//
//     http::request r = http::parse(buffered_text);
//     // r.status == 0: incomplete, read more (r.length == 0)
//     // 200 / 404 / 405: a whole request of r.length bytes (header + body) is here
//     // 400 / 413 / 431: malformed, body too large, header section too large: answer and close
//
// Contract (what the fuzzer checks): never reads outside `in`; a complete request's length
// is at most in.size(); an error has length 0; nothing is allocated on the peer's word
// (Content-Length is checked against max_body_bytes before any use).
//
// What it accepts: a request line `METHOD SP TARGET SP HTTP/1.x`, header lines
// `name: value` each ending in CRLF, an empty line; Content-Length (at most 9 digits, at
// most once) gives the body's length; Transfer-Encoding is refused (400).

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace http {

using namespace std::literals;

inline constexpr std::size_t max_header_bytes = 8 * 1024;
inline constexpr std::size_t max_body_bytes = 8 * 1024;

struct request {
  std::size_t length = 0;  // bytes of the request (header + body); 0: incomplete
  int status = 0;          // 0: incomplete
  bool keep_alive = false;
  bool head = false;       // HEAD: no body in the answer
  bool http10 = false;     // an HTTP/1.0 request kept alive must be told so
};

inline bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
inline bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char); }

inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Does the comma-separated header value list `value` hold `option`?
inline bool has_option(std::string_view value, std::string_view option) {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), option)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

inline request bad(int status) { return {.length = 0, .status = status, .keep_alive = false, .head = false, .http10 = false}; }

// Parses the request at the start of `in`, in place.
inline request parse(std::string_view in) {
  const std::size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return in.size() > max_header_bytes ? bad(431) : request{};
  if (end + 4 > max_header_bytes) return bad(431);

  std::string_view head = in.substr(0, end + 2);  // every line ends with \r\n
  const std::size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  head.remove_prefix(line_end + 2);

  const std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return bad(400);
  const std::string_view method = line.substr(0, sp1);
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return bad(400);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method) || target.empty()) return bad(400);
  for (char c : target)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return bad(400);
  bool http11;
  if (version == "HTTP/1.1"sv)
    http11 = true;
  else if (version == "HTTP/1.0"sv)
    http11 = false;
  else
    return bad(400);

  bool close = false, keep_alive = false, have_length = false;
  std::size_t body = 0;
  while (!head.empty()) {
    const std::size_t e = head.find("\r\n");
    const std::string_view h = head.substr(0, e);
    head.remove_prefix(e + 2);
    const std::size_t colon = h.find(':');
    if (colon == std::string_view::npos || !is_token(h.substr(0, colon))) return bad(400);
    const std::string_view name = h.substr(0, colon);
    const std::string_view value = trim(h.substr(colon + 1));
    for (char c : value)
      if ((static_cast<unsigned char>(c) < ' ' && c != '\t') || c == 0x7f) return bad(400);
    if (iequals(name, "connection")) {
      close = close || has_option(value, "close");
      keep_alive = keep_alive || has_option(value, "keep-alive");
    } else if (iequals(name, "content-length")) {
      if (have_length || value.empty() || value.size() > 9 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return bad(400);
      have_length = true;
      body = std::stoul(std::string(value));
    } else if (iequals(name, "transfer-encoding")) {
      return bad(400);
    }
  }
  if (body > max_body_bytes) return bad(413);
  if (in.size() < end + 4 + body) return {};  // the body is still arriving

  request r;
  r.length = end + 4 + body;
  r.keep_alive = http11 ? !close : (keep_alive && !close);
  r.head = method == "HEAD"sv;
  r.http10 = !http11;
  if (method != "GET"sv && !r.head)
    r.status = 405;
  else
    r.status = target == "/"sv ? 200 : 404;
  return r;
}

}  // namespace http
