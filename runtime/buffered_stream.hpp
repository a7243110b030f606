#pragma once
// Buffered reading and writing over a stream socket (tcp_stream, unix_stream).
//
//     corio::buffered_reader in(conn);                         // 16 KiB, one allocation
//     std::string_view line = co_await in.read_until("\r\n", 8192);
//     co_await in.read_exact(body);                            // buffered bytes first
//
//     corio::buffered_writer out(conn);
//     co_await out.write("HTTP/1.1 200 OK\r\n");               // copied, no I/O yet
//     co_await out.flush();                                    // one write_all
//
// buffered_reader
// - A fixed buffer (owned, or borrowed storage): it never grows. Each fill() is one recv
//   into its free tail. read_until(delim, max_bytes) returns a view of the bytes up to and
//   including `delim`; a delimiter that does not end within the first max_bytes throws
//   buffer_limit_exceeded ("read_until fd 7: no \"\\n\" within 16 bytes") and consumes
//   nothing, so memory stays bounded whatever the peer sends. max_bytes must not exceed
//   the capacity (std::invalid_argument).
// - Views returned by read_until, buffered() and buffered_text() stay valid until the
//   next call that reads (fill, read_*): a fill may move the unconsumed bytes to the front.
// - End of stream, as in stream.hpp: read_some() and fill() yield 0. read_until() returns
//   an empty view when the peer closed with nothing buffered (a successful result always
//   holds the delimiter, so it is never empty) and throws end_of_stream when it closed in
//   the middle of a message; read_exact() throws end_of_stream ("read_exact fd 7: end of
//   stream after 3 of 10 bytes").
// - Options: an op_options given to a call applies to each receive of that call (a
//   deadline is absolute, so it bounds the whole call). With default options a reader
//   calls its receive_hooks (set_hooks) around each receive: `before` supplies the
//   options, `after` learns that the receive completed (not called when it threw). The
//   server uses them for idle and read timeouts and shutdown (server.hpp). Without
//   either, receives borrow the awaiting coroutine's stop token, like every operation.
//
// - Provided buffers (use_provided_buffers; kernel_feature::provided_buffers and
//   recv_multishot, Linux 6.0): the reader keeps one multishot receive armed on the
//   socket, into a ring of buffers shared by the loop's connections
//   (detail/recv_multishot.hpp). fill() then copies what arrived into the reader's buffer,
//   without a system call or a suspension when it is already there, and gives the ring's
//   buffers back at once. From the first fill() on, the socket's bytes belong to the
//   reader: receiving on the stream directly as well would take bytes out of order.
//   read_some() then copies straight from the ring's buffers into the caller's memory,
//   so a caller that parses from its own growable buffer (examples/kv_server.cpp) can
//   read through a reader. But a message of many ring buffers costs a kernel receive, a
//   CQE and a copy per buffer, where one recv into the caller's memory takes it whole:
//   with set_direct_reads(true), a read_some that finds nothing queued is one plain recv
//   into the caller's memory instead (the multishot receive is cancelled first, and
//   re-armed by the first fill() or read_some after set_direct_reads(false)).
//   Without the features, and on sockets other than TCP (on AF_UNIX streams Linux 6.18 was
//   seen to lose the end of stream after a burst), the reader receives with one recv per
//   fill(), as before.
//
// buffered_writer
// - write() copies into a fixed buffer; when the data does not fit, the buffer is flushed
//   first. Data at least as large as the buffer is sent straight from the caller's memory,
//   together with the pending bytes: gathered sends (sendmsg of two buffers), one request
//   per send where a flush and a separate send took two. flush() sends every pending byte with one write_all. Nothing is
//   sent until flush() or a full buffer: call flush() before waiting for the peer.
// - try_append() copies all of the data or none, without I/O (for hot paths that batch
//   responses and flush once).
// - A flush that throws leaves the peer's position unknown (some bytes may have been
//   sent); the pending bytes are dropped and the stream should be closed. Destroying a
//   writer with pending bytes drops them.
//
// Who may touch them: the loop thread that uses the stream. The stream must outlive the
// reader and the writer. One reader and one writer may be used at the same time (the
// stream's one-reader-plus-one-writer rule).

#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "../coro/task.hpp"
#include "detail/recv_multishot.hpp"
#include "detail/uring_awaiter.hpp"
#include "stream.hpp"

