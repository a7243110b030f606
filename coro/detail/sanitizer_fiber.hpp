#pragma once
// Tells AddressSanitizer and ThreadSanitizer about fiber stack switches.
//
// Why: both sanitizers assume a thread runs on one stack. Without these calls, ASan
// misreads a throw on a fiber stack (its no-return handler unpoisons a bogus range and
// warns), mixes up fake stacks (detect_stack_use_after_return), and TSan attributes every
// fiber's accesses to one shadow stack, reporting nonsense.
//
// The protocol for a switch from context A to context B:
//   A, right before the jump:  ASan start_switch(&A's fake-stack slot, B's stack bounds)
//                              TSan switch_to_fiber(B's TSan fiber)
//   B, right after landing:    ASan finish_switch(B's fake-stack slot, &A's stack bounds)
// A context that will never run again passes nullptr as its slot, so ASan frees its fake
// stack; that is the last switch out of a finishing fiber.
//
// One sanitizer_fiber lives in each fiber's control block and remembers both sides of its
// switches: the fiber's own stack, and the stack of whoever resumed it last. The resumer
// changes from one resume to the next (main, another fiber, another thread), so its bounds
// are re-learned by every finish_switch on the fiber side.
//
// The sanitizer #if of corio's fibers lives here (detection: sanitizers.hpp). In a build
// without sanitizers
// every member function is an empty inline function and the class is empty (store it
// [[no_unique_address]]). The class is part of fiber_state, whose layout user code sees
// through inline functions: corio and the code using it must be built with the same
// sanitizers (as with any sanitizer, mixing instrumented and plain objects is unsupported).

#include <cstddef>

#include "sanitizers.hpp"

#if CORIO_DETAIL_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if CORIO_DETAIL_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace corio::detail {

class sanitizer_fiber {
 public:
  // On the owner's side, once the fiber's stack [low, low + size) is known.
  void create(const void* low, std::size_t size) noexcept;
  // After the fiber's last switch out; the stack may be reused afterwards.
  void destroy() noexcept;

  // Resumer side, around its jump into the fiber.
  void before_resume() noexcept;
  void after_resume() noexcept;

  // Fiber side: first code run on the fiber stack.
  void on_entry() noexcept;
  // Fiber side, around its jump back to the resumer. A finishing fiber never lands again.
  void before_suspend() noexcept;
  void before_finish() noexcept;
  void after_suspend() noexcept;

  // Clears ASan's poisoning of a stack whose frames were abandoned, not returned from (a
  // fiber's entry frame never returns), before the memory is reused or unmapped.
  static void unpoison_stack(void* low, std::size_t size) noexcept;

 private:
#if CORIO_DETAIL_ASAN
  const void* low_ = nullptr;
  std::size_t size_ = 0;
  const void* resumer_low_ = nullptr;
  std::size_t resumer_size_ = 0;
  void* fiber_fake_stack_ = nullptr;
  void* resumer_fake_stack_ = nullptr;
#endif
#if CORIO_DETAIL_TSAN
  void* tsan_fiber_ = nullptr;
  void* tsan_resumer_ = nullptr;
#endif
};

#if CORIO_DETAIL_ASAN || CORIO_DETAIL_TSAN

inline void sanitizer_fiber::create([[maybe_unused]] const void* low,
                                    [[maybe_unused]] std::size_t size) noexcept {
#if CORIO_DETAIL_ASAN
  low_ = low;
  size_ = size;
#endif
#if CORIO_DETAIL_TSAN
  tsan_fiber_ = __tsan_create_fiber(0);
#endif
}

inline void sanitizer_fiber::destroy() noexcept {
#if CORIO_DETAIL_TSAN
  if (tsan_fiber_ != nullptr) __tsan_destroy_fiber(tsan_fiber_);
  tsan_fiber_ = nullptr;
#endif
}

inline void sanitizer_fiber::before_resume() noexcept {
#if CORIO_DETAIL_ASAN
  __sanitizer_start_switch_fiber(&resumer_fake_stack_, low_, size_);
#endif
#if CORIO_DETAIL_TSAN
  tsan_resumer_ = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(tsan_fiber_, 0);
#endif
}

inline void sanitizer_fiber::after_resume() noexcept {
#if CORIO_DETAIL_ASAN
  __sanitizer_finish_switch_fiber(resumer_fake_stack_, nullptr, nullptr);
#endif
}

inline void sanitizer_fiber::on_entry() noexcept {
#if CORIO_DETAIL_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &resumer_low_, &resumer_size_);
#endif
}

inline void sanitizer_fiber::before_suspend() noexcept {
#if CORIO_DETAIL_ASAN
  __sanitizer_start_switch_fiber(&fiber_fake_stack_, resumer_low_, resumer_size_);
#endif
#if CORIO_DETAIL_TSAN
  __tsan_switch_to_fiber(tsan_resumer_, 0);
#endif
}

inline void sanitizer_fiber::before_finish() noexcept {
#if CORIO_DETAIL_ASAN
  __sanitizer_start_switch_fiber(nullptr, resumer_low_, resumer_size_);
#endif
#if CORIO_DETAIL_TSAN
  __tsan_switch_to_fiber(tsan_resumer_, 0);
#endif
}

inline void sanitizer_fiber::after_suspend() noexcept {
#if CORIO_DETAIL_ASAN
  __sanitizer_finish_switch_fiber(fiber_fake_stack_, &resumer_low_, &resumer_size_);
#endif
}

inline void sanitizer_fiber::unpoison_stack([[maybe_unused]] void* low,
                                            [[maybe_unused]] std::size_t size) noexcept {
#if CORIO_DETAIL_ASAN
  __asan_unpoison_memory_region(low, size);
#endif
}

#else

inline void sanitizer_fiber::create(const void*, std::size_t) noexcept {}
inline void sanitizer_fiber::destroy() noexcept {}
inline void sanitizer_fiber::before_resume() noexcept {}
inline void sanitizer_fiber::after_resume() noexcept {}
inline void sanitizer_fiber::on_entry() noexcept {}
inline void sanitizer_fiber::before_suspend() noexcept {}
inline void sanitizer_fiber::before_finish() noexcept {}
inline void sanitizer_fiber::after_suspend() noexcept {}
inline void sanitizer_fiber::unpoison_stack(void*, std::size_t) noexcept {}

#endif

}  // namespace corio::detail
