// redis::client against a redis-server the test starts (password, temporary directory,
// free port): pipelining from many coroutines in few writes, the handshake (ACL user,
// requirepass, SELECT, CLIENT SETNAME), refused credentials and permissions as
// auth_error at once and without the password, deadlines and stop requests, reconnects
// after a killed connection and a server restart (re-sending only idempotent commands).
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/dist/redis_client.hpp>
#include <corio/runtime/errors.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/resolve.hpp>
#include <corio/runtime/timer.hpp>

#include <corio/dist/command_parser.hpp>

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stop_token>
#include <thread>
#include <string>
#include <vector>

#include "../needs_feature.hpp"
#include "fake_redis.hpp"
#include "redis_server.hpp"

using namespace std::chrono_literals;
using corio::redis::auth_error;
using corio::redis::client;
using corio::redis::connection_error;
using corio::redis::server_error;
using corio::resp::reply;
using corio_test::options_for;
using corio_test::redis_server;
using steady = std::chrono::steady_clock;

namespace {

template <class F>
void on_loop(F f) {
  corio::loop lp;
  lp.run(f());
}

// Answers the first `loading` commands with -LOADING, then every command with "+ok".
corio_test::fake_redis::answer_fn loading(int n) {
  return [n](const std::vector<std::string_view>&, int i) -> std::string {
    return i < n ? "-LOADING Redis is loading the dataset in memory\r\n" : "+ok\r\n";
  };
}

}  // namespace

TEST_CASE("-LOADING is retried after a backoff (the command was not run), and given up after reconnect_for") {
  {
    corio_test::fake_redis fake(loading(3));
    on_loop([&]() -> corio::task<void> {
      client c = co_await client::connect(corio::redis::options(fake.address()));
      CHECK((co_await c.command("INCR", "k")).str == "ok");  // not idempotent, yet sent again: it was not run
    });
    CHECK(fake.commands() == 4);
  }
  corio_test::fake_redis fake(loading(1000));
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(corio::redis::options(fake.address()).reconnect_for(100ms));
    try {
      co_await c.command("GET", "k");
      FAIL("no error");
    } catch (const server_error& e) {
      CHECK(e.code() == "LOADING");
    }
  });
  CHECK(fake.commands() >= 2);
  CHECK(fake.commands() <= 6);  // 10, 20, 40 ms backoff within 100 ms: a few tries, no storm
}

TEST_CASE("parse_endpoint reads host:port, redis:// URLs and unix paths") {
  auto e = corio::redis::parse_endpoint("redis://worker:s3cret@localhost:7000/2");
  CHECK(e.address == "localhost:7000");  // resolved at connect, not here
  CHECK(e.user == "worker");
  CHECK(e.password == "s3cret");
  CHECK(e.db == 2);
  CHECK(corio::redis::parse_endpoint("10.0.0.5").address == "10.0.0.5:6379");
  CHECK(corio::redis::parse_endpoint("[::1]:6380").address == "[::1]:6380");
  CHECK(corio::redis::parse_endpoint("unix:/run/redis.sock").address == "unix:/run/redis.sock");
  try {
    (void)corio::redis::parse_endpoint("redis://u:s3cret@host/x");
    FAIL("no error");
  } catch (const std::invalid_argument& err) {
    CHECK(std::string(err.what()) == "bad redis address \"redis://u:***@host/x\": the database \"x\" is not a number");
  }
  CHECK(corio::redis::parse_endpoint("redis.internal").address == "redis.internal:6379");
  CHECK(corio::redis::parse_endpoint("redis://cache.test:7001/1").address == "cache.test:7001");
  CHECK_THROWS_WITH_AS((void)corio::redis::parse_endpoint("redis.internal:99999"),
                       "bad redis address \"redis.internal:99999\": the port \"99999\" is not a number in 0..65535",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)corio::redis::parse_endpoint("::1:6379"),
                       "bad redis address \"::1:6379\": an IPv6 host needs brackets: [HOST]:PORT", std::invalid_argument);
}

