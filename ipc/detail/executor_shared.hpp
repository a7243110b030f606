#pragma once
// The shared-memory layout of corio::executor (ipc/executor.hpp) and the helpers both
// sides use: the parent (executor.cpp) and the worker process (executor_worker.cpp).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include "../../runtime/detail/cpu_relax.hpp"
#include "../event_count.hpp"
#include "../executor.hpp"
#include "../shm_region.hpp"
#include "id_frame.hpp"

namespace corio::detail {

// ---- shared layout (one shm_region per worker) ---------------------------------------------
//
//   [executor_shared: 4 event_count words, one cache line each][request ring][reply ring]
//
// Who produces and who consumes
// - request ring: the parent (its loop thread) produces, the worker (its loop thread)
//   consumes. Frames: [u64 request id][remote_call request]; id 0 asks the worker to exit.
// - reply ring: the worker produces, the parent consumes. Frames: [u64 id][reply].
// - request_ready: the worker sleeps on it when the request ring is empty; the parent
//   notifies after publishing requests. request_room: the parent sleeps on it when the
//   request ring is full; the worker notifies after draining. reply_ready / reply_room are
//   the mirror image. The rings' own acquire/release pairs order the frames; event_count
//   orders the sleep against the publish (see event_count.hpp).
// - Each word sits on its own line: a waiter's announcement (an RMW) must not steal the
//   line the other side's notify reads for a different direction.
struct executor_shared {
  alignas(64) event_count_state request_ready;
  alignas(64) event_count_state request_room;
  alignas(64) event_count_state reply_ready;
  alignas(64) event_count_state reply_room;
};
static_assert(sizeof(executor_shared) == 256);
static_assert(std::is_trivially_copyable_v<executor_shared>);

inline constexpr std::uint64_t executor_exit_id = 0;

// Polls ready() for up to `limit` before the caller sleeps; true as soon as it holds.
// Bounded by time, not by a count: a pause instruction costs 10 ns to 140 ns depending on
// the CPU. Adaptive: a poll that ran out (the peer did not answer in time: it shares our
// core, or is busy) makes the next 2, 4, ... 256 waits skip polling, so a loaded machine
// pays the spin rarely while an idle one with free cores keeps the fast path.
class adaptive_spin {
 public:
  explicit adaptive_spin(std::chrono::nanoseconds limit) noexcept : limit_(limit) {}

  template <class Ready>
  bool operator()(Ready ready) {
    if (limit_ <= std::chrono::nanoseconds::zero() || skip_ != 0) {
      if (skip_ != 0) --skip_;
      return ready();
    }
    const auto until = std::chrono::steady_clock::now() + limit_;
    for (;;) {
      for (int i = 0; i < 8; ++i) {
        if (ready()) {
          penalty_ = 1;
          return true;
        }
        cpu_relax();
      }
      if (std::chrono::steady_clock::now() >= until) break;
    }
    if (ready()) return true;
    penalty_ = std::min(penalty_ * 2, 256u);
    skip_ = penalty_;
    return false;
  }

 private:
  std::chrono::nanoseconds limit_;
  unsigned skip_ = 0;
  unsigned penalty_ = 1;
};

static_assert(executor_header_bytes == id_frame_header);
inline std::uint64_t executor_frame_id(std::span<const std::byte> frame) {
  return split_id_frame(frame, "corio::executor: a request or reply").id;
}

struct executor_ring_views {
  executor_shared* shared;
  std::span<std::byte> requests;
  std::span<std::byte> replies;
};

inline executor_ring_views executor_views(const shm_region& region, std::size_t ring_memory) {
  return {reinterpret_cast<executor_shared*>(region.data()),
          std::span<std::byte>(region.data() + sizeof(executor_shared), ring_memory),
          std::span<std::byte>(region.data() + sizeof(executor_shared) + ring_memory, ring_memory)};
}


// The body of worker process: attaches to its rings in `region`, pins itself to `cpu`
// (-1: no pinning), runs its loop until the parent's exit request. Runs in the child.
void executor_worker_main(const shm_region* region, std::size_t ring_memory, executor_options options, int cpu);

}  // namespace corio::detail
