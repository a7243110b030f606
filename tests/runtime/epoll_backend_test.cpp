// The epoll backend's emulation of the ring (runtime/detail/epoll_backend.hpp): each case
// runs on a loop built with backend_kind::epoll, whatever CORIO_BACKEND says, and checks
// the result io_uring gives for the same request (where io_uring runs here, the same case
// is repeated on it: both must agree).
#include <doctest/doctest.h>

#include <corio/coro/task_group.hpp>
#include <corio/coro/when_all.hpp>
#include <corio/runtime/detail/fd_lifetime.hpp>
#include <corio/runtime/detail/uring_awaiter.hpp>
#include <corio/runtime/file_ops.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/net_ops.hpp>
#include <corio/runtime/stream.hpp>
#include <corio/runtime/timer.hpp>

#include "../ipc/ipc_test_support.hpp"
#include "../needs_feature.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/stat.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using corio::backend_kind;
using corio::task;
using corio_test::socket_pair;

namespace {

corio::loop_options on(backend_kind k) { return {.backend = k}; }

// Whether this process may set up an io_uring (the comparison cases need it).
bool io_uring_available() {
  try {
    corio::loop lp(on(backend_kind::io_uring));
    return true;
  } catch (const std::system_error&) {
    return false;
  }
}

std::span<std::byte> writable(std::string& s) { return std::as_writable_bytes(std::span(s)); }
std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

// errno of a failed op, or 0.
template <class Awaitable>
task<int> error_of(Awaitable a) {
  try {
    co_await std::move(a);
  } catch (const std::system_error& e) {
    co_return e.code().value();
  }
  co_return 0;
}

// connect(2) through the loop to a port nobody listens on: the errno.
int connect_refused_errno(backend_kind k) {
  corio::loop lp(on(k));
  return lp.run([]() -> task<int> {
    // A port that was just free: bound, not listening, closed.
    const int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(probe, reinterpret_cast<sockaddr*>(&a), len) == 0);
    REQUIRE(::getsockname(probe, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    ::close(probe);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int e = co_await error_of(corio::connect(
        fd, corio::address::parse("127.0.0.1:" + std::to_string(ntohs(a.sin_port)))));
    ::close(fd);
    co_return e;
  }());
}

}  // namespace

TEST_CASE("a loop asked for epoll runs on epoll and reports it, with no io_uring features") {
  corio::loop lp(on(backend_kind::epoll));
  CHECK(lp.backend() == backend_kind::epoll);
  CHECK(lp.ring_fd() == -1);
  CHECK_FALSE(lp.features().defer_taskrun);
  CHECK_FALSE(lp.features().single_issuer);
  CHECK_FALSE(lp.features().futex_wait);
  CHECK_FALSE(lp.features().msg_ring);
  CHECK(lp.run([]() -> task<int> {
    co_await corio::nop();
    co_return 7;
  }()) == 7);
}

TEST_CASE("CORIO_BACKEND values: io_uring, epoll, automatic or empty; anything else names the valid ones") {
  CHECK(corio::detail::parse_backend("epoll") == backend_kind::epoll);
  CHECK(corio::detail::parse_backend("io_uring") == backend_kind::io_uring);
  CHECK(corio::detail::parse_backend("") == backend_kind::automatic);
  CHECK(corio::detail::parse_backend("automatic") == backend_kind::automatic);
  try {
    (void)corio::detail::parse_backend("kqueue");
    FAIL("no exception");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()) ==
          "CORIO_BACKEND: unknown backend \"kqueue\"; valid values: io_uring, epoll, automatic (or unset)");
  }
  CHECK(corio::to_string(backend_kind::epoll) == "epoll");
  CHECK(corio::to_string(backend_kind::io_uring) == "io_uring");
}

