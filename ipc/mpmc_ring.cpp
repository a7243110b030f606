#include "mpmc_ring.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

namespace corio {

namespace detail {

void throw_mpmc_oversize(std::size_t bytes, std::size_t max_payload) {
  throw std::length_error("corio::mpmc_ring: a " + std::to_string(bytes) +
                          "-byte message does not fit a slot (largest message: " + std::to_string(max_payload) +
                          " bytes); format the ring with larger slots, or keep larger messages outside it (try_push_external)");
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

void throw_mpmc_no_external(std::size_t max_payload) {
  throw std::invalid_argument("corio::mpmc_ring::try_push_external: a " + std::to_string(max_payload) +
                              "-byte slot has no room for an external message's 8-byte length");
}

namespace {

// The parts of a claim mark (see "Owners" in the header).
constexpr unsigned mark_pid_bits = 22;  // PID_MAX_LIMIT is 2^22
constexpr std::uint32_t mark_pid_mask = (std::uint32_t{1} << mark_pid_bits) - 1;
constexpr std::uint32_t mark_token_mask = 0x1ff;  // 9 bits; 0 = start time unknown

// What a process's /proc/<pid>/stat says about it.
struct proc_stat {
  char state;                // R, S, D, T, Z, X, ...
  long threads;              // field 20
  unsigned long long start;  // field 22, clock ticks after boot
};

// Reads /proc/<pid>/stat; nullopt when it cannot be read (no such process, no /proc).
std::optional<proc_stat> read_proc_stat(pid_t pid) noexcept {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return std::nullopt;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0)
    return std::nullopt;
  buf[n] = '\0';
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are
  // counted from the last ')'. After it, field 3 (state) is the first.
  const std::string_view text(buf, static_cast<std::size_t>(n));
  const auto close_paren = text.rfind(')');
  if (close_paren == std::string_view::npos || close_paren + 2 >= text.size())
    return std::nullopt;
  proc_stat st{text[close_paren + 2], 0, 0};
  const char* p = buf + close_paren + 2;
  for (int field = 3; field < 22 && *p != '\0'; ++field) {
    while (*p != ' ' && *p != '\0') ++p;
    while (*p == ' ') ++p;
    if (field + 1 == 20)
      st.threads = std::strtol(p, nullptr, 10);
    if (field + 1 == 22)
      st.start = std::strtoull(p, nullptr, 10);
  }
  return st;
}

std::uint32_t start_token(unsigned long long start) noexcept {
  return static_cast<std::uint32_t>(start % mark_token_mask) + 1;  // 1..511
}

void forget_mark_after_fork() noexcept { mpmc_claim_mark_cache.store(0, std::memory_order_relaxed); }

}  // namespace

std::uint32_t compute_mpmc_claim_mark() noexcept {
  static std::once_flag at_fork;
  std::call_once(at_fork, [] { ::pthread_atfork(nullptr, nullptr, forget_mark_after_fork); });
  const pid_t pid = ::getpid();
  const auto st = read_proc_stat(pid);
  const std::uint32_t token = st ? start_token(st->start) : 0;
  const std::uint32_t mark =
      mpmc_claim_bit | token << mark_pid_bits | (static_cast<std::uint32_t>(pid) & mark_pid_mask);
  mpmc_claim_mark_cache.store(mark, std::memory_order_relaxed);
  return mark;
}

bool mpmc_claim_owner_alive(std::uint32_t mark) noexcept {
  const auto pid = static_cast<pid_t>(mark & mark_pid_mask);
  const std::uint32_t token = mark >> mark_pid_bits & mark_token_mask;
  if (const auto st = read_proc_stat(pid)) {
    if ((st->state == 'Z' || st->state == 'X') && st->threads <= 1)
      return false;  // exited, waiting to be reaped (a leader with live threads shows Z too)
    return token == 0 || start_token(st->start) == token;  // another token: the pid was reused
  }
  // No /proc entry: gone, or /proc is not mounted or hides the process (hidepid). Only
  // ESRCH proves death; a zombie counts as alive here, which delays but never corrupts.
  return !(::kill(pid, 0) == -1 && errno == ESRCH);
}

}  // namespace detail

namespace {

constexpr std::size_t max_slots = std::size_t{1} << 30;  // signed 32-bit sequence differences
constexpr std::size_t max_message = (std::size_t{1} << 30) - 64;  // a length is a tag below the other tags
static_assert(max_message < detail::mpmc_external && max_message < detail::mpmc_hole);

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
    detail::store_relaxed(slot->state, detail::mpmc_state(i, 0));  // slot i is free for position i
  }
  detail::store_relaxed(h->slot_count, count);
  detail::store_relaxed(h->slot_stride, stride);
  detail::store_relaxed(h->max_payload, max_payload);
  detail::store_relaxed(h->lost, 0);
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

mpmc_ring::stop mpmc_ring::walk(side s) const noexcept {
  // The walk of try_push / try_pop without claiming: from the side's hint past taken
  // slots to the first one the side would stop at. At most a lap: each step passes a
  // position that was claimed, or jumps.
  const bool producers = s == side::producers;
  const std::uint64_t& hint = producers ? header_->enqueue_pos : header_->dequeue_pos;
  std::uint64_t pos = detail::load_relaxed(hint);
  std::uint64_t state = 0;
  for (std::uint64_t step = 0; step <= mask_ + 1; ++step) {
    state = detail::load_acquire(slot_at(pos)->state);  // as the claims
    const std::int32_t diff = detail::mpmc_lap_diff(state, producers ? pos : pos + 1);
    const std::uint32_t tag = detail::mpmc_tag(state);
    if (diff < 0)
      break;  // full (producers) or empty (consumers), maybe because of a claim
    if (diff == 0 && (tag & detail::mpmc_claim_bit) == 0) {
      if (producers || tag != detail::mpmc_hole)
        break;  // free (producers) or published (consumers)
      ++pos;    // a hole: consumers pass it
      continue;
    }
    pos = next_position(pos, diff, hint);
  }
  return {pos, state};
}

std::optional<mpmc_ring::claim> mpmc_ring::blocking_claim(side s) const noexcept {
  const stop at = walk(s);
  const bool waits = detail::mpmc_lap_diff(at.state, s == side::producers ? at.pos : at.pos + 1) < 0;
  if (!waits || (detail::mpmc_tag(at.state) & detail::mpmc_claim_bit) == 0)
    return std::nullopt;  // free or published: not blocked; or blocked by the other side only
  return claim{at.pos & mask_, at.state};
}

std::size_t mpmc_ring::size() const noexcept {
  const std::uint64_t deq = walk(side::consumers).pos;
  const std::uint64_t enq = walk(side::producers).pos;
  const auto diff = static_cast<std::int64_t>(enq - deq);
  if (diff <= 0)
    return 0;
  return static_cast<std::uint64_t>(diff) > mask_ + 1 ? capacity() : static_cast<std::size_t>(diff);
}

bool mpmc_ring::recover(const claim& c, detail::mpmc_cleanup cleanup, void* arg) noexcept {
  const std::uint32_t mark = detail::mpmc_tag(c.state);
  if ((mark & detail::mpmc_claim_bit) == 0 || c.slot > mask_)
    return false;
  detail::mpmc_slot* slot = slot_at(c.slot);
  if (detail::load_relaxed(slot->state) != c.state || detail::mpmc_claim_owner_alive(mark))
    return false;
  // The owner is dead and will never write the slot again. A producer's claim has the
  // sequence number of its position p (p == the slot's index, modulo the capacity); a
  // consumer's has p + 1. See "Processes that die inside a claim" for why exactly one
  // recoverer wins the compare-exchange below.
  const auto seq = static_cast<std::uint32_t>(c.state);
  const bool producer = ((seq - c.slot) & mask_) == 0;
  const std::uint64_t next =
      producer ? detail::mpmc_state(seq + 1, detail::mpmc_hole) : detail::mpmc_state(seq - 1 + mask_ + 1, 0);
  // Take the claim over (see "Recovery takes the claim over"): the same sequence number,
  // our mark. Acquire, as any claim: the cleanup may touch what the slot guards.
  std::uint64_t expected = c.state;
  while (!detail::compare_exchange_acquire(slot->state, expected, detail::mpmc_state(seq, detail::mpmc_claim_mark())))
    if (expected != c.state)
      return false;  // another recoverer was first
  if (cleanup != nullptr)
    cleanup(arg, c.slot);
  // Release: the cleanup is done before the next claimer can have the slot. Nothing else
  // is published through it: a dead producer's bytes are never read (a hole), and the next
  // producer of a dead consumer's slot overwrites what it left.
  detail::store_release(slot->state, next);
  std::uint64_t lost = detail::load_relaxed(header_->lost);
  while (!detail::compare_exchange_relaxed(header_->lost, lost, lost + 1)) {
  }
  return true;
}

std::size_t mpmc_ring::recover_all(detail::mpmc_cleanup cleanup, void* arg) noexcept {
  std::size_t freed = 0;
  for (std::uint64_t i = 0; i <= mask_; ++i) {
    const std::uint64_t state = detail::load_relaxed(slot_at(i)->state);
    if ((detail::mpmc_tag(state) & detail::mpmc_claim_bit) != 0 && recover(claim{i, state}, cleanup, arg))
      ++freed;
  }
  return freed;
}

}  // namespace corio
