#pragma once
// Byte streams over sockets: tcp_listener / tcp_stream (IPv4, IPv6) and unix_listener /
// unix_stream (AF_UNIX), all sharing one implementation (stream_socket, basic_listener).
//
//     auto server = corio::tcp_listener::bind(corio::address::parse("0.0.0.0:8080"),
//                                             {.reuse_port = true});
//     corio::tcp_stream conn = co_await server.accept();
//     std::array<std::byte, 4096> buf;
//     int n = co_await conn.read_some(buf);           // 0: the peer closed its side
//     co_await conn.write_all(std::span(buf).first(n));
//
//     corio::tcp_stream c = co_await corio::tcp_stream::connect(server.local_address());
//
// Ownership: each object owns its fd (close-on-exec) and closes it when destroyed;
// move-only. A stream or listener belongs to the loop thread that uses it; operations on
// one stream may overlap only as one reader plus one writer.
//
// Errors: std::system_error naming the operation, its object and the errno text
// ("connect 127.0.0.1:1: Connection refused", "bind 0.0.0.0:80: Permission denied");
// operation_cancelled / timed_out from op_options (stop token, deadline). read_exact
// throws corio::end_of_stream when the peer closes first; the bytes read so far are
// consumed and lost. An operation that threw mid-way (write_all, read_exact) leaves the
// stream at an unknown position: close it.
//
// Backpressure: write_all never buffers in user space. It sends the caller's buffer
// directly and awaits each send's completion; while the peer does not read, the kernel's
// socket buffer fills and write_all stays suspended (use a deadline or a stop token to
// give up). Memory per connection is therefore bounded by the kernel's socket buffers.
//
// SO_REUSEPORT (listen_options::reuse_port): several listeners, typically one per shard,
// may bind the same address; the kernel spreads incoming connections among them.

#include <sys/socket.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../coro/task.hpp"
#include "address.hpp"
#include "detail/uring_awaiter.hpp"
#include "multishot_accept.hpp"
#include "net_ops.hpp"

namespace corio {

// The peer closed its side before read_exact had all the bytes it asked for.
class end_of_stream : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct listen_options {
  // SO_REUSEPORT: let other sockets (other shards) listen on the same address.
  bool reuse_port = false;
  // SO_REUSEADDR (IP only): rebind at once after a restart despite TIME_WAIT connections.
  bool reuse_address = true;
  // listen(2) backlog; the kernel caps it at net.core.somaxconn.
  int backlog = SOMAXCONN;
};

namespace detail {

// Runs an awaiter and passes its result through `f` (fd -> stream) without a coroutine
// frame.
template <class Inner, class F>
class [[nodiscard]] map_awaiter {
 public:
  map_awaiter(Inner inner, F f) : inner_(std::move(inner)), f_(std::move(f)) {}
  bool await_ready() { return inner_.await_ready(); }
  template <class P>
  auto await_suspend(std::coroutine_handle<P> h) {
    return inner_.await_suspend(h);
  }
  decltype(auto) await_resume() { return f_(inner_.await_resume()); }