// Registered a second time in tests/meson.build with CORIO_BACKEND=kqueue; in the normal
// runs (CORIO_BACKEND unset or valid) it checks that the value is accepted.
TEST_CASE("a bad CORIO_BACKEND makes every loop constructor throw invalid_argument naming the valid values") {
  const char* value = std::getenv("CORIO_BACKEND");
  bool valid = true;
  try {
    (void)corio::detail::parse_backend(value != nullptr ? value : "");
  } catch (const std::invalid_argument&) {
    valid = false;
  }
  if (valid) {
    CHECK_NOTHROW((void)corio::backend_from_environment());
    CHECK_NOTHROW(corio::loop{});
    return;
  }
  const std::string expected = "CORIO_BACKEND: unknown backend \"" + std::string(value) +
                               "\"; valid values: io_uring, epoll, automatic (or unset)";
  CHECK_THROWS_WITH_AS((void)corio::backend_from_environment(), expected.c_str(), std::invalid_argument);
  CHECK_THROWS_WITH_AS(corio::loop{}, expected.c_str(), std::invalid_argument);
  // Whatever the options ask for: the variable is wrong either way.
  CHECK_THROWS_WITH_AS(corio::loop(on(backend_kind::epoll)), expected.c_str(), std::invalid_argument);
}

TEST_CASE("epoll: an opcode it does not emulate (MSG_RING, FUTEX_WAIT) fails with EINVAL, as a kernel without it") {
  corio::loop lp(on(backend_kind::epoll));
  lp.run([]() -> task<void> {
    constexpr std::uint8_t op_futex_wait = 51;  // IORING_OP_FUTEX_WAIT; Debian 12's headers predate it
    for (const std::uint8_t opcode : {std::uint8_t{IORING_OP_MSG_RING}, op_futex_wait}) {
      auto prep = [opcode](io_uring_sqe* sqe) {
        io_uring_prep_nop(sqe);
        sqe->opcode = opcode;
      };
      CHECK(co_await error_of(corio::detail::uring_awaiter(prep, [] { return std::string("raw op"); })) == EINVAL);
    }
  }());
}

TEST_CASE("epoll: a recv waits for data, gets it, and sees end of stream (0) when the peer closes") {
  corio::loop lp(on(backend_kind::epoll));
  socket_pair p;
  lp.run([&]() -> task<void> {
    std::string buf(16, '\0');
    auto writer = [&]() -> task<void> {
      co_await corio::sleep_for(5ms);
      CHECK(co_await corio::send(p.fd[1], bytes("hello")) == 5);
      co_await corio::sleep_for(5ms);
      ::close(p.fd[1]);
      p.fd[1] = -1;
    };
    corio::task_group g;
    g.spawn(writer());
    CHECK(co_await corio::recv(p.fd[0], writable(buf)) == 5);
    CHECK(buf.substr(0, 5) == "hello");
    CHECK(co_await corio::recv(p.fd[0], writable(buf)) == 0);
    co_await g.wait();
  }());
}

