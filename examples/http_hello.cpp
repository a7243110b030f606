// An HTTP/1.1 "Hello, World!" server on every core, built on corio::server.
//
// - GET / (or HEAD /) answers 200 with `Hello, World!`; other paths 404, other methods 405.
// - Keep-alive by default for HTTP/1.1; `Connection: close` is honoured; HTTP/1.0 closes
//   unless the request asks for `Connection: keep-alive`.
// - Pipelining: every complete request in the read buffer is parsed in place and answered
//   in order, and the answers of one batch go out with one write.
// - A malformed request gets 400 and the connection closes; a header section over 8 KiB
//   gets 431 and closes; a body over 8 KiB gets 413. Other connections are not affected.
//   Transfer-Encoding is not supported (400: this server never guesses a body's length).
// - SIGINT or SIGTERM: graceful shutdown (corio::server: requests in flight are answered,
//   idle connections closed, at most 5 s), then exit 0.
//
// Usage: http_hello [PORT | HOST:PORT] [SHARDS] [--processes N]
//   default 127.0.0.1:8080; port 0 picks a free one; SHARDS default: one per core.
//   --processes N: N forked worker processes of one shard each instead
//   (corio::serve_in_processes, ipc/prefork.hpp); SHARDS is then ignored.
// It prints `http_hello listening on http://HOST:PORT/ (N shards)` (or `(N processes)`)
// once it accepts.
//
// Try it: `http_hello 8080 & curl -s http://127.0.0.1:8080/; kill %1`
#include "server_cli.hpp"

#include <corio/ipc/prefork.hpp>
#include <corio/runtime/runtime.hpp>
#include <corio/runtime/server.hpp>
#include <corio/runtime/signal.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

using namespace std::literals;

namespace {

constexpr std::size_t max_header_bytes = 8 * 1024;
constexpr std::size_t max_body_bytes = 8 * 1024;

struct request {
  std::size_t length = 0;  // bytes of the request (header + body); 0: incomplete
  int status = 0;          // 0: incomplete
  bool keep_alive = false;
  bool head = false;       // HEAD: no body in the answer
  bool http10 = false;     // an HTTP/1.0 request kept alive must be told so
};

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char); }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Does the comma-separated header value list `value` hold `option`?
bool has_option(std::string_view value, std::string_view option) {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), option)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

request bad(int status) { return {.length = 0, .status = status, .keep_alive = false, .head = false, .http10 = false}; }

// Parses the request at the start of `in`, in place.
request parse(std::string_view in) {
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

// The answer's bytes, in pieces: status line and fixed headers; the Connection header;
// the blank line; the body.
struct answer {
  std::string_view head, body;
};
answer answer_for(int status) {
  switch (status) {
    case 200: return {"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n", "Hello, World!"};
    case 404: return {"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nContent-Type: text/plain\r\n", "Not Found\n"};
    case 405:
      return {"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 19\r\nContent-Type: text/plain\r\n",
              "Method Not Allowed\n"};
    case 413:
      return {"HTTP/1.1 413 Content Too Large\r\nContent-Length: 18\r\nContent-Type: text/plain\r\n",
              "Content Too Large\n"};
    case 431:
      return {"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 32\r\nContent-Type: text/plain\r\n",
              "Request Header Fields Too Large\n"};
    default: return {"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n", "Bad Request\n"};
  }
}

bool append_answer(corio::buffered_writer& out, const request& r, bool close) {
  const answer a = answer_for(r.status);
  const std::string_view connection = close      ? "Connection: close\r\n\r\n"sv
                                      : r.http10 ? "Connection: keep-alive\r\n\r\n"sv
                                                 : "\r\n"sv;
  const std::size_t need = a.head.size() + connection.size() + (r.head ? 0 : a.body.size());
  if (need > out.capacity() - out.pending()) return false;
  (void)out.try_append(a.head);
  (void)out.try_append(connection);
  if (!r.head) (void)out.try_append(a.body);
  return true;
}

// Before closing, the client may still be sending: the rest of a huge header after an
// error answer, or requests it pipelined behind one that asked to close. A lingering
// close (stream.hpp) keeps a reset from destroying the answers. What the reader holds is
// discarded first and counts against the 64 KiB.
corio::task<void> linger(corio::connection& c) {
  corio::buffered_reader& in = c.reader();
  const std::size_t buffered = std::min<std::size_t>(in.buffered().size(), 64 * 1024);
  in.consume(in.buffered().size());
  co_await c.stream().linger(64 * 1024 - buffered, std::chrono::seconds(1));
}

corio::task<void> serve_http(corio::connection& c) {
  corio::buffered_reader& in = c.reader();
  corio::buffered_writer& out = c.writer();
  for (;;) {
    bool close = false;
    // Answer every complete request already here, in order, into one write.
    for (;;) {
      request r = parse(in.buffered_text());
      if (r.status == 0) break;
      close = !r.keep_alive || c.draining();
      if (!append_answer(out, r, close)) {
        co_await out.flush();
        append_answer(out, r, close);
      }
      if (close) break;
      in.consume(r.length);
    }
    co_await out.flush();
    if (close) {
      co_await linger(c);
      co_return;
    }
    if (co_await in.fill() == 0) co_return;  // the client closed
  }
}

}  // namespace

