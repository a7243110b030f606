#include "buffered_stream.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "detail/buffer_ring.hpp"
#include "errors.hpp"
#include "kernel_features.hpp"
#include "loop.hpp"

namespace corio {
namespace detail {

bool recv_poll_first_supported() noexcept {
  static const bool supported = kernel_feature_on_noexcept(kernel_feature::recv_poll_first);
  return supported;
}

}  // namespace detail

namespace {

void check_capacity(std::size_t capacity, const char* who) {
  if (capacity == 0) throw std::invalid_argument(std::string(who) + ": the buffer capacity must be > 0");
}

// "\r\n" -> "\\r\\n": delimiters in messages stay readable.
std::string escaped(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          out += "\\x";
          out += hex[(c >> 4) & 0xf];
          out += hex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace

// --- buffered_reader --------------------------------------------------------------------

buffered_reader::buffered_reader(stream_socket& stream, std::size_t capacity)
    : stream_(stream), data_(nullptr), capacity_(capacity) {
  check_capacity(capacity, "buffered_reader");
  owned_.reset(new std::byte[capacity]);  // default-initialised: no zeroing of 16 KiB
  data_ = owned_.get();
}

buffered_reader::buffered_reader(stream_socket& stream, std::span<std::byte> storage)
    : stream_(stream), data_(storage.data()), capacity_(storage.size()) {
  check_capacity(capacity_, "buffered_reader");
}

buffered_reader::~buffered_reader() {
  if (multishot_ != nullptr) multishot_->release();
}

bool buffered_reader::use_provided_buffers(std::shared_ptr<detail::buffer_ring> ring) {
  if (multishot_ != nullptr) return true;
  if (!detail::kernel_feature_on_noexcept(kernel_feature::provided_buffers) ||
      !detail::kernel_feature_on_noexcept(kernel_feature::recv_multishot))
    return false;
  // TCP only: on an AF_UNIX stream socket Linux 6.18 was seen to never report the end of
  // stream when it arrived together with more data than one wake-up's receives take
  // (the multishot request then waited forever; tests/runtime/recv_multishot_test.cpp).
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(stream_.fd(), SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 ||
      (domain != AF_INET && domain != AF_INET6))
    return false;
  if (!ring) ring = loop::this_loop().receive_buffers();
  if (!ring) return false;
  multishot_ = detail::recv_multishot::make(stream_.fd(), std::move(ring));
  return true;
}

int buffered_reader::fill_awaiter::await_resume() {
  int n;
  if (single_) {
    n = single_->await_resume();
  } else {
    wait_->await_resume();  // throws for a stop or a deadline
    detail::recv_multishot& ms = *reader_->multishot_;
    n = ms.take_plain_result();
    if (n < 0) {
      n = static_cast<int>(ms.copy_out(space_));
      if (n == 0 && ms.error() != 0) detail::throw_errno(ms.error(), "recv fd " + std::to_string(ms.fd()));
    }
  }
  if (into_reader_) return reader_->filled(n);
  reader_->received();
  return n;
}

void buffered_reader::consume(std::size_t n) noexcept {
  begin_ += n;
  consumed_total_ += n;
  if (begin_ == end_) begin_ = end_ = 0;  // empty: the next fill gets the whole buffer
}

std::span<std::byte> buffered_reader::prepare_space() {
  // Move the unconsumed tail to the front only when the free tail is under half the
  // buffer: a pipelined stream of small messages then copies rarely.
  if (begin_ > 0 && capacity_ - end_ < capacity_ / 2) {
    std::memmove(data_, data_ + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == capacity_)
    throw std::length_error("buffered_reader fd " + std::to_string(fd()) + ": the buffer is full (" +
                            std::to_string(capacity_) + " unconsumed bytes)");
  return {data_ + end_, capacity_ - end_};
}

task<std::string_view> buffered_reader::read_until(std::string_view delimiter, std::size_t max_bytes,
                                                   op_options options) {
  if (delimiter.empty()) throw std::invalid_argument("read_until: the delimiter is empty");
  if (max_bytes > capacity_ || max_bytes < delimiter.size())
    throw std::invalid_argument("read_until: max_bytes " + std::to_string(max_bytes) + " is outside " +
                                std::to_string(delimiter.size()) + ".." + std::to_string(capacity_) +
                                " (the delimiter's size .. the buffer's capacity)");
  std::size_t scanned = 0;  // bytes already searched without a match (minus a delimiter's overlap)
  for (;;) {
    const std::string_view have = buffered_text();
    const std::size_t limit = std::min(have.size(), max_bytes);
    const std::size_t pos = have.substr(0, limit).find(delimiter, scanned);
    if (pos != std::string_view::npos) {
      const std::size_t n = pos + delimiter.size();
      consume(n);
      // consume() may reset the indices when the buffer empties; the bytes stay in place
      // until the next fill, so the view remains valid as documented.
      co_return std::string_view(have.data(), n);
    }
    if (limit == max_bytes)
      throw buffer_limit_exceeded("read_until fd " + std::to_string(fd()) + ": no \"" + escaped(delimiter) +
                                  "\" within " + std::to_string(max_bytes) + " bytes");
    scanned = limit >= delimiter.size() ? limit - delimiter.size() + 1 : 0;
    // Offsets are relative to the first unconsumed byte, so a fill that moves the bytes
    // to the front keeps `scanned` right.
    const int n = co_await fill(options);
    if (n == 0) {
      if (begin_ == end_) co_return std::string_view{};
      throw end_of_stream("read_until fd " + std::to_string(fd()) + ": end of stream after " +
                          std::to_string(end_ - begin_) + " bytes without \"" + escaped(delimiter) + "\"");
    }
  }
}

task<void> buffered_reader::read_exact(std::span<std::byte> out, op_options options) {
  const std::size_t want = out.size();
  std::size_t got = 0;
  for (;;) {
    const std::size_t take = std::min(out.size() - got, end_ - begin_);
    if (take > 0) std::memcpy(out.data() + got, data_ + begin_, take);
    consume(take);
    got += take;
    if (got == want) co_return;
    int n;
    if (want - got >= capacity_ && multishot_ == nullptr) {
      // Large remainder: receive straight into the caller's memory, no double copy.
      n = co_await stream_.read_some(out.subspan(got), effective(options));
      received();
      got += static_cast<std::size_t>(n);
      if (got == want) co_return;
    } else {
      n = co_await fill(options);
    }
    if (n == 0)
      throw end_of_stream("read_exact fd " + std::to_string(fd()) + ": end of stream after " + std::to_string(got) +
                          " of " + std::to_string(want) + " bytes");
  }
}

task<std::size_t> buffered_reader::read_some(std::span<std::byte> out, op_options options) {
  if (out.empty()) co_return 0;
  if (begin_ == end_) {
    // The multishot receive may hold bytes already: a recv on the stream would take the
    // later ones first. They are copied from the ring's buffers into `out` directly.
    if (multishot_ != nullptr)
      co_return static_cast<std::size_t>(co_await fill_awaiter(*this, out, effective(options), false));
    if (out.size() >= capacity_) {
      const int n = co_await stream_.read_some(out, effective(options));
      received();
      co_return static_cast<std::size_t>(n);
    }
    if (co_await fill(options) == 0) co_return 0;
  }
  const std::size_t take = std::min(out.size(), end_ - begin_);
  std::memcpy(out.data(), data_ + begin_, take);
  consume(take);
  co_return take;
}

task<void> buffered_reader::linger(std::size_t max_bytes, std::chrono::steady_clock::duration max_wait) {
  consume(end_ - begin_);
  // read_some then takes what the multishot receive queued, and the first one that finds
  // nothing queued cancels the request and makes a plain recv instead.
  direct_reads_ = true;
  std::array<std::byte, 4096> sink;
  try {
    stream_.shutdown(SHUT_WR);
    const op_options until = within(max_wait);
    for (std::size_t discarded = 0; discarded < max_bytes;) {
      const std::size_t n = co_await read_some(sink, until);
      if (n == 0) break;
      discarded += n;
    }
  } catch (const std::exception&) {
    // Reset, timed out or cancelled: the caller closes now, as after stream_socket::linger.
  }
}

// --- buffered_writer --------------------------------------------------------------------

buffered_writer::buffered_writer(stream_socket& stream, std::size_t capacity)
    : stream_(stream), data_(nullptr), capacity_(capacity) {
  check_capacity(capacity, "buffered_writer");
  owned_.reset(new std::byte[capacity]);
  data_ = owned_.get();
}

buffered_writer::buffered_writer(stream_socket& stream, std::span<std::byte> storage)
    : stream_(stream), data_(storage.data()), capacity_(storage.size()) {
  check_capacity(capacity_, "buffered_writer");
}

task<void> buffered_writer::write(std::span<const std::byte> data, op_options options) {
  if (try_append(data)) co_return;
  if (data.size() < capacity_) {
    // Fits once the buffer is empty: flush, then keep it for later writes to join.
    co_await flush(options);
    (void)try_append(data);
    co_return;
  }
  if (size_ == 0) {
    co_await stream_.write_all(data, options);
    co_return;
  }
  // Larger than the whole buffer: the pending bytes and `data` go out together, gathered,
  // one request per send instead of a flush and a second send. Like a flush, a failure
  // drops the pending bytes.
  const std::span<const std::byte> pending(data_, size_);
  size_ = 0;
  co_await send_gathered(pending, data, options);
}

task<void> buffered_writer::send_gathered(std::span<const std::byte> first, std::span<const std::byte> second,
                                          op_options options) {
  // A short send leaves the rest of the two spans; each turn sends what is left of them.
  while (!first.empty() || !second.empty()) {
    iovec iov[2];
    std::size_t count = 0;
    for (std::span<const std::byte> s : {first, second})
      if (!s.empty()) iov[count++] = {const_cast<std::byte*>(s.data()), s.size()};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    std::size_t sent = static_cast<std::size_t>(co_await corio::sendmsg(stream_.fd(), &msg, 0, options));
    const std::size_t from_first = std::min(sent, first.size());
    first = first.subspan(from_first);
    second = second.subspan(sent - from_first);
  }
}

task<void> buffered_writer::flush(op_options options) {
  if (size_ == 0) co_return;
  // Whatever happens, the pending bytes are gone afterwards (see the contract).
  try {
    co_await stream_.write_all(std::span<const std::byte>(data_, size_), options);
  } catch (...) {
    size_ = 0;
    throw;
  }
  size_ = 0;
}

}  // namespace corio
