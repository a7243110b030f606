#pragma once
// The byte cursors under corio::codec (ipc/codec.hpp): a writer that appends to a
// std::vector<std::byte> and a reader that walks a std::span<const std::byte>, checking
// every read against the bytes left so that truncated or corrupt input raises
// decode_error instead of reading past the end. Both are single-threaded values that live
// for one encode() or decode() call.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace corio {

// Bytes that cannot be decoded as the requested type: truncated, trailing, an impossible
// length, a bad variant index, optional flag or bool byte, a duplicate map key, nesting
// deeper than codec_max_depth. The message says what was expected and at which offset.
class decode_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value that cannot be encoded (a valueless std::variant). Thrown by encode(), in the
// caller, never later by the process that would have received the bytes.
class encode_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// User types (corio_fields) may be recursive; corrupt input could otherwise nest them
// deep enough to overflow the stack.
inline constexpr std::size_t codec_max_depth = 256;

namespace detail {

class codec_writer {
 public:
  explicit codec_writer(std::vector<std::byte>& out) noexcept : out_(out) {}

  // Bytes in the output so far, including any that were there before this writer.
  std::size_t size() const noexcept { return out_.size(); }

  void bytes(const void* p, std::size_t n) {
    if (n == 0) return;
    // insert, not resize and copy: one pass over the bytes (no zero fill first).
    const auto* b = static_cast<const std::byte*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  void u64(std::uint64_t v) { bytes(&v, sizeof v); }
  void u32(std::uint32_t v) { bytes(&v, sizeof v); }
  void u8(std::uint8_t v) { bytes(&v, sizeof v); }

 private:
  std::vector<std::byte>& out_;
};

class codec_reader {
 public:
  explicit codec_reader(std::span<const std::byte> in) noexcept : in_(in) {}

  std::size_t offset() const noexcept { return pos_; }
  std::size_t left() const noexcept { return in_.size() - pos_; }

  [[noreturn]] void fail(std::string_view what, const std::string& detail) const {
    throw decode_error("decode " + std::string(what) + ": " + detail);
  }

  // Copies n bytes out, or throws naming `what` when fewer than n are left.
  void bytes(void* p, std::size_t n, std::string_view what) {
    if (n > left())
      fail(what, "needs " + std::to_string(n) + " bytes, " + std::to_string(left()) +
                     " left at offset " + std::to_string(pos_));
    if (n != 0) std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }
  // The next n bytes in place (no copy), or throws naming `what` when fewer are left.
  std::span<const std::byte> take(std::size_t n, std::string_view what) {
    if (n > left())
      fail(what, "needs " + std::to_string(n) + " bytes, " + std::to_string(left()) +
                     " left at offset " + std::to_string(pos_));
    const auto out = in_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  std::uint64_t u64(std::string_view what) {
    std::uint64_t v;
    bytes(&v, sizeof v, what);
    return v;
  }
  std::uint32_t u32(std::string_view what) {
    std::uint32_t v;
    bytes(&v, sizeof v, what);
    return v;
  }
  std::uint8_t u8(std::string_view what) {
    std::uint8_t v;
    bytes(&v, sizeof v, what);
    return v;
  }

  // Reads an element count and proves the rest of the input can hold `count` elements of
  // at least `min_size` bytes each, before anyone reserves memory for them.
  std::size_t count(std::string_view what, std::size_t min_size) {
    const std::size_t at = pos_;
    const std::uint64_t n = u64(what);
    if (n > left() / min_size) {
      if (min_size == 1)
        fail(what, "length " + std::to_string(n) + " exceeds the " + std::to_string(left()) +
                       " bytes left at offset " + std::to_string(at));
      fail(what, std::to_string(n) + " elements of at least " + std::to_string(min_size) +
                     " bytes exceed the " + std::to_string(left()) + " bytes left at offset " +
                     std::to_string(at));
    }
    return static_cast<std::size_t>(n);
  }

  void enter(std::string_view what) {
    if (++depth_ > codec_max_depth)
      fail(what, "nesting deeper than " + std::to_string(codec_max_depth) + " at offset " +
                     std::to_string(pos_));
  }
  void leave() noexcept { --depth_; }

  void finish() const {
    if (left() != 0)
      throw decode_error("decode: " + std::to_string(left()) +
                         " trailing bytes after the value at offset " + std::to_string(pos_));
  }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  std::size_t depth_ = 0;
};

}  // namespace detail
}  // namespace corio
