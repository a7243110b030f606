// resolve: names to addresses off the loop thread. localhost as /etc/hosts has it, numeric
// hosts without a lookup, exact errors naming the host, and a slow resolver (a test hook,
// never real DNS) left behind at once on a stop request or a deadline.
#include <doctest/doctest.h>

#include <corio/runtime/errors.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/resolve.hpp>
#include <corio/runtime/stream.hpp>

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <semaphore>
#include <set>
#include <sstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "../needs_feature.hpp"

using namespace std::chrono_literals;
using corio::address;
using steady = std::chrono::steady_clock;

namespace {

// The addresses /etc/hosts gives `name`, as "IP:port" texts.
std::set<std::string> hosts_file_addresses(const std::string& name, int port) {
  std::set<std::string> out;
  std::ifstream in("/etc/hosts");
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string ip;
    std::string alias;
    if (!(words >> ip)) continue;
    while (words >> alias)
      if (alias == name) {
        const bool v6 = ip.find(':') != std::string::npos;
        out.insert(address::parse((v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port)).to_string());
      }
  }
  return out;
}

std::set<std::string> texts(const std::vector<address>& all) {
  std::set<std::string> out;
  for (const address& a : all) out.insert(a.to_string());
  return out;
}

// A set of one text (a braced list inside a coroutine trips GCC 12).
std::set<std::string> only(const std::string& text) {
  std::set<std::string> out;
  out.insert(text);
  return out;
}

// Replaces the resolver for one test and puts the real one back.
struct hook_guard {
  explicit hook_guard(corio::detail::getaddrinfo_fn fn) { corio::detail::getaddrinfo_hook = fn; }
  ~hook_guard() { corio::detail::getaddrinfo_hook = &::getaddrinfo; }
};

std::atomic<int> hook_calls{0};
int counting_no_name(const char*, const char*, const addrinfo*, addrinfo**) {
  ++hook_calls;
  return EAI_NONAME;
}

// A resolver that hangs until the test lets it go.
std::binary_semaphore slow_entered{0};
std::binary_semaphore slow_release{0};
std::binary_semaphore slow_returned{0};
int slow_no_name(const char*, const char*, const addrinfo*, addrinfo**) {
  slow_entered.release();
  slow_release.acquire();
  slow_returned.release();
  return EAI_NONAME;
}

template <class F>
void on_loop(F f, std::stop_token token = {}) {
  corio::loop lp;
  lp.run(f(), std::move(token));
}

}  // namespace

CORIO_TEST_IF("localhost resolves to exactly the addresses /etc/hosts gives it, each once, with the port",
              !hosts_file_addresses("localhost", 6379).empty(), "/etc/hosts names no localhost on this machine") {
  const std::set<std::string> expected = hosts_file_addresses("localhost", 6379);
  on_loop([&]() -> corio::task<void> {
    const std::vector<address> all = co_await corio::resolve("localhost", 6379);
    CHECK(texts(all) == expected);
    CHECK(all.size() == expected.size());  // no duplicates
    for (const address& a : all) CHECK(a.port() == 6379);
    const std::vector<address> v4 = co_await corio::resolve("localhost", 1, {.family = AF_INET});
    for (const address& a : v4) CHECK(a.domain() == AF_INET);
  });
  CHECK(texts(corio::resolve_blocking("localhost", 6379)) == expected);
}

TEST_CASE("a numeric host is converted without a lookup or a thread") {
  hook_guard guard(&counting_no_name);
  hook_calls = 0;
  on_loop([]() -> corio::task<void> {
    CHECK(texts(co_await corio::resolve("127.0.0.1", 80)) == only("127.0.0.1:80"));
    CHECK(texts(co_await corio::resolve("::1", 81)) == only("[::1]:81"));
    CHECK(texts(co_await corio::resolve("[2001:db8::1]", 82)) == only("[2001:db8::1]:82"));
  });
  CHECK(texts(corio::resolve_blocking("10.1.2.3", 6379)) == only("10.1.2.3:6379"));
  CHECK(hook_calls == 0);
  // The hook is live: a name goes through it.
  CHECK_THROWS_AS(corio::resolve_blocking("db.test", 1), corio::resolve_error);
  CHECK(hook_calls == 1);
}

