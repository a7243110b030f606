#include "mpmc_ring.hpp"

#include <bit>
#include <stdexcept>
#include <string>

namespace corio {

namespace detail {

void throw_mpmc_oversize(std::size_t bytes, std::size_t max_payload) {
  throw std::length_error("corio::mpmc_ring: a " + std::to_string(bytes) +
                          "-byte message does not fit a slot (largest message: " + std::to_string(max_payload) +
                          " bytes); raise the slot size (queue_options::max_message_bytes)");
}

void throw_mpmc_corrupt(std::uint32_t length, std::uint64_t position, std::size_t max_payload) {
  throw std::runtime_error("corio::mpmc_ring: corrupt message length " + std::to_string(length) + " at position " +
                           std::to_string(position) + " (largest message: " + std::to_string(max_payload) +
                           " bytes; the memory is not an mpmc_ring written by its producers)");
}

void throw_mpmc_small_buffer(std::size_t bytes, std::size_t max_payload) {
  throw std::invalid_argument("corio::mpmc_ring::try_pop: a " + std::to_string(bytes) +
                              "-byte buffer cannot hold every message (need max_payload = " +
                              std::to_string(max_payload) + " bytes)");
}

}  // namespace detail

namespace {

constexpr std::size_t max_slots = std::size_t{1} << 30;  // signed 32-bit sequence differences
constexpr std::size_t max_message = (std::size_t{1} << 32) - 64;  // a 32-bit length

std::uint64_t slot_count_for(std::size_t slots) { return std::bit_ceil(slots < 2 ? std::size_t{2} : slots); }

}  // namespace

std::size_t mpmc_ring::bytes_for(std::size_t slots, std::size_t max_payload) {
  if (slots > max_slots || max_payload > max_message)
    throw std::invalid_argument("corio::mpmc_ring::bytes_for: " + std::to_string(slots) + " slots of " +
                                std::to_string(max_payload) + " bytes is too large");
  const std::uint64_t count = slot_count_for(slots);
  const std::uint64_t stride = stride_for(max_payload);
  if (count > (std::uint64_t{1} << 62) / stride)
    throw std::invalid_argument("corio::mpmc_ring::bytes_for: " + std::to_string(count) + " slots of " +
                                std::to_string(stride) + " bytes overflow the address space");
  return static_cast<std::size_t>(header_bytes + count * stride);
}

mpmc_ring mpmc_ring::format(std::span<std::byte> memory, std::size_t slots, std::size_t max_payload) {
  const std::size_t need = bytes_for(slots, max_payload);
  if (reinterpret_cast<std::uintptr_t>(memory.data()) % 64 != 0)
    throw std::invalid_argument("corio::mpmc_ring::format: memory must be 64-byte aligned");
  if (memory.size() < need)
    throw std::invalid_argument("corio::mpmc_ring::format: " + std::to_string(memory.size()) +
                                " bytes is too small for " + std::to_string(slot_count_for(slots)) + " slots of " +
                                std::to_string(max_payload) + " bytes (need " + std::to_string(need) + ")");
  const std::uint64_t count = slot_count_for(slots);
  const std::uint64_t stride = stride_for(max_payload);
  auto* h = reinterpret_cast<detail::mpmc_ring_header*>(memory.data());
  std::byte* base = memory.data() + header_bytes;
  for (std::uint64_t i = 0; i < count; ++i) {
    auto* slot = reinterpret_cast<detail::mpmc_slot*>(base + i * stride);
    detail::store_relaxed(slot->sequence, static_cast<std::uint32_t>(i));  // slot i is free for position i
    detail::store_relaxed(slot->length, 0);
  }
  detail::store_relaxed(h->slot_count, count);
  detail::store_relaxed(h->slot_stride, stride);
  detail::store_relaxed(h->max_payload, max_payload);
  detail::store_relaxed(h->enqueue_pos, 0);
  detail::store_relaxed(h->dequeue_pos, 0);
  detail::store_release(h->magic, detail::mpmc_ring_magic);  // publishes sizes, positions, sequences
  return mpmc_ring(h, base, count, stride, max_payload);
}

mpmc_ring mpmc_ring::attach(std::span<std::byte> memory) {
  if (reinterpret_cast<std::uintptr_t>(memory.data()) % 64 != 0 || memory.size() < header_bytes)
    throw std::invalid_argument("corio::mpmc_ring::attach: memory is misaligned or too small for a ring");
  auto* h = reinterpret_cast<detail::mpmc_ring_header*>(memory.data());
  if (detail::load_acquire(h->magic) != detail::mpmc_ring_magic)  // pairs with format's release
    throw std::invalid_argument("corio::mpmc_ring::attach: the memory holds no formatted ring");
  const std::uint64_t count = detail::load_relaxed(h->slot_count);
  const std::uint64_t stride = detail::load_relaxed(h->slot_stride);
  const std::uint64_t max_payload = detail::load_relaxed(h->max_payload);
  const bool sane = std::has_single_bit(count) && count >= 2 && count <= max_slots && stride % 8 == 0 &&
                    max_payload <= max_message && stride == stride_for(max_payload) &&
                    count * stride <= memory.size() - header_bytes;
  if (!sane)
    throw std::invalid_argument("corio::mpmc_ring::attach: ring of " + std::to_string(count) + " slots of " +
                                std::to_string(stride) + " bytes does not match " + std::to_string(memory.size()) +
                                " bytes of memory");
  return mpmc_ring(h, memory.data() + header_bytes, count, stride, max_payload);
}

}  // namespace corio
