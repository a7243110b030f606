#pragma once
// Constant-stack control transfer between coroutines, whatever the compiler does.
//
// C++20 symmetric transfer (await_suspend returning a handle) only runs in constant stack
// when the compiler turns the resumption into a tail call. GCC does not at -O0, and
// neither GCC nor Clang does under AddressSanitizer or ThreadSanitizer (the instrumented
// epilogue must run after the call), so a chain of a million nested co_awaits overflows
// the stack in exactly the builds used to hunt bugs (design.md, libcoro#273).
//
// corio therefore resumes coroutines from a trampoline: resume(h) runs h, and a transfer
// made while a trampoline is active parks the target in a thread-local slot and returns
// to the trampoline, which resumes the target next. Each transfer costs one return and
// one resume instead of a jump; the stack depth never grows. Without an active trampoline
// (a foreign library resuming a corio coroutine directly) transfer_to falls back to plain
// symmetric transfer, which is correct, only not depth-proof.
//
// Invariant: the slot is empty whenever user code runs. It is written only by
// transfer_to, immediately before the transferring coroutine returns control to the
// trampoline that consumes it.

#include <coroutine>
#include <utility>

namespace corio::detail {

struct trampoline_state {
  std::coroutine_handle<> next;
  bool active = false;
};
inline thread_local trampoline_state trampoline;

// Use as the return value of await_suspend when control should pass to `target`.
inline std::coroutine_handle<> transfer_to(std::coroutine_handle<> target) noexcept {
  trampoline_state& t = trampoline;
  if (!t.active) return target;
  t.next = target;
  return std::noop_coroutine();
}

// Resumes `h` and every coroutine it transfers to, until the chain suspends for real.
// Nested calls (a coroutine that synchronously drives another) keep their own chain.
inline void resume(std::coroutine_handle<> h) {
  trampoline_state& t = trampoline;
  const bool outer = t.active;
  t.active = true;
  for (;;) {
    h.resume();
    if (!t.next) break;
    h = std::exchange(t.next, nullptr);
  }
  t.active = outer;
}

}  // namespace corio::detail
