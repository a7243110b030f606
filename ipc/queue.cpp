#include "queue.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <string>
#include <system_error>

namespace corio::detail {

namespace {

std::string describe_timeout(std::optional<std::chrono::nanoseconds> timeout) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(*timeout).count();
  if (us % 1000 == 0)
    return std::to_string(us / 1000) + " ms";
  return std::to_string(us) + " us";
}

}  // namespace

namespace {

// The shared memory after the ring: the value arena's word per slot (value_arena.hpp).
std::size_t arena_words_bytes(std::size_t capacity) {
  return std::bit_ceil(std::max<std::size_t>(capacity, 2)) * sizeof(std::uint64_t);
}

}  // namespace

queue_core::queue_core(std::size_t capacity, std::size_t slot_bytes, std::size_t arena_keep_bytes)
    : region_([&] {
        if (capacity == 0)
          throw std::invalid_argument("corio::queue: capacity must be at least 1");
        const std::size_t ring_bytes = mpmc_ring::bytes_for(capacity, slot_bytes);  // checks the sizes first
        return shm_region::create(sizeof(queue_control) + ring_bytes + arena_words_bytes(capacity), "corio-queue");
      }()),
      control_(reinterpret_cast<queue_control*>(region_.data())),  // zero-filled: open, no waiters
      ring_(mpmc_ring::format(std::span<std::byte>(region_.data() + sizeof(queue_control),
                                                   region_.size() - sizeof(queue_control)),
                              capacity, slot_bytes)),
      arena_(ring_.capacity(), arena_keep_bytes,
             reinterpret_cast<std::uint64_t*>(region_.data() + sizeof(queue_control) +
                                              mpmc_ring::bytes_for(capacity, slot_bytes)),
             "corio-queue-values") {}

bool queue_core::try_push_large(value_parts parts) {
  const std::uint64_t n = parts.size();
  if (n > arena_.span())
    throw std::length_error("corio::queue::put: a " + std::to_string(n) + "-byte value is larger than the " +
                            std::to_string(max_value_bytes()) + " bytes a value may have" +
                            (arena_.span() == 0 ? " (RLIMIT_FSIZE leaves no room for values beyond a slot)" : ""));
  if (n > memory_ceiling())
    throw std::system_error(ENOMEM, std::generic_category(),
                            "corio::queue::put: a " + std::to_string(n) +
                                "-byte value is larger than physical memory plus swap (" +
                                std::to_string(memory_ceiling()) + " bytes)");
  if (!ring_.try_push_external(n, [&](std::uint64_t slot) { arena_.write(slot, parts.head, parts.body); }))
    return false;
  wake(control_->consumers_may_sleep, control_->not_empty);
  return true;
}

void queue_core::throw_corrupt_large(std::uint64_t length) const {
  throw std::runtime_error("corio::queue::get: corrupt value length " + std::to_string(length) +
                           " in shared memory (largest value: " + std::to_string(arena_.span()) + " bytes)");
}

void throw_queue_encode_no_memory() {
  throw std::system_error(ENOMEM, std::generic_category(),
                          "corio::queue::put: out of memory encoding the value into a buffer; nothing was queued");
}

void throw_queue_decode_no_memory(std::uint64_t bytes) {
  throw std::system_error(ENOMEM, std::generic_category(),
                          "corio::queue::get: out of memory decoding a " + std::to_string(bytes) +
                              "-byte value (the value is lost)");
}

queue_core::queue_core(shm_region received, int& arena_fd, std::uint64_t arena_span, std::uint64_t arena_keep)
    : region_([&] {
        if (received.size() < sizeof(queue_control) + mpmc_ring::header_bytes)
          throw std::invalid_argument("corio::queue: the shared memory (" + std::to_string(received.size()) +
                                      " bytes) is too small for a queue");
        return std::move(received);
      }()),
      control_(reinterpret_cast<queue_control*>(region_.data())),
      ring_(mpmc_ring::attach(std::span<std::byte>(region_.data() + sizeof(queue_control),
                                                   region_.size() - sizeof(queue_control)))),
      arena_(arena_fd, ring_.capacity(), arena_span, arena_keep, [&] {
        // The arena's words follow the ring; attach checked only the ring's own bytes.
        const std::size_t ring_end = sizeof(queue_control) + mpmc_ring::bytes_for(ring_.capacity(), ring_.max_payload());
        if (region_.size() < ring_end + arena_words_bytes(ring_.capacity()))
          throw std::invalid_argument("corio::queue: the shared memory (" + std::to_string(region_.size()) +
                                      " bytes) has no room for the value arena's words after a ring of " +
                                      std::to_string(ring_.capacity()) + " slots (need " +
                                      std::to_string(ring_end + arena_words_bytes(ring_.capacity())) + ")");
        return reinterpret_cast<std::uint64_t*>(region_.data() + ring_end);
      }()) {}