REDIS_TEST_CASE("the client connects through a host name, and a name that does not resolve fails the connect naming it") {
  redis_server server;
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(
        corio::redis::options("localhost:" + std::to_string(server.port())).password(server.password()));
    CHECK(c.address() == "localhost:" + std::to_string(server.port()));
    co_await c.command("SET", "named", "yes");
    CHECK((co_await c.command("GET", "named")).str == "yes");
    client u = co_await client::connect(corio::redis::options("redis://localhost:" + std::to_string(server.port()) + "/3")
                                            .password(server.password()));
    CHECK((co_await u.command("GET", "named")).is_nil());  // database 3, not 0
  });
  corio::detail::getaddrinfo_hook = [](const char*, const char*, const addrinfo*, addrinfo**) { return EAI_NONAME; };
  on_loop([&]() -> corio::task<void> {
    try {
      co_await client::connect(corio::redis::options("redis.test:6379"));
      FAIL("no error");
    } catch (const connection_error& e) {
      CHECK(std::string(e.what()) ==
            "redis redis.test:6379: cannot connect: resolve \"redis.test\": Name or service not known");
    }
  });
  corio::detail::getaddrinfo_hook = &::getaddrinfo;
}

REDIS_TEST_CASE("commands of a thousand coroutines share one connection and go out in one write") {
  redis_server server;
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(options_for(server));
    std::vector<std::string> got(1000);
    corio::task_group g;
    for (int i = 0; i < 1000; ++i)
      g.spawn([&c, i]() -> corio::task<void> {
        co_await c.command("SET", "key:" + std::to_string(i), "value " + std::to_string(i));
      });
    co_await g.wait();
    CHECK(c.stats().commands == 1000);
    CHECK(c.stats().writes == 1);
    for (int i = 0; i < 1000; ++i)
      g.spawn([&c, &got, i]() -> corio::task<void> {
        got[static_cast<std::size_t>(i)] = (co_await c.command("GET", "key:" + std::to_string(i))).str;
      });
    co_await g.wait();
    for (int i = 0; i < 1000; ++i) CHECK(got[static_cast<std::size_t>(i)] == "value " + std::to_string(i));
    CHECK(c.stats().writes == 2);
    // A 4 MiB value each way.
    const std::string big(4 << 20, 'b');
    co_await c.command("SET", "big", big);
    CHECK((co_await c.command("GET", "big")).str == big);
  });
}

REDIS_TEST_CASE("the handshake authenticates an ACL user, selects the database and names the client") {
  redis_server server;
  on_loop([&]() -> corio::task<void> {
    client admin = co_await client::connect(options_for(server));
    co_await admin.command("ACL", "SETUSER", "worker", "on", ">worker-pw", "~*", "&*", "+@all");
    client w = co_await client::connect(
        corio::redis::options("redis://worker:worker-pw@" + server.address() + "/3").client_name("worker-7"));
    CHECK((co_await w.command("CLIENT", "GETNAME")).str == "worker-7");
    CHECK((co_await w.command("ACL", "WHOAMI")).str == "worker");
    co_await w.command("SET", "where", "db3");
    CHECK((co_await admin.command("GET", "where")).is_nil());
    co_await admin.command("SELECT", "3");
    CHECK((co_await admin.command("GET", "where")).str == "db3");
  });
}

