#pragma once
// io_op: one in-flight io_uring request, as the loop sees it.
//
// An operation's SQE carries a pointer to its io_op in user_data; the loop turns each CQE
// back into that pointer and calls `complete`. user_data 0 marks requests whose
// completion nobody waits for (cancel requests, linked timeouts) and is skipped.
//
// Lifetime rule (design.md, "Cancellation races"): the io_op, and every buffer and fd its
// request uses, must stay alive until its final CQE has been delivered, even when the
// awaiting coroutine was cancelled: a cancel is a request, the kernel's completion is the
// answer. Awaiters guarantee this by living in the suspended coroutine's frame, which
// does not resume before that CQE.

#include <cstdint>
#include <stop_token>

namespace corio::detail {

struct io_op {
  // Runs on the loop's thread for each CQE of this request. `flags` are the CQE flags
  // (IORING_CQE_F_MORE: a multishot request will complete again).
  void (*complete)(io_op* self, int res, unsigned flags) noexcept;
};

// An in-flight op whose stop token the loop watches for it (loop::watch_stop).
//
// Registering a std::stop_callback costs a few atomic read-modify-writes on the token's
// shared state, about as much as the io_uring round trip of a NOP. Most ops complete
// within the loop iteration that submitted them, so the loop does not register one per
// op: while it is busy it polls the tokens of the ops on its list (one load each per
// iteration), and only before it goes to sleep, when a stop request from another thread
// could otherwise go unnoticed, does it call `register_callback` for each op still
// listed. The list is bounded (loop::max_polled_ops): an op started while it is full gets
// its callback at once, so a loop with thousands of receives in flight (a server's idle
// connections) does not walk them all every iteration. Linked into the loop's list on
// the loop thread only.
struct stop_watched_op : io_op {
  const std::stop_token* token = nullptr;
  // Registers the op's std::stop_callback (which then cancels it from any thread).
  void (*register_callback)(stop_watched_op* self) = nullptr;
  stop_watched_op* prev = nullptr;
  stop_watched_op* next = nullptr;
  bool listed = false;
};

inline std::uint64_t to_user_data(io_op* op) noexcept { return reinterpret_cast<std::uintptr_t>(op); }
inline io_op* from_user_data(std::uint64_t v) noexcept {
  return reinterpret_cast<io_op*>(static_cast<std::uintptr_t>(v));
}

}  // namespace corio::detail
