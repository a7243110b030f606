// corio::server on a two-shard runtime: graceful shutdown (in-flight request answered,
// idle connection closed), the grace deadline cancelling a stuck handler, the connection
// limit, idle and read timeouts, signals and stop tokens.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/runtime.hpp>
#include <corio/runtime/server.hpp>
#include <corio/runtime/signal.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
using corio::address;
using corio::connection;
using corio::task;
using corio::tcp_stream;
using clock_type = std::chrono::steady_clock;

namespace {

const address loopback_any = address::parse("127.0.0.1:0");

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s)); }

// Everything the peer sends until it closes.
task<std::string> read_to_end(tcp_stream& s) {
  std::string got;
  std::array<std::byte, 256> buf;
  for (int n; (n = co_await s.read_some(buf)) > 0;)
    got.append(reinterpret_cast<const char*>(buf.data()), static_cast<std::size_t>(n));
  co_return got;
}

task<std::string> round_trip(tcp_stream& s, std::string_view line) {
  co_await s.write_all(bytes_of(line));
  std::string got(line.size(), '\0');
  co_await s.read_exact(std::as_writable_bytes(std::span(got)));
  co_return got;
}

// Echoes lines until the client closes.
task<void> echo_lines(connection& c) {
  for (;;) {
    const std::string_view line = co_await c.reader().read_until("\n", 256);
    if (line.empty()) co_return;
    co_await c.writer().write(line);
    co_await c.writer().flush();
  }
}

template <class Pred>
task<void> wait_until(Pred pred) {
  const auto give_up = clock_type::now() + 20s;
  while (!pred()) {
    if (clock_type::now() > give_up) throw std::runtime_error("wait_until: condition not met within 20 s");
    co_await corio::sleep_for(2ms);
  }
}

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

}  // namespace

TEST_CASE("shutdown lets an in-flight request finish and closes idle connections") {
  std::atomic<int> started{0};
  corio::server srv(
      loopback_any,
      [&](connection& c) -> task<void> {
        for (;;) {
          const std::string_view line = co_await c.reader().read_until("\n", 100);
          if (line.empty()) co_return;
          started.fetch_add(1);
          co_await corio::sleep_for(1s);  // the request is in flight when stop() comes
          co_await c.writer().write(c.draining() ? "done, bye\n" : "done\n");
          co_await c.writer().flush();
        }
      },
      {.shutdown_grace = 20s});
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    int sig = -1;
    g.spawn([&]() -> task<void> { sig = co_await srv.serve(); });
    tcp_stream idle = co_await tcp_stream::connect(srv.local_address());
    tcp_stream busy = co_await tcp_stream::connect(srv.local_address());
    co_await busy.write_all(bytes_of("request\n"));
    co_await wait_until([&] { return started.load() == 1 && srv.stats().active == 2; });
    const auto t0 = clock_type::now();
    srv.stop();
    const std::string idle_got = co_await read_to_end(idle);
    const double idle_ms = ms_since(t0);
    const std::string busy_got = co_await read_to_end(busy);
    co_await g.wait();
    CHECK(idle_got.empty());
    CHECK(idle_ms < 800);  // closed at once, not after the request's 1 s
    CHECK(busy_got == "done, bye\n");
    CHECK(sig == 0);
    CHECK(srv.stats().accepted == 2);
    CHECK(srv.stats().active == 0);
  };
  rt.run(body());
}

TEST_CASE("the shutdown deadline cancels a handler that does not finish") {
  std::atomic<int> started{0}, cancelled{0};
  corio::server srv(
      loopback_any,
      [&](connection& c) -> task<void> {
        (void)co_await c.reader().read_until("\n", 100);
        started.fetch_add(1);
        try {
          co_await corio::sleep_for(1h);
        } catch (const corio::operation_cancelled&) {
          cancelled.fetch_add(1);
          throw;
        }
      },
      {.shutdown_grace = 200ms});
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> { (void)co_await srv.serve(); });
    tcp_stream stuck = co_await tcp_stream::connect(srv.local_address());
    co_await stuck.write_all(bytes_of("go\n"));
    co_await wait_until([&] { return started.load() == 1; });
    const auto t0 = clock_type::now();
    srv.stop();
    const std::string got = co_await read_to_end(stuck);
    co_await g.wait();
    const double ms = ms_since(t0);
    CHECK(got.empty());
    CHECK(cancelled.load() == 1);
    CHECK(ms >= 150);
    CHECK(ms < 5000);
    CHECK(srv.stats().failed == 0);
  };
  rt.run(body());
}

TEST_CASE("connections beyond max_connections are accepted and closed at once") {
  corio::server srv(loopback_any, echo_lines, {.max_connections = 2});
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> { (void)co_await srv.serve(); });
    tcp_stream c1 = co_await tcp_stream::connect(srv.local_address());
    tcp_stream c2 = co_await tcp_stream::connect(srv.local_address());
    CHECK(co_await round_trip(c1, "one\n") == "one\n");
    CHECK(co_await round_trip(c2, "two\n") == "two\n");
    tcp_stream c3 = co_await tcp_stream::connect(srv.local_address());
    CHECK((co_await read_to_end(c3)).empty());  // closed by the server, nothing sent
    CHECK(srv.stats().rejected == 1);
    // A slot frees when a connection ends; the next client is served.
    c1.close();
    co_await wait_until([&] { return srv.stats().active == 1; });
    tcp_stream c4 = co_await tcp_stream::connect(srv.local_address());
    CHECK(co_await round_trip(c4, "four\n") == "four\n");
    CHECK(co_await round_trip(c2, "two again\n") == "two again\n");
    srv.stop();
    co_await g.wait();
    const corio::server_stats st = srv.stats();
    CHECK(st.accepted == 3);
    CHECK(st.rejected == 1);
    CHECK(st.active == 0);
  };
  rt.run(body());
}

