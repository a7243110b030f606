#include "pipe.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "../runtime/errors.hpp"
#include "../runtime/net_ops.hpp"

namespace corio::detail {
namespace {

constexpr std::size_t initial_buffer = 64 * 1024;

[[noreturn]] void throw_peer_gone() { throw pipe_closed("corio::pipe: the peer end is closed"); }

// EPIPE and ECONNRESET mean the same to a pipe user as a clean end of stream.
bool peer_gone(int error) noexcept { return error == EPIPE || error == ECONNRESET; }
bool peer_gone(const std::system_error& e) noexcept {
  return e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset;
}

std::string describe(const char* op, int fd) { return std::string("pipe ") + op + " fd " + std::to_string(fd); }

}  // namespace

pipe_end::pipe_end(pipe_end&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      modes_(std::exchange(o.modes_, 0)),
      buffer_(std::move(o.buffer_)),
      begin_(std::exchange(o.begin_, 0)),
      end_(std::exchange(o.end_, 0)) {}

pipe_end& pipe_end::operator=(pipe_end&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    modes_ = std::exchange(o.modes_, 0);
    buffer_ = std::move(o.buffer_);
    begin_ = std::exchange(o.begin_, 0);
    end_ = std::exchange(o.end_, 0);
  }
  return *this;
}

void pipe_end::close() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  buffer_ = {};
  begin_ = end_ = 0;
}

void pipe_end::require(unsigned mode, const char* what) const {
  if (fd_ < 0) throw std::logic_error(std::string("corio::connection::") + what + ": the connection is closed");
  if ((modes_ & mode) == 0)
    throw std::logic_error(std::string("corio::connection::") + what +
                           (mode == sends ? ": this end only receives (make_pipe(false): the second end sends)"
                                          : ": this end only sends (make_pipe(false): the first end receives)"));
}

// Writes the length header in front of an encoded value, refusing what a receiver would
// reject as corrupt.
void pipe_end::seal_frame(std::vector<std::byte>& frame) {
  const std::uint64_t length = frame.size() - header_size;
  if (length > pipe_max_frame)
    throw encode_error("corio::pipe: a value of " + std::to_string(length) + " bytes exceeds pipe_max_frame");
  std::memcpy(frame.data(), &length, header_size);
}

void pipe_end::send_frame(std::vector<std::byte>& frame) {
  seal_frame(frame);
  std::size_t done = 0;
  while (done < frame.size()) {
    const ssize_t n = ::send(fd_, frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
    } else if (errno == EINTR) {
      continue;
    } else if (peer_gone(errno)) {
      throw_peer_gone();
    } else {
      throw_errno(errno, describe("send", fd_));
    }
  }
}

task<void> pipe_end::async_send_frame(std::vector<std::byte>& frame) {
  seal_frame(frame);
  std::size_t done = 0;
  while (done < frame.size()) {
    bool gone = false;
    try {
      done += static_cast<std::size_t>(co_await corio::send(fd_, std::span<const std::byte>(frame).subspan(done)));
    } catch (const operation_cancelled&) {
      throw;
    } catch (const std::system_error& e) {
      if (!peer_gone(e)) throw;
      gone = true;
    }
    if (gone) throw_peer_gone();
  }
}

bool pipe_end::take_buffered(std::span<const std::byte>& payload) {
  const std::size_t have = end_ - begin_;
  if (have < header_size) return false;
  std::uint64_t length = 0;
  std::memcpy(&length, buffer_.data() + begin_, header_size);
  if (length > pipe_max_frame)
    throw decode_error("corio::pipe: frame length " + std::to_string(length) + " exceeds pipe_max_frame (" +
                       std::to_string(pipe_max_frame) + "): the stream is corrupt");
  if (have - header_size < length) return false;
  payload = std::span<const std::byte>(buffer_.data() + begin_ + header_size, static_cast<std::size_t>(length));
  begin_ += header_size + static_cast<std::size_t>(length);
  return true;
}

std::span<std::byte> pipe_end::free_space() {
  // The previous payload handed out is dead now: compact, then make room for more of the
  // frame being received.
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  std::size_t needed = header_size;
  if (end_ >= header_size) {
    std::uint64_t length = 0;
    std::memcpy(&length, buffer_.data(), header_size);
    needed += static_cast<std::size_t>(length);  // length was checked by take_buffered
  }
  // The announced length is the peer's word, not bytes: grow only when the buffer is full,
  // by doubling what arrived (capped at the frame). A frame of n bytes still costs O(n)
  // copying in all; a peer that announces 1 GiB and sends 10 bytes costs 64 KiB.
  std::size_t size = std::max(initial_buffer, buffer_.size());
  if (end_ == size && needed > size) size = std::min(needed, 2 * size);
  if (buffer_.size() < size) buffer_.resize(size);
  return std::span<std::byte>(buffer_).subspan(end_);
}

void pipe_end::received(long n) {
  if (n > 0) {
    end_ += static_cast<std::size_t>(n);
    return;
  }
  if (end_ == begin_) throw pipe_closed("corio::pipe: end of stream (the peer end is closed)");
  throw pipe_closed("corio::pipe: the peer closed mid-frame (" + std::to_string(end_ - begin_) +
                    " bytes of a frame received); the partial value is dropped");
}

std::span<const std::byte> pipe_end::recv_frame() {
  std::span<const std::byte> payload;
  while (!take_buffered(payload)) {
    const auto space = free_space();
    const ssize_t n = ::recv(fd_, space.data(), space.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (peer_gone(errno)) {
        received(0);
      } else {
        throw_errno(errno, describe("recv", fd_));
      }
    }
    received(n);
  }
  return payload;
}

task<std::span<const std::byte>> pipe_end::async_recv_frame() {
  std::span<const std::byte> payload;
  while (!take_buffered(payload)) {
    const auto space = free_space();
    int n = 0;
    try {
      n = co_await corio::recv(fd_, space);
    } catch (const operation_cancelled&) {
      throw;
    } catch (const std::system_error& e) {
      if (!peer_gone(e)) throw;
      n = 0;
    }
    received(n);
  }
  co_return payload;
}

bool pipe_end::poll(std::chrono::milliseconds timeout) {
  if (end_ - begin_ >= header_size) {
    std::uint64_t length = 0;
    std::memcpy(&length, buffer_.data() + begin_, header_size);
    if (end_ - begin_ - header_size >= length) return true;  // a whole frame is buffered
  }
  pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
  int r;
  do {
    r = ::poll(&p, 1, static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(timeout.count(), 0, 1 << 30)));
  } while (r < 0 && errno == EINTR);
  if (r < 0) throw_errno(errno, describe("poll", fd_));
  return r > 0;
}

std::pair<pipe_end, pipe_end> make_pipe_ends(bool duplex) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_errno(errno, "corio::make_pipe: socketpair");
  const unsigned both = pipe_end::sends | pipe_end::receives;
  return {pipe_end(fds[0], duplex ? both : pipe_end::receives), pipe_end(fds[1], duplex ? both : pipe_end::sends)};
}

}  // namespace corio::detail
