// buffered_reader and buffered_writer: delimiters split across receives, the max_bytes
// bound, end of stream, read_exact through the buffer, and write batching.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/buffered_stream.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using corio::buffered_reader;
using corio::buffered_writer;
using corio::task;
using corio::unix_stream;

namespace {

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s)); }
std::string text_of(std::span<const std::byte> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

int unread_bytes(int fd) {
  int n = -1;
  ::ioctl(fd, FIONREAD, &n);
  return n;
}

// Runs body(a, b) to its end on a loop of its own; a and b are the two ends of a Unix
// socket pair, alive until the body has finished.
template <class Body>
void on_pair(Body body) {
  corio::loop lp;
  auto ends = unix_stream::pair();
  lp.run(body(ends.first, ends.second));
}

}  // namespace

TEST_CASE("read_until finds a delimiter split across several receives and keeps what follows") {
  on_pair([](unix_stream& a, unix_stream& b) -> task<void> {
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      for (std::string_view piece : {"GET / HT", "TP/1.1\r", "\n\r", "\nnext\r\n\r\nrest"}) {
        co_await b.write_all(bytes_of(piece));
        co_await corio::sleep_for(10ms);  // each piece arrives in its own receive
      }
      b.shutdown(SHUT_WR);
    });
    buffered_reader in(a, 64);
    std::vector<std::string> got;
    got.emplace_back(co_await in.read_until("\r\n\r\n", 64));
    got.emplace_back(co_await in.read_until("\r\n\r\n", 64));
    CHECK(in.buffered_text() == "rest");
    std::array<std::byte, 4> rest;
    co_await in.read_exact(rest);
    got.push_back(text_of(rest));
    // The peer closed with nothing buffered: an empty view, not an error.
    const std::string_view end = co_await in.read_until("\r\n\r\n", 64);
    CHECK(end.empty());
    CHECK(got == std::vector<std::string>{"GET / HTTP/1.1\r\n\r\n", "next\r\n\r\n", "rest"});
    CHECK(in.consumed_total() == 30);
    co_await g.wait();
  });
}

TEST_CASE("read_until throws buffer_limit_exceeded past max_bytes and consumes nothing") {
  on_pair([](unix_stream& a, unix_stream& b) -> task<void> {
    co_await b.write_all(bytes_of(std::string(20, 'a')));
    buffered_reader in(a, 64);
    std::string message;
    try {
      (void)co_await in.read_until("\n", 16);
    } catch (const corio::buffer_limit_exceeded& e) {
      message = e.what();
    }
    CHECK(message == "read_until fd " + std::to_string(a.fd()) + ": no \"\\n\" within 16 bytes");
    CHECK(in.buffered().size() == 20);
    // A delimiter ending exactly at max_bytes is accepted.
    auto ends2 = unix_stream::pair();
    unix_stream& c = ends2.first;
    unix_stream& d = ends2.second;
    co_await d.write_all(bytes_of(std::string(15, 'b') + "\n" + "tail"));
    buffered_reader in2(c, 64);
    const std::string line(co_await in2.read_until("\n", 16));
    CHECK(line == std::string(15, 'b') + "\n");
  });
}

TEST_CASE("read_until rejects a max_bytes larger than the buffer and an empty delimiter") {
  on_pair([](unix_stream& a, unix_stream&) -> task<void> {
    buffered_reader in(a, 32);
    std::string first, second;
    try {
      (void)co_await in.read_until("\n", 33);
    } catch (const std::invalid_argument& e) {
      first = e.what();
    }
    try {
      (void)co_await in.read_until("", 8);
    } catch (const std::invalid_argument& e) {
      second = e.what();
    }
    CHECK(first == "read_until: max_bytes 33 is outside 1..32 (the delimiter's size .. the buffer's capacity)");
    CHECK(second == "read_until: the delimiter is empty");
  });
}

TEST_CASE("read_until and read_exact throw end_of_stream when the peer closes mid-message") {
  on_pair([](unix_stream& a, unix_stream& b) -> task<void> {
    co_await b.write_all(bytes_of("abc"));
    b.shutdown(SHUT_WR);
    buffered_reader in(a, 64);
    std::string until, exact;
    try {
      (void)co_await in.read_until("\r\n", 64);
    } catch (const corio::end_of_stream& e) {
      until = e.what();
    }
    std::array<std::byte, 10> ten;
    try {
      co_await in.read_exact(ten);
    } catch (const corio::end_of_stream& e) {
      exact = e.what();
    }
    const std::string fd = std::to_string(a.fd());
    CHECK(until == "read_until fd " + fd + ": end of stream after 3 bytes without \"\\r\\n\"");
    CHECK(exact == "read_exact fd " + fd + ": end of stream after 3 of 10 bytes");
  });
}

