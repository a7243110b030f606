// buffered_reader on provided buffers (detail/recv_multishot.hpp): one multishot receive
// per connection, its re-arms (an empty ring's -ENOBUFS, a request ended without
// IORING_CQE_F_MORE), a peer's reset in the middle, deadlines and stop requests; and the
// plain path a kernel without the features takes.
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/runtime/buffered_stream.hpp>
#include <corio/runtime/detail/buffer_ring.hpp>
#include <corio/runtime/kernel_features.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <optional>
#include <string>
#include <system_error>

#include "../needs_feature.hpp"

using namespace std::chrono_literals;
using corio::buffered_reader;
using corio::task;
using corio::unix_stream;

namespace {

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s)); }

bool multishot_on() {
  return corio::kernel_feature_on(corio::kernel_feature::provided_buffers) &&
         corio::kernel_feature_on(corio::kernel_feature::recv_multishot);
}

// Everything the reader receives until end of stream.
task<std::string> read_to_end(buffered_reader& in) {
  std::string got;
  while (co_await in.fill() > 0) {
    got += in.buffered_text();
    in.consume(in.buffered().size());
  }
  co_return got;
}

// A connected TCP pair on the loopback: multishot receives are for TCP sockets only
// (buffered_stream.hpp says why).
struct tcp_pair {
  corio::tcp_stream first;   // accepted: the side that reads
  corio::tcp_stream second;  // the client: the side that writes
};
task<tcp_pair> connected_pair() {
  auto listener = corio::tcp_listener::bind(corio::address::parse("127.0.0.1:0"));
  corio::tcp_stream client = co_await corio::tcp_stream::connect(listener.local_address());
  corio::tcp_stream accepted = co_await listener.accept();
  co_return tcp_pair{std::move(accepted), std::move(client)};
}

// Sends `first` and receives it: the reader's multishot receive is armed from then on.
task<void> arm(buffered_reader& in, corio::tcp_stream& peer, std::string_view first) {
  co_await peer.write_all(bytes_of(first));
  CHECK(co_await in.fill() == static_cast<int>(first.size()));
  CHECK(in.buffered_text() == first);
  in.consume(first.size());
}

// Runs body(ends, in) on a loop of its own: `in` reads ends.first (64-byte buffer) through
// the multishot receive, which the kernel must have (the callers need recv_multishot).
template <class Body>
void with_multishot_reader(Body body) {
  corio::loop lp;
  lp.run([&]() -> task<void> {
    tcp_pair ends = co_await connected_pair();
    buffered_reader in(ends.first, 64);
    REQUIRE(in.use_provided_buffers());
    co_await body(ends, in);
  }());
}

// The same on a ring of its own (`entries` buffers of `size` bytes): body(ends, in, ring).
template <class Body>
void with_multishot_reader_on(unsigned entries, unsigned size, Body body) {
  corio::loop lp;
  lp.run([&]() -> task<void> {
    tcp_pair ends = co_await connected_pair();
    auto ring = corio::detail::buffer_ring::create(corio::loop::this_loop(), entries, size);
    buffered_reader in(ends.first, 64);
    REQUIRE(in.use_provided_buffers(ring));
    co_await body(ends, in, *ring);
  }());
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

}  // namespace

TEST_CASE("use_provided_buffers is on exactly when the kernel features are, and both paths read the same bytes") {
  corio::loop lp;
  const std::string sent = pattern(10'000);
  auto body = [&]() -> task<void> {
    tcp_pair ends = co_await connected_pair();
    buffered_reader in(ends.first, 512);
    CHECK(in.use_provided_buffers() == multishot_on());
    CHECK((in.multishot() != nullptr) == multishot_on());
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      for (std::size_t i = 0; i < sent.size(); i += 1000) {
        co_await ends.second.write_all(bytes_of(std::string_view(sent).substr(i, 1000)));
        co_await corio::sleep_for(1ms);
      }
      ends.second.shutdown(SHUT_WR);
    });
    CHECK(co_await read_to_end(in) == sent);
    co_await g.wait();
    if (in.multishot() != nullptr) {
      // One request served every receive: the kernel never ended it before end of stream.
      CHECK(in.multishot()->stats().multishot_arms == 1);
      CHECK(in.multishot()->stats().completions >= 10);
    }
  };
  lp.run(body());
}