TEST_CASE("a failed lookup is resolve_error naming the host with gai_strerror's text") {
  {
    hook_guard guard(&counting_no_name);
    on_loop([]() -> corio::task<void> {
      try {
        co_await corio::resolve("db.test", 6379);
        FAIL("no error");
      } catch (const corio::resolve_error& e) {
        CHECK(std::string(e.what()) == "resolve \"db.test\": Name or service not known");
        CHECK(e.host() == "db.test");
        CHECK(e.code() == std::error_code(EAI_NONAME, corio::resolve_category()));
      }
    });
  }
  // The real resolver on a reserved name (RFC 6761: .invalid never exists): no name, or
  // no answer from a DNS server on a machine without one; either way the text is exact.
  try {
    (void)corio::resolve_blocking("nohost.invalid", 1);
    FAIL("no error");
  } catch (const corio::resolve_error& e) {
    const int code = e.code().value();
    CHECK((code == EAI_NONAME || code == EAI_AGAIN));
    CHECK(std::string(e.what()) == std::string("resolve \"nohost.invalid\": ") + ::gai_strerror(code));
  }
}

TEST_CASE("a stop request releases the awaiting coroutine at once while getaddrinfo hangs") {
  hook_guard guard(&slow_no_name);
  std::stop_source stop;
  steady::time_point asked;
  std::thread stopper([&] {
    slow_entered.acquire();  // the lookup is under way on its thread
    asked = steady::now();
    stop.request_stop();
  });
  steady::duration took{};
  on_loop(
      [&]() -> corio::task<void> {
        try {
          co_await corio::resolve("slow.test", 80);
          FAIL("no error");
        } catch (const corio::operation_cancelled& e) {
          took = steady::now() - asked;
          CHECK(std::string(e.what()) == "resolve \"slow.test\": Operation canceled");
        }
      },
      stop.get_token());
  stopper.join();
  CHECK(took < 2s);  // generous: the lookup itself still hangs
  slow_release.release();
  slow_returned.acquire();  // its result is dropped; the hook goes back only after it
}

TEST_CASE("a deadline releases the awaiting coroutine with timed_out while getaddrinfo hangs") {
  hook_guard guard(&slow_no_name);
  const auto start = steady::now();
  on_loop([&]() -> corio::task<void> {
    try {
      co_await corio::resolve("slow.test", 80, {.deadline = steady::now() + 100ms});
      FAIL("no error");
    } catch (const corio::timed_out& e) {
      CHECK(std::string(e.what()).starts_with("resolve \"slow.test\": no answer within "));
    }
  });
  CHECK(steady::now() - start >= 100ms);
  CHECK(steady::now() - start < 3s);
  slow_entered.acquire();
  slow_release.release();
  slow_returned.acquire();
}

TEST_CASE("a token stopped before the call starts no lookup") {
  hook_guard guard(&counting_no_name);
  hook_calls = 0;
  std::stop_source stop;
  stop.request_stop();
  on_loop(
      []() -> corio::task<void> {
        CHECK_THROWS_AS(co_await corio::resolve("db.test", 80), corio::operation_cancelled);
      },
      stop.get_token());
  CHECK(hook_calls == 0);
}

