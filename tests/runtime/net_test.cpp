// TCP and Unix-domain streams and listeners: echo at scale, errors, cancellation,
// multishot accept, SO_REUSEPORT, end of stream and backpressure.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>

#include "../needs_feature.hpp"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using corio::address;
using corio::task;
using corio::tcp_listener;
using corio::tcp_stream;
using corio::unix_listener;
using corio::unix_stream;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }
std::string text_of(std::span<const std::byte> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

const address loopback_any = address::parse("127.0.0.1:0");

// Raises RLIMIT_NOFILE to at least `need`; false if the hard limit is lower.
bool ensure_fd_limit(rlim_t need) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  if (lim.rlim_cur >= need) return true;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need) return false;
  lim.rlim_cur = need;
  return ::setrlimit(RLIMIT_NOFILE, &lim) == 0;
}

bool has_ipv6_loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Resident set size in bytes.
long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

}  // namespace

TEST_CASE("connecting to a closed port fails with the address and the errno text") {
  corio::loop lp;
  auto main = []() -> task<std::string> {
    try {
      (void)co_await tcp_stream::connect(address::parse("127.0.0.1:1"));
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::connection_refused);
      co_return e.what();
    }
    co_return "connected?";
  };
  CHECK(lp.run(main()) == "connect 127.0.0.1:1: Connection refused");
}

CORIO_TEST_IF("1,000 concurrent TCP connections each echo 100 messages with every byte checked",
              ensure_fd_limit(2 * 1000 + 64), "the RLIMIT_NOFILE hard limit is below 2064") {
  constexpr int connections = 1000, messages = 100;
  constexpr std::size_t message_size = 64;
  corio::loop lp;
  auto server = tcp_listener::bind(loopback_any, {.backlog = 2 * connections});
  std::size_t verified = 0, mismatches = 0, clean_eofs = 0;
  auto serve = [&]() -> task<> {
    corio::task_group handlers;
    for (int i = 0; i < connections; ++i) {
      tcp_stream accepted = co_await server.accept();
      handlers.spawn([s = std::move(accepted)]() mutable -> task<> {
        std::array<std::byte, 4096> buf;
        for (;;) {
          const int n = co_await s.read_some(buf);
          if (n == 0) break;
          co_await s.write_all(std::span(buf).first(static_cast<std::size_t>(n)));
        }
      });
    }
    co_await handlers.wait();
  };
  auto client = [&](int c) -> task<> {
    tcp_stream s = co_await tcp_stream::connect(server.local_address());
    std::array<std::byte, message_size> out, in;
    for (int m = 0; m < messages; ++m) {
      for (std::size_t i = 0; i < message_size; ++i) out[i] = std::byte(static_cast<unsigned char>(c * 7 + m * 13 + i));
      co_await s.write_all(out);
      co_await s.read_exact(in);
      if (in == out)
        verified += message_size;
      else
        ++mismatches;
    }
    s.shutdown(SHUT_WR);
    if (co_await s.read_some(in) == 0) ++clean_eofs;  // the server closed after our EOF
  };
  auto main = [&]() -> task<> {
    corio::task_group g;
    g.spawn(serve);
    for (int c = 0; c < connections; ++c) g.spawn([&client, c]() { return client(c); });
    co_await g.wait();
  };
  lp.run(main());
  CHECK(mismatches == 0);
  CHECK(verified == std::size_t{connections} * messages * message_size);
  CHECK(clean_eofs == connections);
}

TEST_CASE("a recv cancelled by a stop token leaves the socket usable for the next message") {
  corio::loop lp;
  auto server = tcp_listener::bind(loopback_any);
  auto main = [&]() -> task<std::string> {
    tcp_stream client = co_await tcp_stream::connect(server.local_address());
    tcp_stream peer = co_await server.accept();
    std::stop_source source;
    const std::stop_token token = source.get_token();
    corio::task_group g;
    g.spawn([&]() -> task<> {
      co_await corio::sleep_for(20ms);
      source.request_stop();
    });
    std::array<std::byte, 64> buf;
    std::string error;
    try {
      (void)co_await client.read_some(buf, {.token = &token, .deadline = {}});
    } catch (const corio::operation_cancelled& e) {
      error = e.what();
    }
    co_await g.wait();
    CHECK(error == "recv fd " + std::to_string(client.fd()) + ": Operation canceled");
    co_await peer.write_all(bytes_of("the next message"));
    const int n = co_await client.read_some(buf);
    co_return text_of(std::span(buf).first(static_cast<std::size_t>(n)));
  };
  CHECK(lp.run(main()) == "the next message");
}

