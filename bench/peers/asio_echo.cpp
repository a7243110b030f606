// Peer for the echo benchmark: a TCP echo server on Boost.Asio 1.81 with its io_uring
// backend (BOOST_ASIO_HAS_IO_URING), C++20 coroutines, one io_context per core, each with
// its own SO_REUSEPORT listener, as corio's examples/echo_server does. Built as
// bench_peer_asio_echo; driven by bench/echo_client.
//
// Usage: bench_peer_asio_echo PORT [THREADS]     (runs until SIGINT/SIGTERM)
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

asio::awaitable<void> serve(tcp::acceptor acceptor) {
  for (;;) {
    tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
  }
}

tcp::acceptor make_acceptor(asio::io_context& ctx, unsigned short port) {
  tcp::acceptor a(ctx);
  const tcp::endpoint at(asio::ip::address_v4::loopback(), port);
  a.open(at.protocol());
  a.set_option(asio::socket_base::reuse_address(true));
  const int one = 1;
  ::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  a.bind(at);
  a.listen(1024);
  return a;
}

}  // namespace

int main(int argc, char** argv) {
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
    asio::co_spawn(*contexts.back(), serve(make_acceptor(*contexts.back(), port)), asio::detached);
  }
  asio::signal_set signals(*contexts[0], SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    for (auto& c : contexts) c->stop();
  });
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&, i] { contexts[i]->run(); });
  std::printf("asio echo server on 127.0.0.1:%u, %u threads\n", port, threads);
  std::fflush(stdout);
  contexts[0]->run();
  for (auto& w : workers) w.join();
}