TEST_CASE("resolve_blocking refuses a loop thread; bad hosts and families are invalid_argument") {
  on_loop([]() -> corio::task<void> {
    CHECK_THROWS_WITH_AS((void)corio::resolve_blocking("localhost", 80),
                         "corio::resolve_blocking(\"localhost\"): called on a loop thread, where it would stall every "
                         "coroutine (co_await corio::resolve instead)",
                         std::logic_error);
    co_return;
  });
  CHECK_THROWS_WITH_AS((void)corio::resolve_blocking("", 80), "resolve: the host is empty", std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)corio::resolve_blocking("localhost", 80, AF_UNIX),
                       "resolve: family 1 is none of AF_UNSPEC, AF_INET, AF_INET6", std::invalid_argument);
}

TEST_CASE("split_host_port reads names, IPv4 and bracketed IPv6, and quotes bad text") {
  auto hp = corio::split_host_port("redis.internal:6379");
  CHECK(hp.host == "redis.internal");
  CHECK(hp.port == 6379);
  hp = corio::split_host_port("[::1]:7000");
  CHECK(hp.host == "::1");
  CHECK(hp.port == 7000);
  CHECK(corio::split_host_port("10.0.0.1:0").port == 0);
  CHECK_THROWS_WITH_AS(corio::split_host_port("redis"), "bad address \"redis\": no ':PORT'", std::invalid_argument);
  CHECK_THROWS_WITH_AS(corio::split_host_port("::1:80"), "bad address \"::1:80\": an IPv6 host needs brackets: [HOST]:PORT",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(corio::split_host_port("h:65536"), "bad address \"h:65536\": the port \"65536\" is not a number in 0..65535",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(corio::split_host_port(":80"), "bad address \":80\": no host before ':PORT'", std::invalid_argument);
  CHECK(corio::is_numeric_host("[::1]"));
  CHECK(corio::is_numeric_host("192.168.0.1"));
  CHECK_FALSE(corio::is_numeric_host("localhost"));
  CHECK_FALSE(corio::is_numeric_host("1.2.3"));
}

namespace {

// A loopback port nobody listens on now.
int closed_port() {
  auto l = corio::tcp_listener::bind(address::parse("127.0.0.1:0"));
  return l.local_address().port();
}

}  // namespace

CORIO_TEST_IF("tcp_stream::connect by name reaches a loopback listener through localhost",
              hosts_file_addresses("localhost", 1).contains("127.0.0.1:1"),
              "/etc/hosts does not give localhost 127.0.0.1 on this machine") {
  auto server = corio::tcp_listener::bind(address::parse("127.0.0.1:0"));
  on_loop([&]() -> corio::task<void> {
    corio::tcp_stream c = co_await corio::tcp_stream::connect("localhost", server.local_address().port());
    CHECK(c.peer_address() == server.local_address());
  });
}

TEST_CASE("connect_any skips an address that refuses and connects to the next") {
  auto server = corio::tcp_listener::bind(address::parse("127.0.0.1:0"));
  const address refused = address::parse("127.0.0.1:" + std::to_string(closed_port()));
  on_loop([&]() -> corio::task<void> {
    std::vector<address> both{refused, server.local_address()};
    corio::tcp_stream c = co_await corio::tcp_stream::connect_any(std::move(both), corio::within(10s), 2s);
    CHECK(c.peer_address() == server.local_address());
  });
}

TEST_CASE("connect_any that fails everywhere throws the last error listing every address tried") {
  const std::string a = "127.0.0.1:" + std::to_string(closed_port());
  const std::string b = "127.0.0.1:" + std::to_string(closed_port());
  on_loop([&]() -> corio::task<void> {
    try {
      std::vector<address> both{address::parse(a), address::parse(b)};
      co_await corio::tcp_stream::connect_any(std::move(both));
      FAIL("no error");
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::error_code(ECONNREFUSED, std::system_category()));
      CHECK(std::string(e.what()) ==
            "connect (tried " + a + ": Connection refused; " + b + ": Connection refused): Connection refused");
    }
    try {
      co_await corio::tcp_stream::connect_any({});
      FAIL("no error");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()) == "connect: no address to try");
    }
  });
}

