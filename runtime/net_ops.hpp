#pragma once
// Socket operations through the ring: accept, connect, recv, send, sendmsg, shutdown. Like file_ops.hpp, each function returns an awaitable and takes op_options
// last (stop token, deadline); failures throw with what was being done and on what:
// "connect 127.0.0.1:1: Connection refused", "recv fd 7: Connection reset by peer".
//
//     int conn = co_await corio::accept(listen_fd);                // SOCK_CLOEXEC
//     co_await corio::connect(fd, corio::address::parse("127.0.0.1:80"));
//     int n = co_await corio::recv(fd, buffer);                     // 0: end of stream
//     int m = co_await corio::send(fd, bytes);                      // may be short
//
// Most programs use the stream types of stream.hpp instead; these are their building
// blocks. Every fd these operations create is close-on-exec; send always adds
// MSG_NOSIGNAL (a closed peer is an EPIPE error, never a SIGPIPE).
//
// Accepting many connections from one request is multishot_accept.hpp, included here so
// that this header still offers every socket operation.

#include <sys/socket.h>

#include <cstddef>
#include <span>
#include <string>
#include <utility>

#include "address.hpp"
#include "detail/uring_awaiter.hpp"
#include "multishot_accept.hpp"

namespace corio {

namespace detail {
inline auto describe_socket(const char* op, int fd) {
  return [op, fd] { return std::string(op) + " fd " + std::to_string(fd); };
}
}  // namespace detail

// Accepts one connection on the listening socket `fd`; returns the new fd (close-on-exec).
inline auto accept(int fd, op_options options = {}) {
  return detail::uring_awaiter(
      [fd](io_uring_sqe* sqe) { io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC); },
      detail::describe_socket("accept", fd), std::move(options));
}

// Connects the socket `fd` to `to`. The address is copied into the awaiter, so it need
// not outlive the call.
inline auto connect(int fd, const address& to, op_options options = {}) {
  auto describe = [to] { return "connect " + to.to_string(); };
  return detail::uring_awaiter(
      [to, fd](io_uring_sqe* sqe) { io_uring_prep_connect(sqe, fd, to.data(), to.size()); },
      std::move(describe), std::move(options));
}

// Receives up to buffer.size() bytes; returns how many, 0 at end of stream.
inline auto recv(int fd, std::span<std::byte> buffer, int flags = 0, op_options options = {}) {
  return detail::uring_awaiter(
      [=](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd, buffer.data(), buffer.size(), flags); },
      detail::describe_socket("recv", fd), std::move(options));
}

// Sends some of `data` (possibly fewer bytes than asked); returns how many.
inline auto send(int fd, std::span<const std::byte> data, int flags = 0, op_options options = {}) {
  return detail::uring_awaiter(
      [=](io_uring_sqe* sqe) { io_uring_prep_send(sqe, fd, data.data(), data.size(), flags | MSG_NOSIGNAL); },
      detail::describe_socket("send", fd), std::move(options));
}

// Sends the buffers of `msg` (a gathered write: several buffers, one request); returns
// how many bytes went, possibly fewer than all. `msg` and its iovecs must stay valid until
// the awaitable completes.
inline auto sendmsg(int fd, const msghdr* msg, int flags = 0, op_options options = {}) {
  return detail::uring_awaiter(
      [=](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, fd, msg, static_cast<unsigned>(flags | MSG_NOSIGNAL)); },
      detail::describe_socket("sendmsg", fd), std::move(options));
}

// shutdown(2) through the ring (Linux 5.11); `how` is SHUT_RD, SHUT_WR or SHUT_RDWR.
inline auto shutdown(int fd, int how, op_options options = {}) {
  return detail::uring_awaiter([fd, how](io_uring_sqe* sqe) { io_uring_prep_shutdown(sqe, fd, how); },
                               detail::describe_socket("shutdown", fd), std::move(options));
}

}  // namespace corio
