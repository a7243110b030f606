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
// Usage: http_hello [PORT | HOST:PORT] [SHARDS] [--idle-poll MICROSECONDS] [--processes N]
//   default 127.0.0.1:8080; port 0 picks a free one. SHARDS and --idle-poll default to
//   corio::server_runtime_options() (runtime/server_defaults.hpp): one shard per CPU,
//   each polling 50 us (yielding to waiting threads) before it sleeps.
//   --processes N: N forked worker processes of one shard each instead
//   (corio::serve_in_processes, ipc/prefork.hpp); SHARDS is then ignored, and the
//   workers poll for --idle-poll (default 50 us) too.
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

#include "http/request.hpp"

using namespace std::literals;

namespace {

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

bool append_answer(corio::buffered_writer& out, const http::request& r, bool close) {
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
      http::request r = http::parse(in.buffered_text());
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

constexpr std::string_view usage_head =
    "usage: http_hello [PORT | HOST:PORT] [SHARDS] [--idle-poll MICROSECONDS] [--processes N]\n"
    "  default 127.0.0.1:8080 (port 0 picks a free one)\n"
    "  --processes N  N forked worker processes of one shard each instead of shards\n";

int main(int argc, char** argv) {
  const std::string usage = std::string(usage_head) + std::string(examples::server_usage_shards) +
                            std::string(examples::server_usage_idle_poll);
  examples::handle_help(argc, argv, usage, {"--processes", "--idle-poll"});
  try {
    std::vector<std::string> args;
    unsigned processes = 0;
    corio::runtime_options options = corio::server_runtime_options();
    for (int i = 1; i < argc; ++i) {
      if (examples::take_idle_poll(i, argc, argv, options)) continue;
      if (argv[i] == "--processes"sv && i + 1 < argc)
        processes = static_cast<unsigned>(std::stoul(argv[++i]));
      else
        args.emplace_back(argv[i]);
    }
    std::string at = !args.empty() ? args[0] : "8080";
    if (at.find(':') == std::string::npos) at = "127.0.0.1:" + at;
    if (args.size() > 1) options.shards = examples::parse_shards(args[1]);

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
      corio::runtime_options per_process{.shards = 1, .pin = false};
      per_process.loop.idle_poll = options.loop.idle_poll;
      const int sig = corio::serve_in_processes(srv, processes, per_process);
      if (sig < 0) {
        std::fprintf(stderr, "http_hello: a worker process ended unexpectedly\n");
        return 1;
      }
      std::printf("%s: shut down (%u worker processes)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", processes);
      return 0;
    }
    // Block the signals before the runtime starts its threads (signal.hpp).
    corio::signal_set signals{SIGINT, SIGTERM};
    corio::runtime rt(options);
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