namespace corio {

namespace detail {
// Whether the running kernel (5.19+) accepts IORING_RECVSEND_POLL_FIRST on a receive
// (kernel_feature::recv_poll_first, decided from the kernel version: io_uring's probe does
// not report op flags).
bool recv_poll_first_supported() noexcept;

// A plain receive into the reader's free space.
struct recv_prep {
  int fd;
  std::span<std::byte> space;
  bool poll_first;
  void operator()(io_uring_sqe* sqe) const {
    io_uring_prep_recv(sqe, fd, space.data(), space.size(), 0);
    if (poll_first) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
  }
};
using describe_socket_fn = decltype(describe_socket("", 0));
}  // namespace detail

// read_until found no delimiter within max_bytes.
class buffer_limit_exceeded : public std::length_error {
 public:
  using std::length_error::length_error;
};

class buffered_reader {
 public:
  static constexpr std::size_t default_capacity = 16 * 1024;
  // Called around each receive made with default options. `before` supplies its options;
  // `buffer_empty` tells whether any unconsumed byte is buffered (waiting for a new
  // message versus for the rest of one). `after` runs when the receive completed.
  struct receive_hooks {
    op_options (*before)(void* context, const buffered_reader& reader, bool buffer_empty);
    void (*after)(void* context) noexcept;
  };

  // Owns a buffer of `capacity` bytes (> 0), allocated once here.
  explicit buffered_reader(stream_socket& stream, std::size_t capacity = default_capacity);
  // Uses `storage`, which must outlive the reader.
  buffered_reader(stream_socket& stream, std::span<std::byte> storage);
  buffered_reader(const buffered_reader&) = delete;
  buffered_reader& operator=(const buffered_reader&) = delete;
  ~buffered_reader();

  // Receives through a multishot receive into `ring` (the loop's own ring when null)
  // from the next fill() on; see the contract above. Returns false, and changes nothing,
  // when the kernel lacks the features (or they are disabled), the socket is not TCP, or
  // the loop has no ring.
  // Call it on the loop's thread, before the first fill().
  bool use_provided_buffers(std::shared_ptr<detail::buffer_ring> ring = nullptr);
  // With provided buffers: read_some receives with plain recvs into the caller's memory
  // (for a caller that expects big messages; see the contract above).
  void set_direct_reads(bool on) noexcept { direct_reads_ = on; }
  // The multishot receive, or nullptr (for tests and statistics).
  const detail::recv_multishot* multishot() const noexcept { return multishot_; }
  // Tests: ends the multishot receive in flight as the kernel may (the next wait re-arms).
  void cancel_multishot_for_test() {
    if (multishot_ != nullptr) multishot_->cancel_for_test();
  }

  // The unconsumed bytes; consume(n) drops the first n of them (n <= buffered().size()).
  std::span<const std::byte> buffered() const noexcept { return {data_ + begin_, end_ - begin_}; }
  std::string_view buffered_text() const noexcept {
    return {reinterpret_cast<const char*>(data_) + begin_, end_ - begin_};
  }
  void consume(std::size_t n) noexcept;
  std::size_t capacity() const noexcept { return capacity_; }
  // Bytes consumed since construction: a message counter for options sources.
  std::size_t consumed_total() const noexcept { return consumed_total_; }
  int fd() const noexcept { return stream_.fd(); }

  // One receive into the free tail of the buffer (moving unconsumed bytes to the front
  // first when that frees space); yields how many bytes arrived, 0 at end of stream.
  // Throws std::length_error when the buffer is full of unconsumed bytes.
  class fill_awaiter;
  fill_awaiter fill(op_options options = {});

  // Up to and including the first `delimiter` (not empty); see the contract above.
  [[nodiscard]] task<std::string_view> read_until(std::string_view delimiter, std::size_t max_bytes,
                                                  op_options options = {});
  // Fills `out` completely: buffered bytes first, then receives.
  [[nodiscard]] task<void> read_exact(std::span<std::byte> out, op_options options = {});
  // Up to out.size() bytes: buffered bytes if any, else one receive; 0 at end of stream.
  // With nothing buffered, the bytes go straight into `out` (not through the reader's
  // buffer) when the multishot receive is in use or `out` is at least the capacity.
  [[nodiscard]] task<std::size_t> read_some(std::span<std::byte> out, op_options options = {});
  // stream_socket::linger (a lingering close: shutdown(SHUT_WR), then read and discard
  // until the peer closes, `max_bytes` were discarded or `max_wait` passed; never throws
  // for the peer's doing), reading through this reader, the socket's one receiver: what
  // it holds or has queued is discarded first. With provided buffers the multishot
  // receive is cancelled, not left armed beside the stream's own recvs (where it took
  // part of what arrived and held up to pause_at() of the shared ring's buffers while
  // the close lingered), and the rest is read with plain recvs (set_direct_reads).
  [[nodiscard]] task<void> linger(std::size_t max_bytes, std::chrono::steady_clock::duration max_wait);

