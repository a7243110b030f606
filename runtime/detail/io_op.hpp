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

namespace corio::detail {

struct io_op {
  // Runs on the loop's thread for each CQE of this request. `flags` are the CQE flags
  // (IORING_CQE_F_MORE: a multishot request will complete again).
  void (*complete)(io_op* self, int res, unsigned flags) noexcept;
};

inline std::uint64_t to_user_data(io_op* op) noexcept { return reinterpret_cast<std::uintptr_t>(op); }
inline io_op* from_user_data(std::uint64_t v) noexcept {
  return reinterpret_cast<io_op*>(static_cast<std::uintptr_t>(v));
}

}  // namespace corio::detail
