#include "stream.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <array>

#include "detail/fd_lifetime.hpp"

namespace corio {
namespace detail {

int open_stream_socket(int domain, const std::string& what) {
  return check_errno(::socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket for " + what);
}

}  // namespace detail

// --- stream_socket ----------------------------------------------------------------------

task<void> stream_socket::read_exact(std::span<std::byte> buffer, op_options options) {
  std::size_t got = 0;
  while (got < buffer.size()) {
    const int n = co_await corio::recv(fd_, buffer.subspan(got), 0, options);
    if (n == 0)
      throw end_of_stream("read_exact fd " + std::to_string(fd_) + ": end of stream after " +
                          std::to_string(got) + " of " + std::to_string(buffer.size()) + " bytes");
    got += static_cast<std::size_t>(n);
  }
}

task<void> stream_socket::write_all(std::span<const std::byte> data, op_options options) {
  // One send in flight at a time, from the caller's buffer: the only queue is the
  // kernel's socket buffer, so a peer that does not read suspends us here.
  while (!data.empty()) {
    const int n = co_await corio::send(fd_, data, 0, options);
    data = data.subspan(static_cast<std::size_t>(n));
  }
}

void stream_socket::shutdown(int how) {
  detail::check_errno(::shutdown(fd_, how), "shutdown fd " + std::to_string(fd_));
}

task<void> stream_socket::linger(std::size_t max_bytes, std::chrono::steady_clock::duration max_wait) {
  std::array<std::byte, 4096> sink;
  try {
    shutdown(SHUT_WR);
    const op_options until = within(max_wait);
    for (std::size_t discarded = 0; discarded < max_bytes;) {
      const int n = co_await read_some(sink, until);
      if (n == 0) break;
      discarded += static_cast<std::size_t>(n);
    }
  } catch (const std::exception&) {
    // Reset, timed out or cancelled: the caller closes now, as it would have anyway.
  }
}

stream_socket::stream_socket(int fd) noexcept : fd_(fd) { detail::fd_lifetime::adopted(fd); }

void stream_socket::close() noexcept {
  if (fd_ < 0) return;
  detail::fd_lifetime::closing(fd_);  // before the number can be reused
  ::close(std::exchange(fd_, -1));
}

int stream_socket::release() noexcept {
  if (fd_ >= 0) detail::fd_lifetime::closing(fd_);  // not ours to watch for good any more
  return std::exchange(fd_, -1);
}

// --- tcp_stream -------------------------------------------------------------------------

tcp_stream::tcp_stream(int fd) : stream_socket(fd) { set_nodelay(true); }

void tcp_stream::set_nodelay(bool on) {
  const int v = on ? 1 : 0;
  detail::check_errno(::setsockopt(fd(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v),
                      "setsockopt TCP_NODELAY fd " + std::to_string(fd()));
}

void tcp_stream::check_address(const address& a, const char* who) {
  if (!a.is_ip())
    throw std::invalid_argument(std::string("tcp ") + who + ": " + a.to_string() + " is not an IP address");
}

task<tcp_stream> tcp_stream::connect(address to, op_options options) {
  check_address(to, "connect");
  // TCP_NODELAY is set before connecting; the option survives the connect.
  tcp_stream s(detail::open_stream_socket(to.domain(), "connect " + to.to_string()));
  co_await corio::connect(s.fd(), to, options);
  co_return s;
}

// --- unix_stream ------------------------------------------------------------------------

void unix_stream::check_address(const address& a, const char* who) {
  if (a.is_ip())
    throw std::invalid_argument(std::string("unix ") + who + ": " + a.to_string() + " is not a unix address");
}

task<unix_stream> unix_stream::connect(address to, op_options options) {
  check_address(to, "connect");
  unix_stream s(detail::open_stream_socket(AF_UNIX, "connect " + to.to_string()));
  co_await corio::connect(s.fd(), to, options);
  co_return s;
}

std::pair<unix_stream, unix_stream> unix_stream::pair() {
  int fds[2];
  detail::check_errno(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), "socketpair");
  return {unix_stream(fds[0]), unix_stream(fds[1])};
}

// --- listener_socket --------------------------------------------------------------------

listener_socket::listener_socket(const address& at, const listen_options& options) {
  const std::string where = at.to_string();
  fd_ = detail::open_stream_socket(at.domain(), "listen on " + where);
  // From here the destructor is not run on a throw: close by hand.
  try {
    const int one = 1;
    if (at.is_ip() && options.reuse_address)
      detail::check_errno(::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one),
                          "setsockopt SO_REUSEADDR " + where);
    if (options.reuse_port)
      detail::check_errno(::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one),
                          "setsockopt SO_REUSEPORT " + where);
    detail::check_errno(::bind(fd_, at.data(), at.size()), "bind " + where);
    if (!at.is_ip() && !at.path().empty() && at.path().front() != '@') unlink_path_ = at.path();
    detail::check_errno(::listen(fd_, options.backlog), "listen " + where);
    local_ = address::local_of(fd_);
  } catch (...) {
    close();
    throw;
  }
}

listener_socket& listener_socket::operator=(listener_socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    local_ = o.local_;
    unlink_path_ = std::move(o.unlink_path_);
    o.unlink_path_.clear();
  }
  return *this;
}

void listener_socket::close() noexcept {
  if (fd_ < 0) return;
  ::close(std::exchange(fd_, -1));
  if (!unlink_path_.empty()) ::unlink(unlink_path_.c_str());
  unlink_path_.clear();
}

}  // namespace corio