CORIO_TEST_NEEDS("read_some takes the bytes the multishot receive queued, in order, straight into the caller's memory",
                 corio::kernel_feature::recv_multishot) {
  with_multishot_reader([&](tcp_pair& ends, buffered_reader& in) -> task<void> {
    co_await arm(in, ends.second, "first");
    // Bytes that arrive while nobody reads wait in the multishot receive's queue.
    auto send_and_queue = [&](std::string_view s) -> task<void> {
      co_await ends.second.write_all(bytes_of(s));
      for (int i = 0; i < 5000 && !in.multishot()->ready(); ++i) co_await corio::sleep_for(1ms);
      REQUIRE(in.multishot()->ready());
    };
    co_await send_and_queue("queued");
    // Larger than the reader's buffer: a recv on the socket here would wait for bytes
    // that come after the queued ones (it did, until the deadline).
    std::string out(1000, '\0');
    std::size_t n = co_await in.read_some(std::as_writable_bytes(std::span(out)), corio::within(5s));
    CHECK(out.substr(0, n) == "queued");
    CHECK(in.buffered().empty());
    // Smaller than what is queued: the rest stays queued for the next read_some.
    co_await send_and_queue("0123456789");
    n = co_await in.read_some(std::as_writable_bytes(std::span(out).first(4)), corio::within(5s));
    CHECK(out.substr(0, n) == "0123");
    CHECK(in.buffered().empty());
    n = co_await in.read_some(std::as_writable_bytes(std::span(out)), corio::within(5s));
    CHECK(out.substr(0, n) == "456789");
    ends.second.shutdown(SHUT_WR);
    CHECK(co_await in.read_some(std::as_writable_bytes(std::span(out)), corio::within(5s)) == 0);
    CHECK(in.multishot()->stats().multishot_arms == 1);
    CHECK(in.multishot()->stats().plain_receives == 0);
  });
}

CORIO_TEST_NEEDS("with direct reads a read_some is one plain recv, and without them the multishot receive is re-armed",
                 corio::kernel_feature::recv_multishot) {
  const std::string big = pattern(200'000);
  with_multishot_reader([&](tcp_pair& ends, buffered_reader& in) -> task<void> {
    co_await arm(in, ends.second, "first");  // the multishot receive is armed now
    in.set_direct_reads(true);
    std::string out(100'000, '\0');
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await corio::sleep_for(20ms);  // the read below is waiting by then
      co_await ends.second.write_all(bytes_of(big));
    });
    std::string got;
    while (got.size() < big.size()) {
      const std::size_t n = co_await in.read_some(std::as_writable_bytes(std::span(out)), corio::within(5s));
      REQUIRE(n > 0);
      got.append(out, 0, n);
    }
    co_await g.wait();
    CHECK(got == big);
    const auto direct = in.multishot()->stats();
    CHECK(direct.multishot_arms == 1);  // cancelled for the first direct read, not re-armed
    CHECK(direct.plain_receives >= 1);
    in.set_direct_reads(false);
    co_await ends.second.write_all(bytes_of("small"));
    const std::size_t n = co_await in.read_some(std::as_writable_bytes(std::span(out)), corio::within(5s));
    CHECK(out.substr(0, n) == "small");
    CHECK(in.multishot()->stats().multishot_arms == 2);
    CHECK(in.multishot()->stats().plain_receives == direct.plain_receives);
  });
}