TEST_CASE("a Unix-domain listener echoes and removes its socket file when closed") {
  corio::loop lp;
  const std::string path = "/tmp/corio_net_" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  auto main = [&]() -> task<std::string> {
    auto server = unix_listener::bind(address::parse("unix:" + path));
    CHECK(server.local_address().to_string() == "unix:" + path);
    CHECK(::access(path.c_str(), F_OK) == 0);
    corio::task_group g;
    g.spawn([&]() -> task<> {
      unix_stream s = co_await server.accept();
      std::array<std::byte, 256> buf;
      for (int n; (n = co_await s.read_some(buf)) > 0;)
        co_await s.write_all(std::span(buf).first(static_cast<std::size_t>(n)));
    });
    unix_stream c = co_await unix_stream::connect(address::parse(path));
    std::string got;
    for (const std::string msg : {"ping", "over unix", "sockets"}) {
      co_await c.write_all(bytes_of(msg));
      std::string back(msg.size(), '\0');
      co_await c.read_exact(std::as_writable_bytes(std::span(back)));
      got += back + "|";
    }
    c.close();
    co_await g.wait();
    server.close();
    CHECK(::access(path.c_str(), F_OK) != 0);
    co_return got;
  };
  CHECK(lp.run(main()) == "ping|over unix|sockets|");
}

TEST_CASE("streams and listeners refuse addresses of the other family") {
  CHECK_THROWS_WITH_AS((void)tcp_listener::bind(address::parse("unix:/tmp/x")),
                       "tcp bind: unix:/tmp/x is not an IP address", std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)unix_listener::bind(loopback_any), "unix bind: 127.0.0.1:0 is not a unix address",
                       std::invalid_argument);
}

void accepts_bounded(bool multishot) {
  constexpr int clients = 200;
  {
    corio::loop lp;
    auto server = tcp_listener::bind(loopback_any, {.backlog = 512});
    auto incoming = server.incoming({.max_pending = 8, .try_multishot = multishot});
    auto main = [&]() -> task<> {
      std::vector<tcp_stream> mine;
      std::set<std::uint16_t> client_ports, accepted_ports;
      for (int i = 0; i < clients; ++i) {
        mine.push_back(co_await tcp_stream::connect(server.local_address()));
        client_ports.insert(mine.back().local_address().port());
      }
      // The clients all connected before any next(): the buffer holds at most 8 of them.
      co_await corio::sleep_for(20ms);
      CHECK(incoming.pending() <= 8);
      for (int i = 0; i < clients; ++i) {
        tcp_stream s = co_await incoming.next();
        accepted_ports.insert(s.peer_address().port());
      }
      CHECK(accepted_ports.size() == clients);
      CHECK(accepted_ports == client_ports);
      CHECK(incoming.is_multishot() == multishot);
    };
    lp.run(main());
  }
}

CORIO_TEST_NEEDS("multishot accept takes many connections from one request, bounded by max_pending",
                 corio::kernel_feature::multishot_accept) {
  accepts_bounded(true);
}

TEST_CASE("without multishot, the acceptor takes the same connections one request each") {
  accepts_bounded(false);
}

TEST_CASE("a stop request ends a multishot next() and the acceptor keeps working") {
  corio::loop lp;
  auto server = tcp_listener::bind(loopback_any);
  auto incoming = server.incoming();
  auto main = [&]() -> task<std::string> {
    std::stop_source source;
    const std::stop_token token = source.get_token();
    corio::task_group g;
    g.spawn([&]() -> task<> {
      co_await corio::sleep_for(20ms);
      source.request_stop();
    });
    std::string error;
    try {
      (void)co_await incoming.next({.token = &token, .deadline = {}});
    } catch (const corio::operation_cancelled& e) {
      error = e.what();
    }
    co_await g.wait();
    tcp_stream c = co_await tcp_stream::connect(server.local_address());
    tcp_stream s = co_await incoming.next();
    CHECK(s.peer_address() == c.local_address());
    co_return error;
  };
  CHECK(lp.run(main()) == "accept fd " + std::to_string(server.fd()) + ": Operation canceled");
}

