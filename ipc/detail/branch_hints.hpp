#pragma once
// Two compiler-only hints for loops whose speed depends on which instructions the compiler
// emits, not on what they compute (spsc_ring::drain). Neither emits an instruction.
//
// - keep_branch(): placed inside a rarely taken branch, it stops the compiler from turning
//   the branch into a conditional move (an asm statement with a memory clobber is a side
//   effect that cannot be executed speculatively). A well-predicted branch leaves the
//   data it tests off the loop's dependency chain; a conditional move puts it back on.
// - opaque(v): the compiler forgets what it knows about v (for example that it equals a
//   value just loaded, after a comparison said so), so it keeps using v itself.
//
// GCC and Clang (the compilers corio supports) accept these asm forms on every target.

namespace corio::detail {

inline void keep_branch() noexcept { asm volatile("" ::: "memory"); }

template <class T>
inline void opaque(T& v) noexcept {
  asm("" : "+r"(v));
}

}  // namespace corio::detail
