#pragma once
// pipe<T>: a connection between two processes carrying values of T (Python's
// multiprocessing.Pipe).
//
//     auto [a, b] = corio::make_pipe<std::string>();   // duplex: both ends send and receive
//     corio::process child([](corio::connection<std::string>& c) { c.send("hello"); }, std::move(b));
//     child.start();                                     // b is now open only in the child
//     std::string s = a.recv();                          // "hello"
//     a.recv();                                          // throws corio::pipe_closed: the child exited
//
//     auto [rx, tx] = corio::make_pipe<int>(false);     // one-way: rx only receives, tx only sends
//
// The model
// - make_pipe() builds one socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC); each end is
//   a connection<T> that owns its socket. fork() copies the ends into the child (pass
//   them to corio::process, which moves them into the child only, see process.hpp).
// - Each value is encoded by corio's codec (codec.hpp) and sent as one frame: a u64
//   payload length in host byte order, then the payload. Any size up to
//   pipe_max_frame (1 GiB) works; the receiver reads whatever the socket holds into a
//   buffer (64 KiB, doubled while a bigger frame's bytes keep arriving: never sized from
//   the announced length alone) and hands out whole frames only, so many small values
//   cost one recv(2).
// - End of stream: recv()/async_recv() throw corio::pipe_closed once every copy of the
//   peer end is closed, in every process: close(), the destructor, the holder exiting, or
//   the holder killed by SIGKILL (the kernel closes its fds). Exactly Python's rule: a
//   process holding a copy of the peer end it does not use keeps the stream open, so
//   close the ends you do not use (examples/pipe.cpp). A frame cut short by a dying
//   sender throws pipe_closed, never a torn value. Sending to a closed peer throws
//   pipe_closed too (EPIPE; MSG_NOSIGNAL, so never a SIGPIPE).
// - A length above pipe_max_frame (something other than a corio pipe wrote to the
//   socket) throws decode_error, and so do bytes the codec cannot decode as T; the
//   stream is then unusable.
// - Sync calls block the calling thread (and its loop, if called on a loop's thread).
//   async_send/async_recv run through the loop's io_uring instead (IORING_OP_SEND/RECV)
//   and honour the awaiting coroutine's stop token (operation_cancelled). A send
//   cancelled midway leaves a partial frame: the connection must then be closed.
//
// Errors: duplex=false misuse (recv on the sending end, send on the receiving end) and
// any use after close() throw std::logic_error. Encoding failures throw encode_error in
// the sender, before anything is written.
//
// Who may touch it: one thread at a time, and one send and one receive at a time per
// end (two processes writing through copies of one end can interleave their frames, as
// in Python). A connection is move-only; destruction closes the socket.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "../coro/task.hpp"
#include "codec.hpp"

namespace corio {

// End of stream: the peer end is closed in every process (or the peer died).
class pipe_closed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The largest payload a frame may carry; a bigger length prefix is taken as corruption.
inline constexpr std::uint64_t pipe_max_frame = std::uint64_t{1} << 30;

namespace detail {

// One end of the socketpair: frames out, frames in. The typed connection<T> sits on it.
class pipe_end {
 public:
  static constexpr unsigned sends = 1;
  static constexpr unsigned receives = 2;
  static constexpr std::size_t header_size = sizeof(std::uint64_t);

  pipe_end() = default;
  pipe_end(int fd, unsigned modes) noexcept : fd_(fd), modes_(modes) {}
  pipe_end(pipe_end&& o) noexcept;
  pipe_end& operator=(pipe_end&& o) noexcept;
  pipe_end(const pipe_end&) = delete;
  pipe_end& operator=(const pipe_end&) = delete;
  ~pipe_end() { close(); }

  // `frame` is header_size reserved bytes followed by the payload; the header is filled
  // in here and the whole frame written.
  void send_frame(std::vector<std::byte>& frame);
  [[nodiscard]] task<void> async_send_frame(std::vector<std::byte>& frame);
  // The next frame's payload, valid until the next receive or close.
  std::span<const std::byte> recv_frame();
  [[nodiscard]] task<std::span<const std::byte>> async_recv_frame();
  bool poll(std::chrono::milliseconds timeout);

