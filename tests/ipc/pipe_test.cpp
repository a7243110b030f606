// corio::pipe<T>: values in order between processes, any size, one-way misuse, end of
// stream on close / exit / SIGKILL, torn frames, corrupt lengths, and the async face.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <corio/coro/when_all.hpp>
#include <corio/ipc/pipe.hpp>
#include <corio/ipc/process.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;
using corio::task;

namespace {

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

struct point {
  int x = 0;
  std::string label;
  template <class Ar>
  void corio_fields(Ar& ar) {
    ar(x, label);
  }
  bool operator==(const point&) const = default;
};

}  // namespace

TEST_CASE("values of several types arrive in order, within one process and across a fork") {
  auto [a, b] = corio::make_pipe<std::vector<int>>();
  a.send({1, 2, 3});
  a.send({});
  b.send({9});
  CHECK(b.recv() == std::vector<int>{1, 2, 3});
  CHECK(b.recv().empty());
  CHECK(a.recv() == std::vector<int>{9});

  using value = std::tuple<std::uint64_t, std::string, std::optional<double>, std::map<std::string, int>>;
  auto [rx, tx] = corio::make_pipe<value>(false);
  auto [prx, ptx] = corio::make_pipe<point>(false);
  corio::process child(
      [](corio::connection<value>& out, corio::connection<point>& pts) {
        for (std::uint64_t i = 0; i < 100; ++i)
          out.send({i, "v" + std::to_string(i), i % 2 ? std::optional<double>(i * 0.5) : std::nullopt,
                    {{"k", static_cast<int>(i)}}});
        pts.send({7, "seven"});
      },
      std::move(tx), std::move(ptx));
  child.start();
  for (std::uint64_t i = 0; i < 100; ++i) {
    auto [n, s, d, m] = rx.recv();
    CHECK(n == i);
    CHECK(s == "v" + std::to_string(i));
    CHECK(d == (i % 2 ? std::optional<double>(i * 0.5) : std::nullopt));
    CHECK(m == std::map<std::string, int>{{"k", static_cast<int>(i)}});
  }
  CHECK(prx.recv() == point{7, "seven"});
  CHECK_THROWS_AS((void)rx.recv(), corio::pipe_closed);  // the child exited
  child.join();
  CHECK(*child.exitcode() == 0);
}

TEST_CASE("a 1 MiB string crosses the pipe intact, both ways") {
  auto [a, b] = corio::make_pipe<std::string>();
  const std::string big = pattern(1 << 20);
  corio::process echo(
      [](corio::connection<std::string>& c) {
        std::string s = c.recv();
        c.send(s + "!");
      },
      std::move(b));
  echo.start();
  a.send(big);
  const std::string back = a.recv();
  CHECK(back.size() == big.size() + 1);
  CHECK(back == big + "!");
  echo.join();
  CHECK(*echo.exitcode() == 0);
}

TEST_CASE("a one-way pipe refuses recv on its sending end and send on its receiving end") {
  auto [rx, tx] = corio::make_pipe<int>(false);
  CHECK(rx.readable());
  CHECK_FALSE(rx.writable());
  CHECK(tx.writable());
  CHECK_FALSE(tx.readable());
  CHECK_THROWS_WITH_AS(rx.send(1), "corio::connection::send: this end only receives (make_pipe(false): the second end sends)",
                       std::logic_error);
  CHECK_THROWS_WITH_AS((void)tx.recv(),
                       "corio::connection::recv: this end only sends (make_pipe(false): the first end receives)",
                       std::logic_error);
  tx.send(5);
  CHECK(rx.recv() == 5);
  rx.close();
  CHECK(rx.closed());
  CHECK_THROWS_WITH_AS((void)rx.recv(), "corio::connection::recv: the connection is closed", std::logic_error);
}

TEST_CASE("recv throws pipe_closed after the values sent before the peer closed") {
  auto [a, b] = corio::make_pipe<int>();
  CHECK_FALSE(a.poll());
  CHECK_FALSE(a.poll(5ms));
  b.send(1);
  b.send(2);
  CHECK(a.poll());
  b.close();
  CHECK(a.recv() == 1);
  CHECK(a.recv() == 2);
  CHECK_THROWS_WITH_AS((void)a.recv(), "corio::pipe: end of stream (the peer end is closed)", corio::pipe_closed);
  CHECK_THROWS_AS(a.send(3), corio::pipe_closed);  // EPIPE, and no SIGPIPE kills the test
}

TEST_CASE("a receiver blocked in recv sees pipe_closed when the peer process is SIGKILLed") {
  auto [a, b] = corio::make_pipe<int>();
  corio::process child(
      [](corio::connection<int>& c) {
        c.send(11);
        for (;;) ::pause();
      },
      std::move(b));
  child.start();
  CHECK(a.recv() == 11);
  child.kill();
  CHECK_THROWS_AS((void)a.recv(), corio::pipe_closed);
  child.join();
  CHECK(*child.exitcode() == -9);
}

