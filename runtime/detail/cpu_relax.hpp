#pragma once
// cpu_relax(): one poll's pause in a spin-wait on shared memory. On x86 the PAUSE
// instruction (it also spares the sibling hyperthread and avoids the memory-order
// mis-speculation penalty when the polled line changes); on AArch64 YIELD; elsewhere
// nothing. What a spin does when the pause is not enough (yield the core, sleep) is the
// caller's policy.

namespace corio::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace corio::detail