TEST_CASE("the idle timeout closes a connection that sends nothing") {
  corio::server srv(loopback_any, echo_lines, {.idle_timeout = 150ms, .read_timeout = 20s});
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> { (void)co_await srv.serve(); });
    tcp_stream c = co_await tcp_stream::connect(srv.local_address());
    CHECK(co_await round_trip(c, "hello\n") == "hello\n");
    const auto t0 = clock_type::now();
    const std::string rest = co_await read_to_end(c);  // then silence
    const double ms = ms_since(t0);
    CHECK(rest.empty());
    CHECK(ms >= 100);
    CHECK(ms < 10000);
    CHECK(srv.stats().timed_out == 1);
    srv.stop();
    co_await g.wait();
  };
  rt.run(body());
}

TEST_CASE("a connection that keeps talking outlives its idle timeout many times over") {
  corio::server srv(loopback_any, echo_lines, {.idle_timeout = 200ms, .read_timeout = 200ms});
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> { (void)co_await srv.serve(); });
    tcp_stream c = co_await tcp_stream::connect(srv.local_address());
    for (int i = 0; i < 12; ++i) {  // about 600 ms in all, 50 ms of silence each time
      const std::string line = "line " + std::to_string(i) + "\n";
      CHECK(co_await round_trip(c, line) == line);
      co_await corio::sleep_for(50ms);
    }
    CHECK(srv.stats().timed_out == 0);
    srv.stop();
    co_await g.wait();
  };
  rt.run(body());
}

TEST_CASE("a handler failing with an unexpected exception is counted and its connection closed") {
  corio::server srv(loopback_any, [](connection& c) -> task<void> {
    (void)co_await c.reader().read_until("\n", 100);
    throw std::runtime_error("handler bug");
  });
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> { (void)co_await srv.serve(); });
    tcp_stream c = co_await tcp_stream::connect(srv.local_address());
    co_await c.write_all(bytes_of("boom\n"));
    CHECK((co_await read_to_end(c)).empty());
    co_await wait_until([&] { return srv.stats().active == 0; });
    CHECK(srv.stats().failed == 1);
    CHECK(srv.stats().timed_out == 0);
    srv.stop();
    co_await g.wait();
  };
  rt.run(body());
}

TEST_CASE("the read timeout closes a connection stuck in the middle of a message") {
  corio::server srv(loopback_any, echo_lines, {.idle_timeout = 20s, .read_timeout = 150ms});
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> { (void)co_await srv.serve(); });
    tcp_stream c = co_await tcp_stream::connect(srv.local_address());
    CHECK(co_await round_trip(c, "whole\n") == "whole\n");
    const auto t0 = clock_type::now();
    co_await c.write_all(bytes_of("half a li"));  // never finished
    const std::string rest = co_await read_to_end(c);
    const double ms = ms_since(t0);
    CHECK(rest.empty());
    CHECK(ms >= 100);
    CHECK(ms < 10000);  // far below the idle timeout
    CHECK(srv.stats().timed_out == 1);
    srv.stop();
    co_await g.wait();
  };
  rt.run(body());
}

TEST_CASE("serve returns the number of the signal that stopped it") {
  corio::signal_set signals{SIGUSR1};  // before the runtime's threads
  corio::server srv(loopback_any, echo_lines);
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    int sig = -1;
    g.spawn([&]() -> task<void> { sig = co_await srv.serve(&signals); });
    tcp_stream c = co_await tcp_stream::connect(srv.local_address());
    CHECK(co_await round_trip(c, "ping\n") == "ping\n");
    ::raise(SIGUSR1);  // to this thread, shard 0, which waits on the signalfd
    co_await g.wait();
    CHECK(sig == SIGUSR1);
    CHECK((co_await read_to_end(c)).empty());
  };
  rt.run(body());
}

TEST_CASE("a stop request on serve's own token shuts the server down") {
  corio::server srv(loopback_any, echo_lines);
  corio::runtime rt({.shards = 2, .pin = false});
  auto body = [&]() -> task<void> {
    corio::task_group g;
    int sig = -1;
    g.spawn([&]() -> task<void> { sig = co_await srv.serve(); });
    tcp_stream c = co_await tcp_stream::connect(srv.local_address());
    CHECK(co_await round_trip(c, "ping\n") == "ping\n");
    g.request_stop();
    co_await g.wait();
    CHECK(sig == 0);
    CHECK((co_await read_to_end(c)).empty());
  };
  rt.run(body());
}

TEST_CASE("serve outside a runtime and a second serve are refused with clear errors") {
  corio::server srv(loopback_any, echo_lines);
  corio::loop lp;
  std::string outside;
  try {
    (void)lp.run(srv.serve());
  } catch (const std::logic_error& e) {
    outside = e.what();
  }
  CHECK(outside == "corio::shard_count: not called on a shard of a running corio::runtime");
  srv.stop();
  corio::runtime rt({.shards = 1, .pin = false});
  auto body = [&]() -> task<void> {
    CHECK(co_await srv.serve() == 0);  // stopped before it started: returns at once
    std::string twice;
    try {
      (void)co_await srv.serve();
    } catch (const std::logic_error& e) {
      twice = e.what();
    }
    CHECK(twice == "corio::server::serve: called twice (a server serves once)");
  };
  rt.run(body());
  CHECK_THROWS_AS(corio::server(loopback_any, nullptr), std::invalid_argument);
}