constexpr std::string_view usage =
    "usage: http_hello [PORT | HOST:PORT] [SHARDS] [--processes N]\n"
    "  default 127.0.0.1:8080 (port 0 picks a free one); SHARDS default: one per core\n"
    "  --processes N  N forked worker processes of one shard each instead of shards\n";

int main(int argc, char** argv) {
  examples::handle_help(argc, argv, usage, {"--processes"});
  try {
    std::vector<std::string> args;
    unsigned processes = 0;
    for (int i = 1; i < argc; ++i) {
      if (argv[i] == "--processes"sv && i + 1 < argc)
        processes = static_cast<unsigned>(std::stoul(argv[++i]));
      else
        args.emplace_back(argv[i]);
    }
    std::string at = !args.empty() ? args[0] : "8080";
    if (at.find(':') == std::string::npos) at = "127.0.0.1:" + at;
    const unsigned shards = args.size() > 1 ? static_cast<unsigned>(std::stoul(args[1])) : 0u;

    corio::server srv(corio::address::parse(at), serve_http,
                      {.max_connections = 10'000,
                       .idle_timeout = std::chrono::seconds(60),
                       .read_timeout = std::chrono::seconds(10),
                       .shutdown_grace = std::chrono::seconds(5),
                       .read_buffer_size = 16 * 1024,
                       .write_buffer_size = 16 * 1024,
                       .backlog = SOMAXCONN});
    if (processes > 0) {
      std::printf("http_hello listening on http://%s/ (%u processes)\n", srv.local_address().to_string().c_str(),
                  processes);
      std::fflush(stdout);  // before the forks: a worker must not print it again
      const int sig = corio::serve_in_processes(srv, processes);
      if (sig < 0) {
        std::fprintf(stderr, "http_hello: a worker process ended unexpectedly\n");
        return 1;
      }
      std::printf("%s: shut down (%u worker processes)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", processes);
      return 0;
    }
    // Block the signals before the runtime starts its threads (signal.hpp).
    corio::signal_set signals{SIGINT, SIGTERM};
    corio::runtime rt({.shards = shards});
    std::printf("http_hello listening on http://%s/ (%u shards)\n", srv.local_address().to_string().c_str(),
                rt.shard_count());
    std::fflush(stdout);
    const int sig = rt.run(srv.serve(&signals));
    const corio::server_stats st = srv.stats();
    std::printf("%s: shut down after %zu connections\n", sig == SIGINT ? "SIGINT" : "SIGTERM", st.accepted);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_hello: %s\n", e.what());
    return 1;
  }
}