CORIO_TEST_NEEDS("an empty buffer ring ends the multishot receive with ENOBUFS and the next wait re-arms it",
                 corio::kernel_feature::recv_multishot) {
  corio::loop lp;
  const std::string sent = pattern(300);
  auto body = [&]() -> task<void> {
    tcp_pair ends = co_await connected_pair();
    // Two buffers of 16 bytes: the peer's 300 bytes cannot all fit.
    auto ring = corio::detail::buffer_ring::create(corio::loop::this_loop(), 2, 16);
    {
      buffered_reader in(ends.first, 64);
      REQUIRE(in.use_provided_buffers(ring));
      // The first fill arms the request; a 10-byte message answers it.
      co_await ends.second.write_all(bytes_of(std::string_view(sent).substr(0, 10)));
      CHECK(co_await in.fill() == 10);
      in.consume(10);
      // The rest arrives while nobody reads: the ring runs dry.
      co_await ends.second.write_all(bytes_of(std::string_view(sent).substr(10)));
      co_await corio::sleep_for(20ms);
      ends.second.shutdown(SHUT_WR);
      CHECK(co_await read_to_end(in) == sent.substr(10));
      const auto& st = in.multishot()->stats();
      CHECK(st.enobufs >= 1);
      CHECK(st.multishot_arms + st.plain_receives >= 2);
    }
    CHECK(ring->available() == 2);  // every buffer went back
  };
  lp.run(body());
}

CORIO_TEST_NEEDS("a multishot receive the kernel ended without F_MORE is re-armed at the next wait",
                 corio::kernel_feature::recv_multishot) {
  with_multishot_reader([&](tcp_pair& ends, buffered_reader& in) -> task<void> {
    co_await arm(in, ends.second, "one");
    // Its final CQE (-ECANCELED, no F_MORE) comes while the next fill already waits:
    // that wait neither fails nor hangs, the request is re-armed for it.
    in.cancel_multishot_for_test();
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await corio::sleep_for(10ms);
      co_await ends.second.write_all(bytes_of("two"));
    });
    CHECK(co_await in.fill(corio::within(5s)) == 3);
    CHECK(in.buffered_text() == "two");
    CHECK(in.multishot()->stats().multishot_arms == 2);
    co_await g.wait();
  });
}

CORIO_TEST_NEEDS("a peer's reset in the middle of a multishot receive fails the next fill with ECONNRESET",
                 corio::kernel_feature::recv_multishot) {
  with_multishot_reader([&](tcp_pair& ends, buffered_reader& in) -> task<void> {
    co_await arm(in, ends.second, "hello");
    // SO_LINGER 0: close sends a reset instead of a FIN.
    const linger reset{.l_onoff = 1, .l_linger = 0};
    REQUIRE(::setsockopt(ends.second.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
    ends.second.close();
    int error = 0;
    try {
      (void)co_await in.fill();
    } catch (const std::system_error& e) {
      error = e.code().value();
    }
    CHECK(error == ECONNRESET);
  });
}

CORIO_TEST_NEEDS("a deadline or a stop request ends a multishot wait, and later bytes still arrive",
                 corio::kernel_feature::recv_multishot) {
  with_multishot_reader([&](tcp_pair& ends, buffered_reader& in) -> task<void> {
    CHECK_THROWS_AS((void)co_await in.fill(corio::within(20ms)), corio::timed_out);
    std::stop_source stop;
    const std::stop_token token = stop.get_token();
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await corio::sleep_for(10ms);
      stop.request_stop();
    });
    CHECK_THROWS_AS((void)co_await in.fill({.token = &token, .deadline = std::nullopt}), corio::operation_cancelled);
    co_await g.wait();
    co_await ends.second.write_all(bytes_of("late"));
    CHECK(co_await in.fill(corio::within(5s)) == 4);
    CHECK(in.buffered_text() == "late");
  });
}

CORIO_TEST_NEEDS("a reader destroyed while its multishot receive is armed leaves nothing behind",
                 corio::kernel_feature::recv_multishot) {
  corio::loop lp;
  auto body = [&]() -> task<void> {
    tcp_pair ends = co_await connected_pair();
    auto ring = corio::detail::buffer_ring::create(corio::loop::this_loop(), 4, 64);
    {
      buffered_reader in(ends.first, 64);
      REQUIRE(in.use_provided_buffers(ring));
      co_await arm(in, ends.second, "x");
      co_await ends.second.write_all(bytes_of("queued, never read"));
      co_await corio::sleep_for(5ms);
    }  // the armed request is cancelled; its state frees itself at the final CQE
    co_await corio::sleep_for(5ms);
    CHECK(ring->available() == 4);
    CHECK(corio::loop::this_loop().in_flight() == 1);  // only the loop's own wake-up read
  };
  lp.run(body());
}

