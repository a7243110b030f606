#include "buffer_ring.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <stdexcept>
#include <string>

#include "../errors.hpp"
#include "../kernel_features.hpp"
#include "../loop.hpp"

namespace corio::detail {
namespace {

void* map_anonymous(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw_errno(errno, "mmap " + std::to_string(bytes) + " bytes for a buffer ring");
  return p;
}

// Group ids are per io_uring, and an io_uring is used by one thread: a per-thread counter
// hands out ids, and a registration that meets a taken id (EEXIST) tries the next.
std::uint16_t next_group() noexcept {
  static thread_local std::uint16_t next = 0;
  return next++;
}

}  // namespace

buffer_ring::buffer_ring(loop& lp, unsigned count, std::size_t size) : loop_(&lp), count_(count), size_(size) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0)
    throw std::invalid_argument("buffer_ring: the count must be a power of two in 1..32768, got " +
                                std::to_string(count));
  if (size == 0 || size > (1u << 31)) throw std::invalid_argument("buffer_ring: bad buffer size " + std::to_string(size));
  if (lp.native_ring() == nullptr)
    throw std::logic_error("buffer_ring: the loop runs on the epoll backend, which has no provided buffers");
  // Freed by the destructor whatever is set up when a later step throws.
  struct guard {
    buffer_ring* self;
    bool done = false;
    ~guard() {
      if (!done) self->free_all();
    }
  } g{this};
  ring_ = static_cast<io_uring_buf_ring*>(map_anonymous(count * sizeof(io_uring_buf)));
  data_ = static_cast<std::byte*>(map_anonymous(count * size));
  io_uring_buf_ring_init(ring_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(ring_);
  reg.ring_entries = count;
  int res = -EEXIST;
  for (unsigned tries = 0; res == -EEXIST && tries < 65536; ++tries) {
    group_ = next_group();
    reg.bgid = group_;
    res = io_uring_register_buf_ring(loop_->native_ring(), &reg, 0);
  }
  if (res < 0) throw_errno(-res, "register buffer ring of " + std::to_string(count) + " buffers");
  registered_ = true;
  const int mask = io_uring_buf_ring_mask(count);
  for (unsigned id = 0; id < count; ++id)
    io_uring_buf_ring_add(ring_, data_ + id * size, static_cast<unsigned>(size), static_cast<std::uint16_t>(id), mask,
                          static_cast<int>(id));
  io_uring_buf_ring_advance(ring_, static_cast<int>(count));
  g.done = true;
}

buffer_ring::~buffer_ring() { free_all(); }

void buffer_ring::free_all() noexcept {
  if (registered_) io_uring_unregister_buf_ring(loop_->native_ring(), group_);
  registered_ = false;
  if (data_ != nullptr) ::munmap(data_, count_ * size_);
  if (ring_ != nullptr) ::munmap(ring_, count_ * sizeof(io_uring_buf));
  data_ = nullptr;
  ring_ = nullptr;
}

std::shared_ptr<buffer_ring> buffer_ring::create(loop& lp, unsigned count, std::size_t size) {
  return std::shared_ptr<buffer_ring>(new buffer_ring(lp, count, size));
}

std::shared_ptr<buffer_ring> buffer_ring::create_for(loop& lp) noexcept {
  if (lp.native_ring() == nullptr ||  // the epoll backend: plain receives
      !kernel_feature_on_noexcept(kernel_feature::provided_buffers) ||
      !kernel_feature_on_noexcept(kernel_feature::recv_multishot))
    return nullptr;
  try {
    return create(lp, default_count, default_size);
  } catch (const std::exception&) {
    return nullptr;  // out of memory or refused: plain receives still work
  }
}

void buffer_ring::recycle(std::uint16_t id) noexcept {
  --taken_;
  io_uring_buf_ring_add(ring_, data_ + static_cast<std::size_t>(id) * size_, static_cast<unsigned>(size_), id,
                        io_uring_buf_ring_mask(count_), 0);
  // Release: the entry is written before the kernel can see the new tail.
  io_uring_buf_ring_advance(ring_, 1);
}

}  // namespace corio::detail