TEST_CASE("epoll: a recv on a connection the peer reset fails with ECONNRESET") {
  corio::loop lp(on(backend_kind::epoll));
  lp.run([]() -> task<void> {
    auto listener = corio::tcp_listener::bind(corio::address::parse("127.0.0.1:0"));
    corio::tcp_stream client = co_await corio::tcp_stream::connect(listener.local_address());
    corio::tcp_stream server = co_await listener.accept();
    co_await corio::send(client.fd(), bytes("unread"));
    // Closing with unread data (or SO_LINGER 0) makes the kernel send a reset.
    linger l{1, 0};
    REQUIRE(::setsockopt(server.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0);
    server.close();
    std::string buf(16, '\0');
    CHECK(co_await error_of(corio::recv(client.fd(), writable(buf))) == ECONNRESET);
  }());
}

TEST_CASE("epoll: connect to a port nobody listens on fails with ECONNREFUSED, as on io_uring") {
  CHECK(connect_refused_errno(backend_kind::epoll) == ECONNREFUSED);
  if (io_uring_available()) CHECK(connect_refused_errno(backend_kind::io_uring) == ECONNREFUSED);
}

TEST_CASE("epoll: a stop request cancels a waiting recv (operation_cancelled) and the socket stays usable") {
  corio::loop lp(on(backend_kind::epoll));
  socket_pair p;
  lp.run([&]() -> task<void> {
    std::stop_source stop;
    const std::stop_token token = stop.get_token();
    std::string buf(8, '\0');
    auto stopper = [&]() -> task<void> {
      co_await corio::sleep_for(5ms);
      stop.request_stop();
    };
    corio::task_group g;
    g.spawn(stopper());
    CHECK_THROWS_AS(co_await corio::recv(p.fd[0], writable(buf), 0, {.token = &token, .deadline = {}}), corio::operation_cancelled);
    co_await g.wait();
    CHECK(co_await corio::send(p.fd[1], bytes("after")) == 5);
    CHECK(co_await corio::recv(p.fd[0], writable(buf)) == 5);
  }());
}

TEST_CASE("epoll: a deadline on a recv (a linked timeout) throws timed_out after it, not before") {
  corio::loop lp(on(backend_kind::epoll));
  socket_pair p;
  lp.run([&]() -> task<void> {
    std::string buf(8, '\0');
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(co_await corio::recv(p.fd[0], writable(buf), 0, corio::within(30ms)), corio::timed_out);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 30ms);
    CHECK(took < 5s);
    // Data already there: the request completes at once and its timeout is cancelled.
    CHECK(co_await corio::send(p.fd[1], bytes("x")) == 1);
    CHECK(co_await corio::recv(p.fd[0], writable(buf), 0, corio::within(30ms)) == 1);
    co_await corio::sleep_for(40ms);  // the cancelled timeout must not fire later
  }());
}

TEST_CASE("epoll: three receivers and a sender wait on one socket; each completes once") {
  corio::loop lp(on(backend_kind::epoll));
  socket_pair p;
  // Fill fd[1]'s send buffer so a send there has to wait for room.
  const int flags = ::fcntl(p.fd[1], F_GETFL);
  ::fcntl(p.fd[1], F_SETFL, flags | O_NONBLOCK);
  std::string chunk(4096, 'f');
  std::size_t filled = 0;
  for (ssize_t n; (n = ::send(p.fd[1], chunk.data(), chunk.size(), 0)) > 0;) filled += static_cast<std::size_t>(n);
  ::fcntl(p.fd[1], F_SETFL, flags);
  REQUIRE(filled > 0);
  lp.run([&]() -> task<void> {
    int received = 0;
    std::array<std::string, 3> bufs{std::string(1, '\0'), std::string(1, '\0'), std::string(1, '\0')};
    auto receiver = [&](int i) -> task<void> {
      // fd[1] receives: nothing is sent to it until the writer below sends.
      CHECK(co_await corio::recv(p.fd[1], writable(bufs[i])) == 1);
      ++received;
    };
    bool sent = false;
    auto sender = [&]() -> task<void> {
      CHECK(co_await corio::send(p.fd[1], bytes("y")) == 1);  // waits for room (EPOLLOUT)
      sent = true;
    };
    corio::task_group g;
    for (int i = 0; i < 3; ++i) g.spawn(receiver(i));
    g.spawn(sender());
    co_await corio::sleep_for(5ms);
    CHECK(received == 0);
    CHECK_FALSE(sent);
    CHECK(co_await corio::send(p.fd[0], bytes("abc")) == 3);
    // Drain fd[0] so the sender gets room.
    std::string sink(filled + 1, '\0');
    std::size_t drained = 0;
    while (drained < filled + 1) drained += co_await corio::recv(p.fd[0], writable(sink).subspan(drained));
    co_await g.wait();
    CHECK(received == 3);
    CHECK(sent);
    CHECK(bufs[0] + bufs[1] + bufs[2] == "abc");
  }());
}