  // `hooks` must outlive the reader (a static object, typically).
  void set_hooks(const receive_hooks* hooks, void* context) noexcept {
    hooks_ = hooks;
    hooks_context_ = context;
  }

 private:
  std::span<std::byte> prepare_space();
  int filled(int n) noexcept {
    received();
    end_ += static_cast<std::size_t>(n);
    return n;
  }
  op_options effective(const op_options& given) const {
    if (given.token != nullptr || given.deadline || hooks_ == nullptr) return given;
    return hooks_->before(hooks_context_, *this, begin_ == end_);
  }
  void received() const noexcept {
    if (hooks_ != nullptr) hooks_->after(hooks_context_);
  }

  stream_socket& stream_;
  std::unique_ptr<std::byte[]> owned_;
  std::byte* data_;
  std::size_t capacity_;
  std::size_t begin_ = 0;  // first unconsumed byte
  std::size_t end_ = 0;    // one past the last received byte
  std::size_t consumed_total_ = 0;
  const receive_hooks* hooks_ = nullptr;
  void* hooks_context_ = nullptr;
  detail::recv_multishot* multishot_ = nullptr;  // owned: release() in the destructor
  bool direct_reads_ = false;
};

// What fill() returns: one plain recv, or a wait on the multishot receive (which ends at
// once when bytes are already queued). `space` is the reader's free tail, whose bytes
// become buffered (into_reader), or the caller's memory of a read_some.
class [[nodiscard]] buffered_reader::fill_awaiter {
 public:
  fill_awaiter(buffered_reader& reader, std::span<std::byte> space, op_options options, bool into_reader = true)
      : reader_(&reader), space_(space), into_reader_(into_reader) {
    if (reader.multishot_ != nullptr) {
      wait_.emplace(reader.multishot_, space, !into_reader && reader.direct_reads_, options);
    } else {
      // With nothing buffered, the next bytes are usually not here yet (a request/response
      // peer waits for our answer): IORING_RECVSEND_POLL_FIRST (Linux 5.19) skips the
      // receive attempt that would fail with EAGAIN and arms the poll at once.
      const bool poll_first = reader.begin_ == reader.end_ && detail::recv_poll_first_supported();
      const int fd = reader.fd();
      single_.emplace(detail::recv_prep{fd, space, poll_first}, detail::describe_socket("recv", fd), options);
    }
  }

  bool await_ready() const noexcept { return wait_ && reader_->multishot_->ready(); }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    if (single_) return single_->await_suspend(h);
    return wait_->await_suspend(h);
  }
  int await_resume();

 private:
  buffered_reader* reader_;
  std::span<std::byte> space_;
  bool into_reader_;
  std::optional<detail::uring_awaiter<detail::recv_prep, detail::describe_socket_fn>> single_;
  std::optional<detail::multishot_wait> wait_;
};

inline buffered_reader::fill_awaiter buffered_reader::fill(op_options options) {
  const std::span<std::byte> space = prepare_space();
  return fill_awaiter(*this, space, effective(options));
}

class buffered_writer {
 public:
  static constexpr std::size_t default_capacity = 16 * 1024;

  explicit buffered_writer(stream_socket& stream, std::size_t capacity = default_capacity);
  buffered_writer(stream_socket& stream, std::span<std::byte> storage);
  buffered_writer(const buffered_writer&) = delete;
  buffered_writer& operator=(const buffered_writer&) = delete;

  // Copies all of `data` into the buffer and returns true, or copies nothing and returns
  // false when it does not fit. Never does I/O.
  bool try_append(std::span<const std::byte> data) noexcept {
    if (data.size() > capacity_ - size_) return false;
    if (!data.empty()) std::memcpy(data_ + size_, data.data(), data.size());
    size_ += data.size();
    return true;
  }
  bool try_append(std::string_view text) noexcept { return try_append(std::as_bytes(std::span(text))); }

  // Buffers `data`, flushing first when it does not fit (see the contract above).
  [[nodiscard]] task<void> write(std::span<const std::byte> data, op_options options = {});
  [[nodiscard]] task<void> write(std::string_view text, op_options options = {}) {
    return write(std::as_bytes(std::span(text)), options);
  }
  // Sends every pending byte (one write_all); a no-op when nothing is pending.
  [[nodiscard]] task<void> flush(op_options options = {});

  std::size_t pending() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  stream_socket& stream_;
  std::unique_ptr<std::byte[]> owned_;
  std::byte* data_;
  std::size_t capacity_;
  std::size_t size_ = 0;
  [[nodiscard]] task<void> send_gathered(std::span<const std::byte> first, std::span<const std::byte> second,
                                         op_options options);
};

}  // namespace corio