TEST_CASE("two listeners share one port with reuse_port and both receive connections") {
  corio::loop lp;
  auto first = tcp_listener::bind(loopback_any, {.reuse_port = true});
  auto second = tcp_listener::bind(first.local_address(), {.reuse_port = true});
  CHECK(second.local_address() == first.local_address());
  constexpr int total = 64;
  int counts[2] = {0, 0};
  auto main = [&]() -> task<> {
    std::stop_source done;
    const std::stop_token token = done.get_token();
    corio::task_group g;
    auto accept_on = [&](tcp_listener& l, int& count) -> task<> {
      try {
        for (;;) {
          tcp_stream s = co_await l.accept({.token = &token, .deadline = {}});
          ++count;
          if (counts[0] + counts[1] == total) done.request_stop();
        }
      } catch (const corio::operation_cancelled&) {
      }
    };
    g.spawn([&]() { return accept_on(first, counts[0]); });
    g.spawn([&]() { return accept_on(second, counts[1]); });
    std::vector<tcp_stream> clients;
    for (int i = 0; i < total; ++i) clients.push_back(co_await tcp_stream::connect(first.local_address()));
    co_await g.wait();
  };
  lp.run(main());
  CHECK(counts[0] + counts[1] == total);
  CHECK(counts[0] > 0);  // each by chance 2^-63 to fail
  CHECK(counts[1] > 0);
  const std::string taken = first.local_address().to_string();
  CHECK_THROWS_WITH_AS((void)tcp_listener::bind(first.local_address()),
                       ("bind " + taken + ": Address already in use").c_str(), std::system_error);
}

TEST_CASE("read_exact at end of stream throws end_of_stream saying how much arrived") {
  corio::loop lp;
  auto main = []() -> task<std::string> {
    auto [a, b] = unix_stream::pair();
    co_await a.write_all(bytes_of("abc"));
    a.close();
    std::array<std::byte, 10> buf;
    try {
      co_await b.read_exact(buf);
    } catch (const corio::end_of_stream& e) {
      co_return e.what() + std::string("|") + text_of(std::span(buf).first(3));
    }
    co_return "no error";
  };
  const std::string expected_fd_message = "end of stream after 3 of 10 bytes|abc";
  const std::string got = lp.run(main());
  CHECK(got.starts_with("read_exact fd "));
  CHECK(got.ends_with(expected_fd_message));
}

TEST_CASE("shutdown(SHUT_WR) makes the peer read end of stream while the other direction stays open") {
  corio::loop lp;
  auto server = tcp_listener::bind(loopback_any);
  auto main = [&]() -> task<std::string> {
    tcp_stream c = co_await tcp_stream::connect(server.local_address());
    tcp_stream s = co_await server.accept();
    co_await c.write_all(bytes_of("last words"));
    c.shutdown(SHUT_WR);
    std::array<std::byte, 64> buf;
    std::string got;
    for (int n; (n = co_await s.read_some(buf)) > 0;) got += text_of(std::span(buf).first(static_cast<std::size_t>(n)));
    CHECK(co_await s.read_some(buf) == 0);  // stays at end of stream
    co_await s.write_all(bytes_of("reply"));
    std::array<std::byte, 5> reply;
    co_await c.read_exact(reply);
    co_return got + "|" + text_of(reply);
  };
  CHECK(lp.run(main()) == "last words|reply");
}

TEST_CASE("linger: the peer reads the reply and a clean end of stream although it sent more than was read") {
  corio::loop lp;
  auto server = tcp_listener::bind(loopback_any);
  const std::vector<std::byte> flood(256 * 1024, std::byte{'q'});  // never read by the server
  std::string seen;
  bool lingered = false;
  auto main = [&]() -> task<> {
    tcp_stream c = co_await tcp_stream::connect(server.local_address());
    tcp_stream s = co_await server.accept();
    auto client = [&]() -> task<> {
      co_await c.write_all(flood);
      std::array<std::byte, 64> buf;
      for (int n; (n = co_await c.read_some(buf)) > 0;) seen += text_of(std::span(buf).first(static_cast<std::size_t>(n)));
      c.close();  // after end of stream: lets the server's linger end
    };
    auto server_side = [&]() -> task<> {
      co_await s.write_all(bytes_of("-ERR bye\r\n"));
      co_await s.linger(std::size_t{1} << 20, 20s);
      lingered = true;
    };
    corio::task_group g;
    g.spawn(client);
    g.spawn(server_side);
    co_await g.wait();
  };
  lp.run(main());
  // Without the lingering close the reset could make recv fail with ECONNRESET instead.
  CHECK(seen == "-ERR bye\r\n");
  CHECK(lingered);
}