CORIO_TEST_IF("epoll: cancel_fd cancels every request waiting on the fd and returns how many",
              !corio::kernel_feature_disabled(corio::kernel_feature::cancel_any),
              "CORIO_DISABLE_FEATURES turns cancel_any off: cancel_fd then fails as on a kernel before 5.19") {
  corio::loop lp(on(backend_kind::epoll));
  socket_pair p;
  lp.run([&]() -> task<void> {
    int cancelled = 0;
    auto waiter = [&]() -> task<void> {
      std::string buf(1, '\0');
      try {
        co_await corio::recv(p.fd[0], writable(buf));
      } catch (const corio::operation_cancelled&) {
        ++cancelled;
      }
    };
    corio::task_group g;
    g.spawn(waiter());
    g.spawn(waiter());
    co_await corio::sleep_for(2ms);
    CHECK(co_await corio::cancel_fd(p.fd[0]) == 2);
    co_await g.wait();
    CHECK(cancelled == 2);
  }());
}

CORIO_TEST_IF("cancel_fd of an fd with nothing in flight returns 0 on both backends, as io_uring answers CANCEL_ALL",
              !corio::kernel_feature_disabled(corio::kernel_feature::cancel_any),
              "CORIO_DISABLE_FEATURES turns cancel_any off: cancel_fd then fails as on a kernel before 5.19") {
  std::vector<backend_kind> kinds{backend_kind::epoll};
  if (io_uring_available()) kinds.push_back(backend_kind::io_uring);
  for (backend_kind k : kinds) {
    CAPTURE(static_cast<int>(k));
    corio::loop lp(on(k));
    socket_pair p;
    lp.run([&]() -> task<void> { CHECK(co_await corio::cancel_fd(p.fd[0]) == 0); }());
  }
}

TEST_CASE("epoll: sleeps end in deadline order and never early") {
  corio::loop lp(on(backend_kind::epoll));
  lp.run([]() -> task<void> {
    std::vector<int> order;
    const auto start = std::chrono::steady_clock::now();
    auto sleeper = [&](int ms) -> task<void> {
      co_await corio::sleep_for(std::chrono::milliseconds(ms));
      CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(ms));
      order.push_back(ms);
    };
    corio::task_group g;
    for (int ms : {30, 10, 20, 1}) g.spawn(sleeper(ms));
    co_await g.wait();
    CHECK(order == std::vector<int>{1, 10, 20, 30});
  }());
}

TEST_CASE("epoll: a socket's fd is watched for good, and its number, reused by another socket and then a pipe, "
          "still has its waits answered") {
  using corio::detail::fd_lifetime::generation;
  corio::loop lp(on(backend_kind::epoll));
  lp.run([]() -> task<void> {
    std::string buf(8, '\0');
    // Each read waits first (nothing sent yet); the data comes 5 ms later. A wait the
    // backend no longer watched for would end at the 2 s deadline with timed_out.
    auto send_later = [](int fd) -> task<void> {
      co_await corio::sleep_for(5ms);
      CHECK(co_await corio::write(fd, bytes("data")) == 4);
    };
    int number = -1;
    std::uint32_t first_owner = 0;
    for (int round = 0; round < 3; ++round) {  // a socket's first wait, then two more on it
      auto first = corio::unix_stream::pair();
      if (round == 0) {
        number = first.first.fd();
        first_owner = generation(number);
      }
      REQUIRE(first.first.fd() == number);  // the lowest free numbers come back
      corio::task_group g;
      g.spawn(send_later(first.second.fd()));
      for (int i = 0; i < 3; ++i) {
        if (i > 0) g.spawn(send_later(first.second.fd()));
        CHECK(co_await corio::recv(first.first.fd(), writable(buf), 0, corio::within(2s)) == 4);
        co_await g.wait();
      }
      CHECK(generation(number) % 2 == 1);
      if (round > 0) CHECK(generation(number) != first_owner);
    }
    CHECK(generation(number) % 2 == 0);  // closed: no corio socket owns it
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    REQUIRE(fds[0] == number);
    corio::task_group g;
    g.spawn(send_later(fds[1]));
    CHECK(co_await corio::read(fds[0], writable(buf), corio::at_current_position, corio::within(2s)) == 4);
    co_await g.wait();
    ::close(fds[0]);
    ::close(fds[1]);
  }());
}

