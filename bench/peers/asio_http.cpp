// Peer for the HTTP benchmark: the same "Hello, World!" HTTP/1.1 server as
// examples/http_hello, on Boost.Asio 1.81 with its io_uring backend
// (BOOST_ASIO_HAS_IO_URING; bench_peer_asio_http_epoll is the same source on Asio's
// default Linux reactor, epoll, the peer of corio's epoll backend), C++20 coroutines, one io_context per thread (concurrency
// hint 1: no locking), each with its own SO_REUSEPORT listener: the usual best practice
// for a share-nothing Asio server. Same behaviour and response bytes as corio's:
// keep-alive, pipelining (every complete request in the buffer answered, one write per
// batch), Connection: close, HTTP/1.0, 404. Error handling is simpler (400 and close
// for anything it does not understand); the benchmark sends only valid GET / requests.
//
// Usage: bench_peer_asio_http[_epoll] PORT [THREADS]     (runs until SIGINT/SIGTERM)
#include "asio_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::literals;

namespace {

constexpr std::string_view ok_head = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n";
constexpr std::string_view not_found_head =
    "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nContent-Type: text/plain\r\n";
constexpr std::string_view bad_request =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nBad "
    "Request\n";

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  return true;
}

struct request {
  std::size_t length = 0;  // 0: incomplete
  bool ok = false, found = false, keep_alive = false, http10 = false;
};

// In-place parse of the request at the start of `in` (the same rules as http_hello for
// the requests the benchmark sends).
request parse(std::string_view in) {
  request r;
  const std::size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return r;
  r.length = end + 4;
  std::string_view head = in.substr(0, end + 2);
  const std::size_t le = head.find("\r\n");
  const std::string_view line = head.substr(0, le);
  head.remove_prefix(le + 2);
  const std::size_t sp1 = line.find(' '), sp2 = line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) return r;
  const std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1"sv && version != "HTTP/1.0"sv) return r;
  r.http10 = version == "HTTP/1.0"sv;
  bool close = false, keep = false;
  while (!head.empty()) {
    const std::size_t e = head.find("\r\n");
    const std::string_view h = head.substr(0, e);
    head.remove_prefix(e + 2);
    const std::size_t colon = h.find(':');
    if (colon == std::string_view::npos) return r;
    if (iequals(h.substr(0, colon), "connection")) {
      std::string_view v = h.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      close = close || iequals(v, "close");
      keep = keep || iequals(v, "keep-alive");
    }
  }
  r.ok = method == "GET"sv;
  r.found = target == "/"sv;
  r.keep_alive = r.http10 ? keep && !close : !close;
  return r;
}

asio::awaitable<void> session(tcp::socket socket) {
  char in[16 * 1024];
  char out[16 * 1024];
  std::size_t begin = 0, end = 0;
  try {
    for (;;) {
      std::size_t out_size = 0;
      bool close = false;
      for (;;) {
        const request r = parse(std::string_view(in + begin, end - begin));
        if (r.length == 0 && end - begin > 8192) close = true;
        if (r.length == 0 && !close) break;
        if (!r.ok || close) {
          std::memcpy(out + out_size, bad_request.data(), bad_request.size());
          out_size += bad_request.size();
          close = true;
          break;
        }
        const std::string_view h = r.found ? ok_head : not_found_head;
        const std::string_view body = r.found ? "Hello, World!"sv : "Not Found\n"sv;
        const std::string_view conn = !r.keep_alive ? "Connection: close\r\n\r\n"sv
                                      : r.http10    ? "Connection: keep-alive\r\n\r\n"sv
                                                    : "\r\n"sv;
        if (out_size + h.size() + conn.size() + body.size() > sizeof out) {
          co_await asio::async_write(socket, asio::buffer(out, out_size), asio::use_awaitable);
          out_size = 0;
        }
        for (std::string_view piece : {h, conn, body}) {
          std::memcpy(out + out_size, piece.data(), piece.size());
          out_size += piece.size();
        }
        begin += r.length;
        if (!r.keep_alive) {
          close = true;
          break;
        }
      }
      if (out_size > 0) co_await asio::async_write(socket, asio::buffer(out, out_size), asio::use_awaitable);
      if (close) co_return;
      if (begin == end) {
        begin = end = 0;
      } else if (begin > 0) {
        std::memmove(in, in + begin, end - begin);
        end -= begin;
        begin = 0;
      }
      end += co_await socket.async_read_some(asio::buffer(in + end, sizeof in - end), asio::use_awaitable);
    }
  } catch (const std::exception&) {
    // EOF or reset: the session ends.
  }
}

}  // namespace

int main(int argc, char** argv) {
  return asio_peer::run(argc, argv, "http", [](tcp::socket socket) { return session(std::move(socket)); });
}