TEST_CASE("linger stops after max_bytes even when the peer keeps sending") {
  corio::loop lp;
  auto server = tcp_listener::bind(loopback_any);
  auto main = [&]() -> task<std::chrono::steady_clock::duration> {
    tcp_stream c = co_await tcp_stream::connect(server.local_address());
    tcp_stream s = co_await server.accept();
    co_await c.write_all(std::vector<std::byte>(64 * 1024, std::byte{'x'}));  // fits the buffers
    const auto start = std::chrono::steady_clock::now();
    co_await s.linger(16 * 1024, 30s);  // the peer never closes: only the byte bound ends it
    co_return std::chrono::steady_clock::now() - start;
  };
  CHECK(lp.run(main()) < 20s);
}

TEST_CASE("write_all to a peer that does not read suspends without buffering until its deadline") {
  corio::loop lp;
  auto server = tcp_listener::bind(loopback_any);
  std::vector<std::byte> big(64 << 20, std::byte{0x5a});  // touched: resident before we measure
  auto main = [&]() -> task<> {
    tcp_stream reader = co_await tcp_stream::connect(server.local_address());  // never reads
    tcp_stream writer = co_await server.accept();
    const long rss_before = resident_bytes();
    const auto start = std::chrono::steady_clock::now();
    std::string error;
    try {
      co_await writer.write_all(big, corio::within(300ms));
    } catch (const corio::timed_out& e) {
      error = e.what();
    }
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(error == "send fd " + std::to_string(writer.fd()) + ": Connection timed out");
    CHECK(waited >= 250ms);
    // What left our buffer sits in the two kernel socket buffers, far below 64 MiB.
    int unsent = 0, unread = 0;
    REQUIRE(::ioctl(writer.fd(), SIOCOUTQ, &unsent) == 0);
    REQUIRE(::ioctl(reader.fd(), SIOCINQ, &unread) == 0);
    MESSAGE("kernel holds " << unsent << " unsent + " << unread << " unread bytes");
    CHECK(unsent + unread > 0);
    CHECK(unsent + unread < (32 << 20));
    CHECK(resident_bytes() - rss_before < (16 << 20));
  };
  lp.run(main());
}

CORIO_TEST_IF("TCP over IPv6 loopback echoes when the host has IPv6", has_ipv6_loopback(),
              "this host has no IPv6 loopback") {
  corio::loop lp;
  std::optional<tcp_listener> server;
  server.emplace(tcp_listener::bind(address::parse("[::1]:0")));
  auto main = [&]() -> task<std::string> {
    tcp_stream c = co_await tcp_stream::connect(server->local_address());
    tcp_stream s = co_await server->accept();
    CHECK(s.peer_address() == c.local_address());
    CHECK(c.peer_address().to_string() == server->local_address().to_string());
    co_await c.write_all(bytes_of("v6"));
    std::array<std::byte, 2> buf;
    co_await s.read_exact(buf);
    co_return text_of(buf);
  };
  CHECK(lp.run(main()) == "v6");
}

CORIO_TEST_NEEDS("destroying a multishot acceptor closes the fds it buffered and frees its request",
                 corio::kernel_feature::multishot_accept) {
  auto count_fds = [] {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) n += entry.is_symlink() ? 1 : 0;
    return n;
  };
  // max_pending 4: paused when destroyed (2 clients stay in the backlog); 64: still armed,
  // so the state outlives the object until the cancel's CQE.
  for (const std::size_t max_pending : {std::size_t{4}, std::size_t{64}}) {
    CAPTURE(max_pending);
    corio::loop lp;
    auto server = tcp_listener::bind(loopback_any);
    auto main = [&]() -> task<> {
      co_await corio::sleep_for(1ms);  // the loop has slept once: its wake-up read is armed
      const std::size_t idle_in_flight = lp.in_flight();
      std::vector<tcp_stream> clients;
      int before = 0;
      {
        auto incoming = server.incoming({.max_pending = max_pending, .try_multishot = true});
        tcp_stream first_client = co_await tcp_stream::connect(server.local_address());
        tcp_stream first = co_await incoming.next();  // armed from here on
        first_client.close();
        first.close();
        before = count_fds();
        for (int i = 0; i < 6; ++i) clients.push_back(co_await tcp_stream::connect(server.local_address()));
        co_await corio::sleep_for(20ms);
        CHECK(incoming.pending() == std::min<std::size_t>(6, max_pending));
      }  // the buffered fds close now; an armed request ends at its final CQE
      co_await corio::sleep_for(20ms);
      CHECK(lp.in_flight() == idle_in_flight);
      const int backlog = max_pending == 4 ? 2 : 0;
      CHECK(count_fds() == before + 6);  // only our clients remain
      for (int i = 0; i < backlog; ++i) {
        tcp_stream late = co_await server.accept();
        CHECK(late.peer_address() == clients[4 + i].local_address());
      }
    };
    lp.run(main());
  }
}