 private:
  Inner inner_;
  F f_;
};

// A new SOCK_STREAM socket of `domain`, close-on-exec; `what` names the purpose for errors.
int open_stream_socket(int domain, const std::string& what);

}  // namespace detail

// What tcp_stream and unix_stream share: an owned connected socket and its byte I/O.
class stream_socket {
 public:
  stream_socket(stream_socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  stream_socket& operator=(stream_socket&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  stream_socket(const stream_socket&) = delete;
  stream_socket& operator=(const stream_socket&) = delete;
  ~stream_socket() { close(); }

  int fd() const noexcept { return fd_; }
  bool is_open() const noexcept { return fd_ >= 0; }

  // Receives up to buffer.size() bytes: the awaitable yields how many, 0 at end of stream.
  auto read_some(std::span<std::byte> buffer, op_options options = {}) {
    return corio::recv(fd_, buffer, 0, options);
  }
  // Fills `buffer` completely; throws end_of_stream if the peer closes first. The
  // options apply to the whole call (one deadline for all the receives).
  [[nodiscard]] task<void> read_exact(std::span<std::byte> buffer, op_options options = {});
  // Sends all of `data`, awaiting each send (see Backpressure above). The options apply
  // to the whole call.
  [[nodiscard]] task<void> write_all(std::span<const std::byte> data, op_options options = {});

  // shutdown(2): SHUT_WR sends end-of-stream to the peer while reads go on. Never blocks.
  void shutdown(int how = SHUT_WR);
  // A "lingering close", for a server about to close after an error reply or a QUIT:
  // closing a socket with unread bytes in its receive queue makes the kernel send a reset,
  // and a reset can destroy the reply before the peer reads it. So: shutdown(SHUT_WR)
  // (the peer gets the reply, then end of stream), then read and discard what the peer
  // still sends until it closes, `max_bytes` were discarded, or `max_wait` passed. Never
  // throws for the peer's doing (reset, timeout, cancellation); the caller closes.
  [[nodiscard]] task<void> linger(std::size_t max_bytes, std::chrono::steady_clock::duration max_wait);
  // Closes the fd now (idempotent). Never blocks (no SO_LINGER).
  void close() noexcept;
  // Gives up ownership of the fd.
  int release() noexcept;

  address local_address() const { return address::local_of(fd_); }
  address peer_address() const { return address::peer_of(fd_); }

 protected:
  stream_socket() noexcept = default;
  // Adopts fd (see runtime/detail/fd_lifetime.hpp: the epoll backend then keeps it
  // registered for good, until close() or release()).
  explicit stream_socket(int fd) noexcept;

 private:
  int fd_ = -1;
};

class tcp_stream : public stream_socket {
 public:
  tcp_stream() noexcept = default;
  // Adopts a connected TCP socket and turns on TCP_NODELAY (see set_nodelay).
  explicit tcp_stream(int fd);

  // Connects to an IPv4 or IPv6 address (std::invalid_argument for a Unix address).
  [[nodiscard]] static task<tcp_stream> connect(address to, op_options options = {});

  // How long connect_any gives each address but the last.
  static constexpr std::chrono::milliseconds default_per_try{3000};
  // Connects to `host`, a name or a number, on `port`: resolve(host, port) (resolve.hpp),
  // then connect_any over what it gives. A numeric host takes connect(address)'s path (no
  // lookup, the same errors). options.deadline bounds the whole call, lookup included;
  // the lookup follows the coroutine's own stop token, options.token the connects. A
  // failed lookup is resolve_error.
  [[nodiscard]] static task<tcp_stream> connect(std::string host, std::uint16_t port, op_options options = {},
                                                std::chrono::milliseconds per_try = default_per_try);
  // Tries each address in order until one connects: Happy Eyeballs (RFC 8305) without the
  // racing, in the order given (getaddrinfo's sorting prefers what is likely to work).
  // Each address but the last gets at most per_try, and at most its share of what is left
  // of options.deadline (the time left over the addresses left); the last gets all that
  // is left. A stop request ends it at once (operation_cancelled). When every address
  // fails, the error is the last one's (timed_out when the deadline ended it),
  // its message lists every address tried with why it failed:
  //   "connect localhost:6379 (tried [::1]:6379: Connection refused; 127.0.0.1:6379: no
  //   answer within 3000 ms): Connection timed out"
  // std::invalid_argument for an empty list or a Unix address.
  [[nodiscard]] static task<tcp_stream> connect_any(std::vector<address> to, op_options options = {},
                                                    std::chrono::milliseconds per_try = default_per_try);

  // TCP_NODELAY, on by default: small writes go out at once instead of waiting for the
  // peer's ACK (Nagle), which request/response protocols need.
  void set_nodelay(bool on);

  static void check_address(const address& a, const char* who);
};

class unix_stream : public stream_socket {
 public:
  unix_stream() noexcept = default;
  // Adopts a connected AF_UNIX stream socket.
  explicit unix_stream(int fd) noexcept : stream_socket(fd) {}

  // Connects to a Unix-domain address (std::invalid_argument for an IP address).
  [[nodiscard]] static task<unix_stream> connect(address to, op_options options = {});
  // Two connected streams (socketpair(2)).
  static std::pair<unix_stream, unix_stream> pair();

  static void check_address(const address& a, const char* who);
};

// What every listener shares: the owned listening fd and its address.
class listener_socket {
 public:
  listener_socket(listener_socket&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), local_(o.local_), unlink_path_(std::move(o.unlink_path_)) {
    o.unlink_path_.clear();
  }
  listener_socket& operator=(listener_socket&& o) noexcept;
  listener_socket(const listener_socket&) = delete;
  listener_socket& operator=(const listener_socket&) = delete;
  ~listener_socket() { close(); }

  int fd() const noexcept { return fd_; }
  // The bound address, with the port the kernel chose when bound to port 0.
  const address& local_address() const noexcept { return local_; }
  // Stops listening; a Unix listener also removes its socket file. Idempotent.
  void close() noexcept;

 protected:
  listener_socket(const address& at, const listen_options& options);

 private:
  int fd_ = -1;
  address local_;
  std::string unlink_path_;  // a filesystem Unix socket this listener created
};

// A listener handing out Stream objects (tcp_stream or unix_stream).
template <class Stream>
class basic_listener : public listener_socket {
 public:
  // socket + setsockopt + bind + listen. Throws std::invalid_argument for an address of
  // the wrong family, std::system_error ("bind 127.0.0.1:80: Address already in use").
  static basic_listener bind(const address& at, listen_options options = {}) {
    Stream::check_address(at, "bind");
    return basic_listener(at, options);
  }

  // One connection: the awaitable yields a Stream.
  auto accept(op_options options = {}) {
    return detail::map_awaiter(corio::accept(fd(), options), [](int fd) { return Stream(fd); });
  }

  // Many connections from one multishot request (multishot_accept.hpp); next() yields Streams.
  class acceptor {
   public:
    explicit acceptor(multishot_accept inner) noexcept : inner_(std::move(inner)) {}
    auto next(op_options options = {}) {
      return detail::map_awaiter(inner_.next(options), [](int fd) { return Stream(fd); });
    }
    bool is_multishot() const noexcept { return inner_.is_multishot(); }
    std::size_t pending() const noexcept { return inner_.pending(); }

   private:
    multishot_accept inner_;
  };
  // The listener must outlive the acceptor.
  acceptor incoming(multishot_options options = {}) { return acceptor(multishot_accept(fd(), options)); }

 private:
  basic_listener(const address& at, const listen_options& options) : listener_socket(at, options) {}
};

using tcp_listener = basic_listener<tcp_stream>;
using unix_listener = basic_listener<unix_stream>;

}  // namespace corio
