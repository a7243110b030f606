// Peer for the echo benchmark: a TCP echo server on Boost.Asio 1.81 with its io_uring
// backend (BOOST_ASIO_HAS_IO_URING), C++20 coroutines, one io_context per core, each with
// its own SO_REUSEPORT listener, as corio's examples/echo_server does. Built as
// bench_peer_asio_echo, and without the io_uring defines as bench_peer_asio_echo_epoll
// (Asio's default Linux reactor, epoll: the peer of corio's epoll backend); driven by
// bench/echo_client.
//
// Usage: bench_peer_asio_echo[_epoll] PORT [THREADS]     (runs until SIGINT/SIGTERM)
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
#include <memory>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

asio::awaitable<void> echo(tcp::socket socket) {
  char data[4096];
  try {
    for (;;) {
      const std::size_t n = co_await socket.async_read_some(asio::buffer(data), asio::use_awaitable);
      co_await asio::async_write(socket, asio::buffer(data, n), asio::use_awaitable);
    }
  } catch (const std::exception&) {
    // The client closed the connection (EOF) or reset it: the session ends.
  }
}

}  // namespace

int main(int argc, char** argv) {
  return asio_peer::run(argc, argv, "echo", [](tcp::socket socket) { return echo(std::move(socket)); });
}