CORIO_TEST_NEEDS("a reader on the loop's ring may outlive the loop", corio::kernel_feature::recv_multishot) {
  std::optional<tcp_pair> ends;
  std::optional<buffered_reader> in;
  {
    corio::loop lp;
    auto body = [&]() -> task<void> {
      ends.emplace(co_await connected_pair());
      in.emplace(ends->first, 64);
      REQUIRE(in->use_provided_buffers());
      co_await ends->second.write_all(bytes_of("abc"));
      CHECK(co_await in->fill() == 3);
      co_await ends->second.write_all(bytes_of("queued"));  // may arrive after the loop is gone
    };
    lp.run(body());
  }  // ~loop cancels the armed receive and drains it
  CHECK(in->buffered_text() == "abc");
  in.reset();  // before the streams it reads  // frees the state and the last reference to the ring, without the loop
}

CORIO_TEST_NEEDS("a reader that does not read pauses its multishot receive before it takes the whole ring",
                 corio::kernel_feature::recv_multishot) {
  const std::string sent = pattern(8192);  // 512 buffers' worth
  with_multishot_reader_on(256, 16, [&](tcp_pair& ends, buffered_reader& in, corio::detail::buffer_ring& ring) -> task<void> {
    co_await arm(in, ends.second, "go");
    for (std::size_t i = 0; i < sent.size(); i += 64) {
      co_await ends.second.write_all(bytes_of(std::string_view(sent).substr(i, 64)));
      if (i % 1024 == 0) co_await corio::sleep_for(1ms);  // the loop reaps meanwhile
    }
    co_await corio::sleep_for(20ms);
    CHECK(in.multishot()->stats().pauses >= 1);
    CHECK(ring.available() > 0);  // the rest waits in the socket, not in the ring
    ends.second.shutdown(SHUT_WR);
    CHECK(co_await read_to_end(in) == sent);
    CHECK(ring.available() == 256);
  });
}

CORIO_TEST_NEEDS("a reader's linger cancels its multishot receive, discards the rest with plain recvs and gives back every ring buffer",
                 corio::kernel_feature::recv_multishot) {
  const std::string late = pattern(20'000);  // 313 of the ring's 64-byte buffers
  with_multishot_reader_on(64, 64, [&](tcp_pair& ends, buffered_reader& in, corio::detail::buffer_ring& ring) -> task<void> {
    co_await arm(in, ends.second, "request");
    co_await ends.second.write_all(bytes_of("sent before the close"));
    co_await corio::sleep_for(5ms);
    CHECK(ring.available() == 63);  // queued by the armed receive, not read
    int peer_read = -1;
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      // The peer gets the end of stream (SHUT_WR), sends on regardless, then closes.
      std::array<std::byte, 16> reply;
      peer_read = co_await ends.second.read_some(reply, corio::within(5s));
      co_await ends.second.write_all(bytes_of(late));
      ends.second.close();
    });
    co_await in.linger(std::size_t{1} << 20, 5s);
    co_await g.wait();
    CHECK(peer_read == 0);
    CHECK(ring.available() == 64);
    CHECK(in.multishot()->stats().multishot_arms == 1);  // never re-armed
    CHECK(in.multishot()->stats().plain_receives >= 1);  // the late bytes came by plain recv
  });
}

TEST_CASE("a Unix-domain stream keeps plain receives") {
  corio::loop lp;
  auto ends = unix_stream::pair();
  auto body = [&]() -> task<void> {
    buffered_reader in(ends.first, 64);
    CHECK_FALSE(in.use_provided_buffers());
    CHECK(in.multishot() == nullptr);
    co_await ends.second.write_all(bytes_of("plain"));
    CHECK(co_await in.fill() == 5);
    co_return;
  };
  lp.run(body());
}
