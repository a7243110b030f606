#pragma once
// dekker_fence(): the seq_cst fence of a Dekker pair — "store mine, fence, load theirs" on
// both sides, so at least one side sees the other's store. corio uses it wherever a
// sleeper announces itself and a waker checks for sleepers: the shard mesh's wake-ups
// (shard_mesh.hpp), event_count, queue, pool.
//
// GCC refuses std::atomic_thread_fence under -fsanitize=thread (-Wtsan: ThreadSanitizer
// does not model fences). These fences only guarantee liveness (no lost wake-up), never
// the visibility of data, which release/acquire pairs carry and TSan checks; so the
// instruction is kept and the warning silenced here, in one place.

namespace corio::detail {

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
inline void dekker_fence() noexcept { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace corio::detail