void queue_core::close() noexcept {
  store_release(control_->closed, 1);  // waiters that see it also see every value put before
  not_empty().notify_all();
  not_full().notify_all();
}

template <class Bytes>
void queue_core::put_bytes(Bytes bytes, bool block, std::optional<std::chrono::nanoseconds> timeout) {
  if (closed())
    throw_closed("put");
  if (try_push(bytes))
    return;
  if (!block)
    throw_full(std::nullopt);
  // Full: wait briefly for a few lines of room rather than for one slot (the mirror of
  // spin_for_batch, which also says why each poll looks before it claims).
  const std::uint64_t ahead = batch_for_ring();
  if ((ahead > 1 && spin([&] { return ring_.room_ahead(ahead) && try_push(bytes); }, batch_tries)) ||
      spin([&] { return ring_.room_ahead(0) && try_push(bytes); }))
    return;
  queue_wait wait(*this, mpmc_ring::side::producers, [&] { return try_push(bytes); }, timeout);
  sleep_until(not_full(), wait);
  wait.finish();
}

void queue_core::put(std::span<const std::byte> bytes, bool block, std::optional<std::chrono::nanoseconds> timeout) {
  put_bytes(bytes, block, timeout);
}

void queue_core::put(value_parts parts, bool block, std::optional<std::chrono::nanoseconds> timeout) {
  put_bytes(parts, block, timeout);
}

bool queue_core::recover(const mpmc_ring::claim& c) noexcept {
  if (!ring_.recover(c, &value_arena::clear_extent, &arena_))
    return false;
  not_empty().notify_all();
  not_full().notify_all();
  return true;
}

std::uint64_t queue_core::lost() noexcept {
  if (ring_.recover_all(&value_arena::clear_extent, &arena_) != 0) {
    not_empty().notify_all();
    not_full().notify_all();
  }
  return ring_.lost();
}

void queue_core::throw_closed(const char* what) const {
  if (std::string_view(what) == "put")
    throw queue_closed("corio::queue::put: the queue is closed");
  throw queue_closed(std::string("corio::queue::") + what + ": the queue is closed and empty");
}

void queue_core::throw_full(std::optional<std::chrono::nanoseconds> timeout) const {
  const std::string cap = std::to_string(ring_.capacity());
  if (!timeout)
    throw queue_full("corio::queue::put: the queue is full (" + cap + " values)");
  throw queue_full("corio::queue::put: the queue stayed full (" + cap + " values) for " + describe_timeout(timeout));
}

void queue_core::throw_empty(std::optional<std::chrono::nanoseconds> timeout) const {
  if (!timeout)
    throw queue_empty("corio::queue::get: the queue is empty");
  throw queue_empty("corio::queue::get: the queue stayed empty for " + describe_timeout(timeout));
}

void throw_queue_decode_size(std::size_t got, std::size_t want) {
  throw decode_error("corio::queue::get: a " + std::to_string(got) + "-byte message cannot be a " +
                     std::to_string(want) + "-byte value (did a producer put another type?)");
}

std::optional<std::chrono::steady_clock::time_point> queue_deadline(std::optional<std::chrono::nanoseconds> timeout,
                                                                    const char* what) {
  if (!timeout)
    return std::nullopt;
  if (timeout->count() < 0)
    throw std::invalid_argument(std::string("corio::queue::") + what + ": the timeout must not be negative");
  return std::chrono::steady_clock::now() + *timeout;
}

}  // namespace corio::detail
