#pragma once
// buffer_ring: a ring of provided receive buffers (IORING_REGISTER_PBUF_RING, Linux 5.19),
// for multishot receives (recv_multishot.hpp).
//
// Instead of naming a buffer in each receive, a request names a buffer group; the kernel
// takes the next buffer from the group's ring when data arrives and reports its id in the
// CQE (IORING_CQE_F_BUFFER, id in the upper 16 bits of the flags). Many connections share
// one ring, so memory follows the bytes in flight, not the connection count.
//
// Ownership of a buffer: the ring's (the kernel may fill it) until a CQE names it; then
// the receiver's, which copies the bytes out and gives it back with recycle(). A buffer
// is never recycled while anyone may still read it, and only recycle() makes it the
// kernel's again. When the ring is empty the kernel ends a multishot receive with
// -ENOBUFS; available() tells a receiver whether re-arming makes sense.
//
// Who may touch it: the thread of the loop it is registered with. It is freed when the
// last shared_ptr goes, on that thread, while the loop still lives: the loop's own ring
// (loop::receive_buffers) is let go by ~loop after its drain (forget_loop: readers that
// outlive the loop may still hold it, and only free its memory); a ring made with
// create() must be released before its loop is destroyed. Receivers hold a reference until their
// request's final CQE, so the memory outlives every request that may write into it.

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace corio {
class loop;
}

namespace corio::detail {

class buffer_ring {
 public:
  // The loop's default ring: 256 buffers of 4 KiB.
  static constexpr unsigned default_count = 256;
  static constexpr std::size_t default_size = 4096;

  // Registers `count` buffers (a power of two, 1..32768) of `size` bytes (> 0) with
  // `lp`'s ring under a free group id. Throws std::invalid_argument for bad sizes and
  // std::system_error when the kernel refuses ("register buffer ring: Invalid argument").
  static std::shared_ptr<buffer_ring> create(loop& lp, unsigned count, std::size_t size);
  // The loop's default ring when kernel_feature::provided_buffers and recv_multishot are
  // on, else (or when the kernel refuses) nullptr: receivers then use plain recv.
  static std::shared_ptr<buffer_ring> create_for(loop& lp) noexcept;

  buffer_ring(const buffer_ring&) = delete;
  buffer_ring& operator=(const buffer_ring&) = delete;
  ~buffer_ring();

  std::uint16_t group() const noexcept { return group_; }
  std::size_t buffer_size() const noexcept { return size_; }
  unsigned count() const noexcept { return count_; }
  // Buffers the kernel may still pick.
  unsigned available() const noexcept { return count_ - taken_; }

  // A CQE named buffer `id`: it is the receiver's now, until recycle(id).
  void take(std::uint16_t) noexcept { ++taken_; }
  // The bytes of buffer `id` (read them only between take and recycle).
  const std::byte* bytes(std::uint16_t id) const noexcept { return data_ + static_cast<std::size_t>(id) * size_; }
  // Gives buffer `id` back to the kernel. Its bytes must not be read after this.
  void recycle(std::uint16_t id) noexcept;
  // ~loop, after its drain: the ring's registration ends with the io_uring itself, so the
  // destructor must not unregister through a loop that is gone (a reader that outlives
  // its loop still holds this ring).
  void forget_loop() noexcept {
    registered_ = false;
    loop_ = nullptr;
  }

 private:
  buffer_ring(loop& lp, unsigned count, std::size_t size);
  void free_all() noexcept;

  loop* loop_;
  io_uring_buf_ring* ring_ = nullptr;  // count_ entries, page-aligned, shared with the kernel
  std::byte* data_ = nullptr;           // count_ * size_ bytes
  unsigned count_;
  std::size_t size_;
  std::uint16_t group_ = 0;
  unsigned taken_ = 0;  // named by a CQE and not recycled yet
  bool registered_ = false;
};

}  // namespace corio::detail
