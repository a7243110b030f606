#pragma once
// The skeleton both Asio peers share (asio_echo.cpp, asio_http.cpp): one io_context per
// thread, each with its own SO_REUSEPORT listener on 127.0.0.1 (as corio's servers do),
// TCP_NODELAY on every connection, SIGINT/SIGTERM stop every context. Only the session
// coroutine differs between the peers.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

namespace asio_peer {

namespace asio = boost::asio;
using asio::ip::tcp;

inline tcp::acceptor make_acceptor(asio::io_context& ctx, unsigned short port) {
  tcp::acceptor a(ctx);
  const tcp::endpoint at(asio::ip::address_v4::loopback(), port);
  a.open(at.protocol());
  a.set_option(asio::socket_base::reuse_address(true));
  const int one = 1;
  ::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  a.bind(at);
  a.listen(asio::socket_base::max_listen_connections);
  return a;
}

// Accepts forever, running session(socket) as its own coroutine per connection.
template <class Session>
asio::awaitable<void> serve(tcp::acceptor acceptor, Session session) {
  for (;;) {
    tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(acceptor.get_executor(), session(std::move(socket)), asio::detached);
  }
}

// main() of a peer: `NAME PORT [THREADS]`, runs until SIGINT/SIGTERM.
template <class Session>
int run(int argc, char** argv, const char* what, Session session) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PORT [THREADS]\n", argv[0]);
    return 2;
  }
  const auto port = static_cast<unsigned short>(std::atoi(argv[1]));
  const unsigned threads = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2]))
                                    : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  for (unsigned i = 0; i < threads; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    asio::co_spawn(*contexts.back(), serve(make_acceptor(*contexts.back(), port), session), asio::detached);
  }
  asio::signal_set signals(*contexts[0], SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    for (auto& c : contexts) c->stop();
  });
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&, i] { contexts[i]->run(); });
  std::printf("asio %s server on 127.0.0.1:%u, %u threads\n", what, port, threads);
  std::fflush(stdout);
  contexts[0]->run();
  for (auto& w : workers) w.join();
  return 0;
}

}  // namespace asio_peer