REDIS_TEST_CASE("refused credentials and permissions are auth_error at once, never retried, without the password") {
  redis_server server;
  on_loop([&]() -> corio::task<void> {
    client admin = co_await client::connect(options_for(server));
    co_await admin.command("ACL", "SETUSER", "reader", "on", ">reader-pw", "~*", "+get", "+ping");
    co_await admin.command("ACL", "LOG", "RESET");

    struct attempt {
      corio::redis::options o;
      std::string code;
    };
    std::vector<attempt> attempts = {
        {corio::redis::options(server.address()).password("wrong-password-123"), "WRONGPASS"},
        {corio::redis::options(server.address()).user("nobody").password("wrong-password-123"), "WRONGPASS"},
    };
    for (auto& a : attempts) {
      const auto start = steady::now();
      try {
        client c = co_await client::connect(a.o);
        FAIL("connected with bad credentials");
      } catch (const auth_error& e) {
        CHECK(e.code() == a.code);
        CHECK(std::string(e.what()).find("wrong-password-123") == std::string::npos);
        CHECK(std::string(e.what()).find(server.address()) != std::string::npos);
        MESSAGE(std::string(e.what()));
      }
      CHECK(steady::now() - start < 2s);
    }
    // One failed AUTH each in the server's log: no retries.
    const reply log = co_await admin.command("ACL", "LOG");
    std::int64_t failures = 0;
    for (const reply& entry : log.elements)
      for (std::size_t i = 0; i + 1 < entry.elements.size(); i += 2)
        if (entry.elements[i].str == "count") failures += entry.elements[i + 1].integer;
    CHECK(failures == 2);

    // No password for a server that wants one: NOAUTH on the first command.
    client anonymous = co_await client::connect(corio::redis::options(server.address()));
    CHECK_THROWS_WITH_AS(co_await anonymous.command("GET", "k"),
                         doctest::Contains("NOAUTH"), auth_error);

    // An ACL user without the command: NOPERM, and the client stays usable.
    client reader = co_await client::connect(
        corio::redis::options(server.address()).user("reader").password("reader-pw"));
    try {
      co_await reader.command("XADD", "s", "*", "f", "v");
      FAIL("XADD allowed");
    } catch (const auth_error& e) {
      CHECK(e.code() == "NOPERM");
      MESSAGE(std::string(e.what()));
    }
    CHECK((co_await reader.command("PING")).str == "PONG");
  });
}

REDIS_TEST_CASE("a deadline or a stop request ends the wait and the connection stays in order") {
  redis_server server;
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(options_for(server));
    co_await c.command("SET", "k", "v");
    const auto start = steady::now();
    CHECK_THROWS_AS(co_await c.command(corio::redis::command_options{.deadline = steady::now() + 100ms}, "BLPOP", "empty", "1"), corio::timed_out);
    CHECK(steady::now() - start < 900ms);
    // The BLPOP's reply (nil, after 1 s) is read and dropped; GET gets its own.
    CHECK((co_await c.command("GET", "k")).str == "v");

    std::stop_source stop;
    corio::task_group g;
    bool cancelled = false;
    g.spawn([&]() -> corio::task<void> {
      try {
        co_await c.command("BLPOP", "empty", "1");
      } catch (const corio::operation_cancelled&) {
        cancelled = true;
      }
    });
    co_await corio::sleep_for(50ms);
    g.request_stop();
    co_await g.wait();
    CHECK(cancelled);
    CHECK((co_await c.command("GET", "k")).str == "v");
  });
}

REDIS_TEST_CASE("a killed connection reconnects: idempotent commands are sent again, others fail as maybe applied") {
  redis_server server;
  on_loop([&]() -> corio::task<void> {
    client admin = co_await client::connect(options_for(server));
    client c = co_await client::connect(options_for(server));
    co_await c.command("SET", "k", "v");
    const std::int64_t id = (co_await c.command("CLIENT", "ID")).integer;

    std::string blpop_error, get_value;
    corio::task_group g;
    g.spawn([&]() -> corio::task<void> {
      try {
        co_await c.command("BLPOP", "empty", "5");
      } catch (const connection_error& e) {
        blpop_error = e.what();
      }
    });
    g.spawn([&]() -> corio::task<void> { get_value = (co_await c.command("GET", "k")).str; });
    co_await corio::sleep_for(100ms);  // both are on the wire, the GET behind the BLPOP
    const auto start = steady::now();
    co_await admin.command("CLIENT", "KILL", "ID", std::to_string(id));
    co_await g.wait();
    CHECK(steady::now() - start < 2s);
    CHECK(blpop_error.find("BLPOP in flight: it may or may not have been applied") != std::string::npos);
    CHECK(get_value == "v");
    CHECK(c.stats().reconnects == 1);
    CHECK((co_await c.command("CLIENT", "ID")).integer != id);
  });
}

namespace {

// "moving.test" stands for 127.0.0.1 at whatever port the test points it to.
std::atomic<int> moving_port{0};
int moving_resolver(const char*, const char*, const addrinfo* hints, addrinfo** out) {
  return ::getaddrinfo("127.0.0.1", std::to_string(moving_port.load()).c_str(), hints, out);
}

}  // namespace