  void close() noexcept;
  int fd() const noexcept { return fd_; }
  // Bytes received from the socket and not yet handed out as frames.
  std::size_t buffered() const noexcept { return end_ - begin_; }
  unsigned modes() const noexcept { return modes_; }
  // Throws std::logic_error unless this end is open and may do `mode`.
  void require(unsigned mode, const char* what) const;

 private:
  static void seal_frame(std::vector<std::byte>& frame);    // fills the length header
  bool take_buffered(std::span<const std::byte>& payload);  // a whole frame buffered?
  std::span<std::byte> free_space();                        // room for the next read
  void received(long n);                                    // 0: end of stream

  int fd_ = -1;
  unsigned modes_ = 0;
  std::vector<std::byte> buffer_;
  std::size_t begin_ = 0;  // first unconsumed byte
  std::size_t end_ = 0;    // one past the last received byte
};

std::pair<pipe_end, pipe_end> make_pipe_ends(bool duplex);


template <class Object>
struct handoff_traits;  // ipc/handoff.hpp: sends and rebuilds a connection in another process

}  // namespace detail

template <class T>
class connection {
 public:
  connection() = default;
  explicit connection(detail::pipe_end end) noexcept : end_(std::move(end)) {}

  // Blocks until the whole frame is written (the socket buffer may be full).
  void send(const T& value) {
    end_.require(detail::pipe_end::sends, "send");
    frame_.resize(detail::pipe_end::header_size);
    corio::encode(value, frame_);
    end_.send_frame(frame_);
  }
  // Blocks until a value arrives; pipe_closed at end of stream.
  [[nodiscard]] T recv() {
    end_.require(detail::pipe_end::receives, "recv");
    return corio::decode<T>(end_.recv_frame());
  }
  // The same inside a corio loop, through its io_uring. The task is lazy and `value` is
  // encoded when it starts: await it in the same expression, co_await c.async_send(v).
  [[nodiscard]] task<void> async_send(const T& value) {
    end_.require(detail::pipe_end::sends, "async_send");
    std::vector<std::byte> frame(detail::pipe_end::header_size);
    corio::encode(value, frame);
    co_await end_.async_send_frame(frame);
  }
  [[nodiscard]] task<T> async_recv() {
    end_.require(detail::pipe_end::receives, "async_recv");
    auto payload = co_await end_.async_recv_frame();
    co_return corio::decode<T>(payload);
  }
  // True when a value (or the end of stream) can be received without blocking, waiting
  // up to `timeout` for it (Python's Connection.poll).
  [[nodiscard]] bool poll(std::chrono::milliseconds timeout = std::chrono::milliseconds{0}) {
    end_.require(detail::pipe_end::receives, "poll");
    return end_.poll(timeout);
  }

  void close() noexcept { end_.close(); }
  [[nodiscard]] bool closed() const noexcept { return end_.fd() < 0; }
  [[nodiscard]] int fd() const noexcept { return end_.fd(); }
  [[nodiscard]] bool readable() const noexcept { return (end_.modes() & detail::pipe_end::receives) != 0; }
  [[nodiscard]] bool writable() const noexcept { return (end_.modes() & detail::pipe_end::sends) != 0; }

 private:
  template <class Object>
  friend struct detail::handoff_traits;
  detail::pipe_end end_;
  std::vector<std::byte> frame_;  // reused by send()
};

// A connected pair of ends. duplex = false: the first end only receives, the second only
// sends (Python's Pipe(duplex=False) order). Throws std::system_error if socketpair fails.
template <class T>
[[nodiscard]] std::pair<connection<T>, connection<T>> make_pipe(bool duplex = true) {
  auto [a, b] = detail::make_pipe_ends(duplex);
  return {connection<T>(std::move(a)), connection<T>(std::move(b))};
}

}  // namespace corio