TEST_CASE("read_exact and read_some take buffered bytes first, then receive past the buffer") {
  on_pair([](unix_stream& a, unix_stream& b) -> task<void> {
    std::string data;
    for (int i = 0; i < 300; ++i) data += static_cast<char>('a' + i % 26);
    co_await b.write_all(bytes_of("head\n" + data));
    b.shutdown(SHUT_WR);
    buffered_reader in(a, 16);  // far smaller than the data: most goes straight to `out`
    CHECK(std::string(co_await in.read_until("\n", 16)) == "head\n");
    std::vector<std::byte> out(250);
    co_await in.read_exact(out);
    CHECK(text_of(out) == data.substr(0, 250));
    std::array<std::byte, 8> small;
    std::string rest;
    for (std::size_t n; (n = co_await in.read_some(small)) > 0;) rest += text_of(std::span(small).first(n));
    CHECK(rest == data.substr(250));
  });
}

TEST_CASE("a reader's linger on plain receives discards what it buffered and what follows, after shutting down its side") {
  on_pair([](unix_stream& a, unix_stream& b) -> task<void> {
    co_await b.write_all(bytes_of("request\nrest of the pipeline"));
    buffered_reader in(a, 64);
    CHECK(std::string(co_await in.read_until("\n", 64)) == "request\n");
    CHECK(in.buffered_text() == "rest of the pipeline");
    int peer_read = -1;
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      std::array<std::byte, 16> reply;
      peer_read = co_await b.read_some(reply, corio::within(5s));  // the end of stream
      co_await b.write_all(bytes_of(std::string(10'000, 'x')));
      b.close();
    });
    co_await in.linger(1 << 20, 5s);
    co_await g.wait();
    CHECK(peer_read == 0);
    CHECK(in.buffered().empty());
    CHECK(unread_bytes(a.fd()) == 0);  // all of it read and dropped, up to the peer's close
  });
}

TEST_CASE("buffered_writer sends nothing until flush, then everything in order") {
  on_pair([](unix_stream& a, unix_stream& b) -> task<void> {
    buffered_writer out(a, 64);
    for (int i = 0; i < 10; ++i) co_await out.write("abc");
    CHECK(out.pending() == 30);
    CHECK(unread_bytes(b.fd()) == 0);
    co_await out.flush();
    CHECK(out.pending() == 0);
    CHECK(unread_bytes(b.fd()) == 30);
    // Data that does not fit flushes what is pending first; data larger than the buffer
    // then goes out directly.
    co_await out.write("12345");
    const std::string big(100, 'x');
    co_await out.write(big);
    CHECK(out.pending() == 0);
    CHECK(out.try_append("tail"));
    CHECK_FALSE(out.try_append(std::string(61, 'y')));  // all or nothing
    CHECK(out.pending() == 4);
    co_await out.flush();
    a.shutdown(SHUT_WR);
    std::string got;
    std::array<std::byte, 256> buf;
    for (int n; (n = co_await b.read_some(buf)) > 0;) got += text_of(std::span(buf).first(static_cast<std::size_t>(n)));
    CHECK(got == "abcabcabcabcabcabcabcabcabcabc12345" + big + "tail");
  });
}

TEST_CASE("a buffered_writer whose buffer fills flushes before taking more") {
  on_pair([](unix_stream& a, unix_stream& b) -> task<void> {
    buffered_writer out(a, 8);
    co_await out.write("12345");
    co_await out.write("6789");  // does not fit: "12345" goes out, "6789" waits
    CHECK(out.pending() == 4);
    CHECK(unread_bytes(b.fd()) == 5);
  });
}

TEST_CASE("a write larger than the buffer goes out with the pending bytes, in order, across short sends") {
  corio::loop lp;
  auto ends = unix_stream::pair();  // clang 14 cannot capture structured bindings
  unix_stream& a = ends.first;
  unix_stream& b = ends.second;
  // A small send buffer: the 256 KiB cannot go in one send, so sends come back short.
  const int small = 4096;
  REQUIRE(::setsockopt(a.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
  std::string big(256 * 1024, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('A' + (i * 7) % 26);
  auto body = [&]() -> task<void> {
    corio::task_group g;
    std::string got;
    g.spawn([&]() -> task<void> {
      std::array<std::byte, 1000> chunk;
      for (;;) {
        const int n = co_await b.read_some(chunk);
        if (n == 0) break;
        got += text_of(std::span(chunk).first(static_cast<std::size_t>(n)));
      }
    });
    buffered_writer out(a, 64);
    co_await out.write("head:");
    co_await out.write(big);  // gathered with "head:"
    CHECK(out.pending() == 0);
    co_await out.write(":tail");
    co_await out.flush();
    a.shutdown(SHUT_WR);
    co_await g.wait();
    CHECK(got.size() == big.size() + 10);
    CHECK(got == "head:" + big + ":tail");
  };
  lp.run(body());
}
