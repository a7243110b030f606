#include "spsc_ring.hpp"

#include <bit>
#include <stdexcept>
#include <string>

namespace corio {

namespace detail {

void throw_spsc_oversize(std::size_t bytes, std::size_t capacity, std::size_t max_payload) {
  throw std::length_error("corio::spsc_ring: a " + std::to_string(bytes) + "-byte message can never fit a ring of " +
                          std::to_string(capacity) + " bytes (largest payload: " + std::to_string(max_payload) +
                          " bytes)");
}

void throw_spsc_corrupt(std::uint32_t length, std::uint64_t index) {
  throw std::runtime_error("corio::spsc_ring: corrupt frame length " + std::to_string(length) + " at index " +
                           std::to_string(index) + " (the memory is not a spsc_ring written by its producer)");
}

void throw_spsc_bad_index(const char* which, std::uint64_t value, std::uint64_t own, std::uint64_t capacity) {
  const bool write = which[0] == 'w';
  throw std::runtime_error(std::string("corio::spsc_ring: corrupt ") + which + " index " + std::to_string(value) +
                           " (" + (write ? "read" : "write") + " index " + std::to_string(own) + ", capacity " +
                           std::to_string(capacity) + "): the " + (write ? "producer" : "consumer") +
                           "'s index must be a multiple of 8 and the write index at most capacity bytes ahead of "
                           "the read index (the memory is not a spsc_ring used by its protocol)");
}

}  // namespace detail

std::size_t spsc_ring::bytes_for(std::size_t capacity) {
  if (capacity > (std::size_t{1} << 62))
    throw std::invalid_argument("corio::spsc_ring::bytes_for: capacity too large");
  return header_bytes + std::bit_ceil(capacity < min_capacity ? min_capacity : capacity);
}

spsc_ring spsc_ring::format(std::span<std::byte> memory) {
  if (reinterpret_cast<std::uintptr_t>(memory.data()) % 64 != 0)
    throw std::invalid_argument("corio::spsc_ring::format: memory must be 64-byte aligned");
  if (memory.size() < header_bytes + min_capacity)
    throw std::invalid_argument("corio::spsc_ring::format: " + std::to_string(memory.size()) +
                                " bytes is too small (need at least " + std::to_string(header_bytes + min_capacity) +
                                ")");
  const std::uint64_t capacity = std::bit_floor(memory.size() - header_bytes);
  auto* h = reinterpret_cast<detail::spsc_ring_header*>(memory.data());
  detail::store_relaxed(h->capacity, capacity);
  detail::store_relaxed(h->write_index, 0);
  detail::store_relaxed(h->read_index, 0);
  detail::store_release(h->magic, detail::spsc_ring_magic);  // publishes capacity and indices
  return spsc_ring(h, memory.data() + header_bytes, capacity, 0, 0);
}

spsc_ring spsc_ring::attach(std::span<std::byte> memory) {
  if (reinterpret_cast<std::uintptr_t>(memory.data()) % 64 != 0 || memory.size() < header_bytes + min_capacity)
    throw std::invalid_argument("corio::spsc_ring::attach: memory is misaligned or too small for a ring");
  auto* h = reinterpret_cast<detail::spsc_ring_header*>(memory.data());
  if (detail::load_acquire(h->magic) != detail::spsc_ring_magic)  // pairs with format's release
    throw std::invalid_argument("corio::spsc_ring::attach: the memory holds no formatted ring");
  const std::uint64_t capacity = detail::load_relaxed(h->capacity);
  if (!std::has_single_bit(capacity) || capacity < min_capacity || capacity > memory.size() - header_bytes)
    throw std::invalid_argument("corio::spsc_ring::attach: ring capacity " + std::to_string(capacity) +
                                " does not match " + std::to_string(memory.size()) + " bytes of memory");
  // Either side may be running while the other attaches; each index only grows, and the
  // producer never lets write run more than capacity ahead of any read index it saw, so
  // the check below holds for any two values loaded in either order.
  const std::uint64_t write = detail::load_relaxed(h->write_index);
  const std::uint64_t read = detail::load_acquire(h->read_index);  // pairs with the consumer's release
  if (read % 8 != 0)
    detail::throw_spsc_bad_index("read", read, write, capacity);
  if (write - read > capacity || write % 8 != 0)
    detail::throw_spsc_bad_index("write", write, read, capacity);
  return spsc_ring(h, memory.data() + header_bytes, capacity, write, read);
}

}  // namespace corio