TEST_CASE("a frame cut short by a dying sender gives pipe_closed, never a torn value") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  corio::connection<std::string> rx(corio::detail::pipe_end(fds[0], corio::detail::pipe_end::receives));
  const std::uint64_t length = 1000;  // announces 1000 bytes, sends 10, then closes
  REQUIRE(::write(fds[1], &length, sizeof length) == sizeof length);
  REQUIRE(::write(fds[1], "0123456789", 10) == 10);
  ::close(fds[1]);
  CHECK_THROWS_WITH_AS((void)rx.recv(),
                       "corio::pipe: the peer closed mid-frame (18 bytes of a frame received); the partial value is "
                       "dropped",
                       corio::pipe_closed);
}

namespace {

// Resident memory of this process, from /proc/self/statm (pages).
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t total = 0, resident = 0;
  statm >> total >> resident;
  REQUIRE(statm);
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

TEST_CASE("a peer that announces a 1 GiB frame and sends 10 bytes costs the reader no memory it did not send") {
  for (bool async : {false, true}) {
    CAPTURE(async);
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    corio::connection<std::string> rx(corio::detail::pipe_end(fds[0], corio::detail::pipe_end::receives));
    const std::uint64_t length = corio::pipe_max_frame;  // the largest length a frame may announce
    REQUIRE(::write(fds[1], &length, sizeof length) == sizeof length);
    REQUIRE(::write(fds[1], "0123456789", 10) == 10);
    ::close(fds[1]);
    const std::size_t before = resident_bytes();
    const std::string expected =
        "corio::pipe: the peer closed mid-frame (18 bytes of a frame received); the partial value is dropped";
    if (async) {
      corio::loop lp;
      std::string error;
      lp.run([&]() -> task<void> {
        try {
          (void)co_await rx.async_recv();
        } catch (const corio::pipe_closed& e) {
          error = e.what();
        }
      }());
      CHECK(error == expected);
    } else {
      CHECK_THROWS_WITH_AS((void)rx.recv(), expected.c_str(), corio::pipe_closed);
    }
    // rx still holds its buffer here: it must be the 64 KiB it started with, not 1 GiB.
    CHECK(resident_bytes() < before + (16u << 20));
  }
}

TEST_CASE("a corrupt frame length is a decode_error, not a huge allocation") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  corio::connection<std::string> rx(corio::detail::pipe_end(fds[0], corio::detail::pipe_end::receives));
  const std::uint64_t length = ~std::uint64_t{0};
  REQUIRE(::write(fds[1], &length, sizeof length) == sizeof length);
  CHECK_THROWS_AS((void)rx.recv(), corio::decode_error);
  ::close(fds[1]);
}

TEST_CASE("async_recv and async_send run through the loop while it does other work") {
  auto ends = corio::make_pipe<std::uint64_t>();
  auto& a = ends.first;
  corio::process child(
      [&a](corio::connection<std::uint64_t>& c) {
        a.close();  // the child's inherited copy of the parent's end: see the pipe.hpp rule
        corio::loop lp;
        auto echo = [&]() -> task<void> {
          for (;;) {
            std::uint64_t v = 0;
            try {
              v = co_await c.async_recv();
            } catch (const corio::pipe_closed&) {
              co_return;
            }
            co_await c.async_send(v * 2);
          }
        };
        lp.run(echo());
      },
      std::move(ends.second));
  child.start();
  corio::loop lp;
  int ticks = 0;
  bool done = false;
  std::vector<std::uint64_t> got;
  auto talk = [&]() -> task<void> {
    for (std::uint64_t i = 0; i < 1000; ++i) {
      co_await a.async_send(i);
      got.push_back(co_await a.async_recv());
    }
    co_await corio::sleep_for(20ms);
    done = true;
  };
  auto ticker = [&]() -> task<void> {
    while (!done) {
      ++ticks;
      co_await corio::sleep_for(1ms);
    }
  };
  auto both = [&]() -> task<void> { co_await corio::when_all(talk(), ticker()); };
  lp.run(both());
  REQUIRE(got.size() == 1000);
  for (std::uint64_t i = 0; i < 1000; ++i) CHECK(got[i] == i * 2);
  CHECK(ticks >= 2);
  a.close();  // the child's async_recv sees the end of stream and returns
  child.join();
  CHECK(*child.exitcode() == 0);
}

TEST_CASE("async_recv throws pipe_closed when the peer process exits") {
  auto ends = corio::make_pipe<std::string>(false);
  auto& rx = ends.first;
  corio::process child([](corio::connection<std::string>& c) { c.send("last words"); }, std::move(ends.second));
  child.start();
  corio::loop lp;
  auto main = [&]() -> task<std::vector<std::string>> {
    std::vector<std::string> all;
    try {
      for (;;) all.push_back(co_await rx.async_recv());
    } catch (const corio::pipe_closed&) {
      all.push_back("<closed>");
    }
    co_return all;
  };
  CHECK(lp.run(main()) == std::vector<std::string>{"last words", "<closed>"});
  child.join();
}