TEST_CASE("tcp_stream::connect by a name that does not resolve is resolve_error; a numeric host keeps its error") {
  hook_guard guard(&counting_no_name);
  hook_calls = 0;
  const int port = closed_port();
  on_loop([&]() -> corio::task<void> {
    CHECK_THROWS_WITH_AS(co_await corio::tcp_stream::connect("redis.test", 6379),
                         "resolve \"redis.test\": Name or service not known", corio::resolve_error);
    CHECK_THROWS_WITH_AS(co_await corio::tcp_stream::connect("127.0.0.1", static_cast<std::uint16_t>(port)),
                         ("connect 127.0.0.1:" + std::to_string(port) + ": Connection refused").c_str(),
                         std::system_error);
  });
  CHECK(hook_calls == 1);
}

namespace {

// A listener whose accept queue is full: a connect to it hangs (the kernel drops the SYN).
struct hanging_listener {
  corio::tcp_listener listener =
      corio::tcp_listener::bind(address::parse("127.0.0.1:0"), {.reuse_port = false, .reuse_address = true, .backlog = 0});
  int filler = -1;

  hanging_listener() {
    filler = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const address& a = listener.local_address();
    REQUIRE(::connect(filler, a.data(), a.size()) == 0);
  }
  ~hanging_listener() { ::close(filler); }
  address where() const { return listener.local_address(); }
};

// connect_any over {an address that hangs, a listener}: checks that the listener is the
// one reached, and returns how long it took.
steady::duration connect_past_hang(std::chrono::seconds deadline, std::chrono::milliseconds per_try) {
  hanging_listener hang;
  auto server = corio::tcp_listener::bind(address::parse("127.0.0.1:0"));
  const auto start = steady::now();
  on_loop([&]() -> corio::task<void> {
    std::vector<address> both{hang.where(), server.local_address()};
    corio::tcp_stream c = co_await corio::tcp_stream::connect_any(std::move(both), corio::within(deadline), per_try);
    CHECK(c.peer_address() == server.local_address());
  });
  return steady::now() - start;
}

}  // namespace

TEST_CASE("connect_any gives an address that does not answer per_try, then connects to the next") {
  const steady::duration took = connect_past_hang(10s, 200ms);
  CHECK(took >= 200ms);
  CHECK(took < 5s);
}

TEST_CASE("connect_any ends with timed_out when the whole deadline passes, naming the address that hung") {
  hanging_listener hang;
  on_loop([&]() -> corio::task<void> {
    try {
      std::vector<address> one{hang.where()};
      co_await corio::tcp_stream::connect_any(std::move(one), corio::within(300ms));
      FAIL("no error");
    } catch (const corio::timed_out& e) {
      const std::string what = e.what();
      CHECK(what.starts_with("connect (tried " + hang.where().to_string() + ": no answer within "));
      CHECK(what.ends_with(" ms): Connection timed out"));
    }
  });
}

TEST_CASE("a stop request ends connect_any at once, without trying the addresses left") {
  hanging_listener hang;
  auto server = corio::tcp_listener::bind(address::parse("127.0.0.1:0"));
  std::stop_source stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(200ms);
    stop.request_stop();
  });
  const auto start = steady::now();
  on_loop(
      [&]() -> corio::task<void> {
        std::vector<address> both{hang.where(), server.local_address()};
        CHECK_THROWS_AS(co_await corio::tcp_stream::connect_any(std::move(both), {}, 10s), corio::operation_cancelled);
      },
      stop.get_token());
  stopper.join();
  CHECK(steady::now() - start < 5s);  // per_try is 10 s: the stop, not a timeout, ended it
}

TEST_CASE("under a deadline, a silent first address takes only its share and the next still connects") {
  // per_try (10 s) is longer than the whole deadline: the first address gets half of 2 s,
  // so the second connects before the deadline (else connect_any throws timed_out).
  CHECK(connect_past_hang(2s, 10s) >= 900ms);
}
