#include "fd_lifetime.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <new>

namespace corio::detail::fd_lifetime {

namespace {

// Chunks of 4,096 generations, allocated at the first adoption of a number in their
// range and kept for the process's life (at most 256 chunks, 4 MiB).
constexpr unsigned chunk_bits = 12;
constexpr std::size_t chunk_size = std::size_t{1} << chunk_bits;
constexpr std::size_t chunk_count = 256;  // fds below 2^20
using chunk = std::array<std::atomic<std::uint32_t>, chunk_size>;

std::atomic<chunk*> table[chunk_count];  // zero-initialized: static storage

std::atomic<std::uint32_t>* slot(int fd, bool create) noexcept {
  if (fd < 0) return nullptr;
  const std::size_t i = static_cast<std::size_t>(fd) >> chunk_bits;
  if (i >= chunk_count) return nullptr;
  chunk* c = table[i].load(std::memory_order_acquire);
  if (c == nullptr) {
    if (!create) return nullptr;
    auto* fresh = new (std::nothrow) chunk{};
    if (fresh == nullptr) return nullptr;  // the number stays unknown: the backend re-arms it
    if (table[i].compare_exchange_strong(c, fresh, std::memory_order_acq_rel, std::memory_order_acquire)) {
      c = fresh;
    } else {
      delete fresh;  // another thread installed this chunk first
    }
  }
  return &(*c)[static_cast<std::size_t>(fd) & (chunk_size - 1)];
}

}  // namespace

std::uint32_t generation(int fd) noexcept {
  const std::atomic<std::uint32_t>* g = slot(fd, false);
  return g == nullptr ? 0 : g->load(std::memory_order_acquire);
}

void adopted(int fd) noexcept {
  std::atomic<std::uint32_t>* g = slot(fd, true);
  if (g == nullptr) return;
  std::uint32_t v = g->load(std::memory_order_relaxed);
  // The next odd value past v's: v + 3 from a closed (even) v, v + 2 from an owned one.
  while (!g->compare_exchange_weak(v, (v & ~1u) + 3, std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
}

void closing(int fd) noexcept {
  if (std::atomic<std::uint32_t>* g = slot(fd, false)) g->fetch_and(~1u, std::memory_order_acq_rel);
}

}  // namespace corio::detail::fd_lifetime