TEST_CASE("fd_lifetime: odd while a corio socket owns the number, even once closed or released, never the same twice") {
  using corio::detail::fd_lifetime::generation;
  CHECK(generation(-1) == 0);
  CHECK(generation(1 << 20) == 0);  // beyond the table: unknown
  auto p = corio::unix_stream::pair();
  const int fd = p.first.fd();
  const std::uint32_t owned = generation(fd);
  CHECK(owned % 2 == 1);
  p.first.close();
  CHECK(generation(fd) == owned - 1);
  auto q = corio::unix_stream::pair();
  REQUIRE(q.first.fd() == fd);
  CHECK(generation(fd) == owned + 2);
  const int raw = q.first.release();
  CHECK(generation(fd) == owned + 1);
  ::close(raw);
}

TEST_CASE("epoll: a read of an empty blocking pipe waits without blocking the loop") {
  corio::loop lp(on(backend_kind::epoll));
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  lp.run([&]() -> task<void> {
    std::string buf(8, '\0');
    int ticks = 0;
    auto ticker = [&]() -> task<void> {
      for (int i = 0; i < 3; ++i) {
        co_await corio::sleep_for(2ms);
        ++ticks;
      }
      CHECK(co_await corio::write(fds[1], bytes("pipe")) == 4);
    };
    corio::task_group g;
    g.spawn(ticker());
    CHECK(co_await corio::read(fds[0], writable(buf)) == 4);
    CHECK(ticks == 3);
    CHECK(buf.substr(0, 4) == "pipe");
    co_await g.wait();
  }());
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("epoll: regular files are read and written (synchronously) at offsets") {
  corio::loop lp(on(backend_kind::epoll));
  char path[] = "/tmp/corio_epoll_file_XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  lp.run([&]() -> task<void> {
    CHECK(co_await corio::write(fd, bytes("0123456789"), 0) == 10);
    std::string buf(4, '\0');
    CHECK(co_await corio::read(fd, writable(buf), 3) == 4);
    CHECK(buf == "3456");
    co_await corio::fsync(fd);
    const struct statx st = co_await corio::statx(AT_FDCWD, path);
    CHECK(st.stx_size == 10);
    co_await corio::unlinkat(AT_FDCWD, path);
    CHECK(co_await error_of(corio::statx(AT_FDCWD, path)) == ENOENT);
  }());
  ::close(fd);
}

TEST_CASE("epoll: post from another thread wakes the sleeping loop at once") {
  corio::loop lp(on(backend_kind::epoll));
  std::stop_source stop;
  std::thread t;
  const auto start = std::chrono::steady_clock::now();
  lp.run([&]() -> task<void> {
    corio::loop& self = corio::loop::this_loop();
    t = std::thread([&] {
      std::this_thread::sleep_for(5ms);
      self.post([&] { stop.request_stop(); });  // runs on the loop: cancels the sleep below
    });
    CHECK_THROWS_AS(co_await corio::sleep_for(20s), corio::operation_cancelled);
  }(), stop.get_token());
  t.join();
  CHECK(std::chrono::steady_clock::now() - start < 10s);
}

TEST_CASE("epoll: a blocking openat (a FIFO without a writer) runs on a file worker; the loop's timers go on") {
  corio::loop lp(on(backend_kind::epoll));
  const std::string path = "/tmp/corio_epoll_fifo_" + std::to_string(::getpid());
  ::unlink(path.c_str());
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  // The writer appears from another thread after the loop ticked, or after 10 s at the
  // latest, so a loop blocked in open(2) fails this test instead of hanging it.
  std::atomic<int> ticks{0};
  std::thread writer([&] {
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (ticks.load() < 3 && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) ::close(fd);
  });
  lp.run([&]() -> task<void> {
    auto ticker = [&]() -> task<void> {
      for (int i = 0; i < 3; ++i) {
        co_await corio::sleep_for(2ms);
        ++ticks;
      }
    };
    corio::task_group g;
    g.spawn(ticker());
    const int fd = co_await corio::openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    CHECK(ticks.load() == 3);  // the open ended only after the loop ticked three times
    ::close(fd);
    co_await g.wait();
  }());
  writer.join();
  ::unlink(path.c_str());
}