REDIS_TEST_CASE("a reconnect looks the name up again and follows it to the server it names now") {
  redis_server a;
  redis_server b;
  corio::detail::getaddrinfo_hook = &moving_resolver;
  moving_port = a.port();
  on_loop([&]() -> corio::task<void> {
    client on_a = co_await client::connect(options_for(a));
    client on_b = co_await client::connect(options_for(b));
    co_await on_a.command("SET", "where", "a");
    co_await on_b.command("SET", "where", "b");
    client c = co_await client::connect(corio::redis::options("moving.test:6379").password(a.password()));
    CHECK((co_await c.command("GET", "where")).str == "a");
    const std::int64_t id = (co_await c.command("CLIENT", "ID")).integer;
    moving_port = b.port();
    co_await on_a.command("CLIENT", "KILL", "ID", std::to_string(id));
    CHECK((co_await c.command("GET", "where")).str == "b");
    CHECK(c.stats().reconnects == 1);
  });
  corio::detail::getaddrinfo_hook = &::getaddrinfo;
}

namespace {

std::atomic<int> loopback_lookups{0};
// Every name is 127.0.0.1 (the port comes from the address text).
int loopback_resolver(const char*, const char* service, const addrinfo* hints, addrinfo** out) {
  ++loopback_lookups;
  return ::getaddrinfo("127.0.0.1", service, hints, out);
}

}  // namespace

TEST_CASE("a cluster node announced by a host name is resolved and reached") {
  corio_test::fake_redis node([](const std::vector<std::string_view>&, int) -> std::string { return "+ok\r\n"; });
  const std::string port = std::to_string(node.port());
  // The seed says every slot lives on "node.test:PORT" (cluster-preferred-endpoint-type hostname).
  corio_test::fake_redis seed(
      [port](const std::vector<std::string_view>& argv, int) -> std::string {
        if (argv[0] == "CLUSTER")
          return "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\nnode.test\r\n:" + port + "\r\n";
        return "-ERR not the owner\r\n";
      },
      true);
  corio::detail::getaddrinfo_hook = &loopback_resolver;
  loopback_lookups = 0;
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(corio::redis::options(seed.address()));
    CHECK((co_await c.command("SET", "k", "v")).str == "ok");
    CHECK(c.stats().nodes == 2);
  });
  corio::detail::getaddrinfo_hook = &::getaddrinfo;
  CHECK(loopback_lookups == 1);
  CHECK(node.commands() == 1);
}

REDIS_TEST_CASE("a server restarted with AOF: the client reconnects and finds the data") {
  redis_server server({.aof = true});
  on_loop([&]() -> corio::task<void> {
    client c = co_await client::connect(options_for(server));
    co_await c.command("SET", "k", "kept");
    server.restart(SIGKILL);
    CHECK((co_await c.command("GET", "k")).str == "kept");
    CHECK(c.stats().reconnects == 1);
  });
}

TEST_CASE("a port nobody listens on is connection_error at once, naming the address") {
  const int port = corio_test::free_port();
  on_loop([&]() -> corio::task<void> {
    const auto start = steady::now();
    try {
      client c = co_await client::connect(
          corio::redis::options("127.0.0.1:" + std::to_string(port)).password("s3cret"));
      FAIL("connected");
    } catch (const connection_error& e) {
      CHECK(std::string(e.what()) ==
            "redis 127.0.0.1:" + std::to_string(port) + ": cannot connect: connect 127.0.0.1:" + std::to_string(port) +
                ": Connection refused");
    }
    CHECK(steady::now() - start < 2s);
  });
}

REDIS_TEST_CASE("reconnecting gives up after reconnect_for and fails the waiting commands") {
  auto server = std::make_unique<redis_server>();
  on_loop([&]() -> corio::task<void> {
    auto o = options_for(*server);
    o.reconnect_for(300ms);
    client c = co_await client::connect(o);
    server.reset();  // gone for good
    const auto start = steady::now();
    CHECK_THROWS_WITH_AS(co_await c.command("GET", "k"), doctest::Contains("could not reconnect within 300 ms"),
                         connection_error);
    CHECK(steady::now() - start < 2s);
  });
}
