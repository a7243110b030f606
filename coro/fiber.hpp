#pragma once
// fiber: a stackful coroutine. Its body runs on a stack of its own, so it can suspend
// from any depth of ordinary function calls, not only from its top frame.
//
//     corio::fiber f([] {
//       step_one();
//       corio::fiber::suspend();   // or from any function the body calls
//       step_two();
//     });
//     f.resume();   // runs step_one; returns true: f can be resumed again
//     f.resume();   // runs step_two; returns false: f has finished
//
// Contract
// - Lazy: the body starts at the first resume().
// - resume() runs the fiber until it calls fiber::suspend() (returns true) or its body
//   ends (returns false; the fiber is then done() and its stack is already recycled).
//   An exception escaping the body is rethrown by that resume(), and the fiber is done.
// - fiber::suspend() switches back to the immediate resumer: fibers nest, and a fiber
//   may create and resume others. Called outside any fiber it throws std::logic_error.
// - resume() of a done (or moved-from) fiber throws std::logic_error, and so does a
//   re-entrant resume() of a fiber that is running (from its own stack, or from a fiber
//   it resumed).
// - Destruction: a fiber that never started just releases its stack. A suspended fiber
//   is unwound first: it is resumed once more and its suspend() throws an internal
//   forced-unwind exception (not derived from std::exception), which unwinds the fiber's
//   stack, running the destructors of its locals, up to the fiber's entry. close() does
//   the same on demand. Unwinding crosses the body's frames, so no noexcept function
//   may sit between the body and a suspend().
// - A body that swallows the unwind with catch (...) is not trusted with a second chance
//   to block: every later suspend() throws the unwind again without switching, so the
//   body runs to its end. One that loops forever around a catch (...) never releases.
//   An exception other than the unwind escaping during destruction is dropped; close()
//   rethrows it instead.
// - Destroying a fiber from its own stack (the body destroying its own fiber object)
//   calls std::terminate with a message.
// - Cost: resume() + suspend() are two context switches plus a few loads and stores: no
//   heap allocation, no std::function call, no system call. Creating a fiber takes a
//   recycled stack from a per-thread cache (detail/stack_pool.hpp); the body is stored
//   at the top of the fiber's own stack, never on the heap.
//
// Who may touch it: a fiber is bound to the thread that first resumes it; resume, close
// and destroy it there (resume() and close() elsewhere throw std::logic_error, destroying
// a suspended fiber elsewhere calls std::terminate). Before its first resume it may be
// handed to any thread. Why: suspend() finds its fiber through a thread_local, read
// inline for speed, and compilers may compute a TLS address once per function, so a body
// that moved threads between two suspends would read the old thread's slot. Fibers are
// share-nothing, like the loops that will run them. A fiber object is move-only; moving
// it never moves the running state, which lives on the fiber's stack.
//
// Stack size: `stack_size` bytes rounded up to whole pages and to at least 16 KiB,
// including the fiber's control block and its stored body (a few hundred bytes plus the
// size of the callable), with a PROT_NONE guard page below: overflowing faults with
// SIGSEGV instead of corrupting memory. Default: 256 KiB.

#include <boost/context/detail/fcontext.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

#include "detail/sanitizer_fiber.hpp"
#include "detail/stack_pool.hpp"

namespace corio {

template <class Y>
class fiber_generator;
template <class Y>
class yielder;

namespace detail {

namespace fctx = boost::context::detail;

enum class fiber_status : unsigned char { fresh, running, suspended, finished };

// How the non-template machinery in fiber.cpp runs and destroys a stored body.
struct fiber_body_ops {
  void (*run)(void* body);
  void (*destroy)(void* body) noexcept;
};

template <class B>
inline constexpr fiber_body_ops fiber_body_ops_for{
    // A body's result, if any, has nowhere to go.
    [](void* body) { static_cast<void>(std::invoke(std::move(*static_cast<B*>(body)))); },
    [](void* body) noexcept { static_cast<B*>(body)->~B(); },
};

// The control block of one fiber. It sits at the top of the fiber's own stack, with the
// stored body just below it, so a fiber object is one pointer and moving it never moves
// anything the running fiber refers to. It dies with the stack (fiber.cpp).
struct fiber_state {
  // Where resume() jumps: the fiber's suspend point, or its entry before the first resume.
  // Valid while the fiber is not running.
  fctx::fcontext_t fiber_ctx = nullptr;
  // Where suspend() jumps: inside the resume() currently running the fiber. Refreshed by
  // every resume, since the resumer may differ each time.
  fctx::fcontext_t resumer_ctx = nullptr;
  fiber_status status = fiber_status::fresh;
  // Set before the last resume of a fiber being destroyed: suspend() throws the unwind.
  bool unwinding = false;
  const fiber_body_ops* ops = nullptr;
  void* body = nullptr;
  fiber_stack stack;
  // What escaped the body, for the final resume() to rethrow on the resumer's stack.
  std::exception_ptr error;
  // The thread the fiber is bound to, by the address of that thread's current_fiber slot
  // (unique per live thread, and cheap to compute inline); nullptr until the first resume.
  const void* home = nullptr;
  [[no_unique_address]] sanitizer_fiber san;
};

// The fiber running on this thread, innermost first (nullptr on the thread's own stack);
// the chain of outer ones lives in the locals of the resume() calls below it. Defined in
// fiber.cpp; constant-initialized, so reading it is a plain TLS load with no init guard.
extern constinit thread_local fiber_state* current_fiber;

// The two halves of a round trip. They, and every corio function between them and user
// code (resume(), suspend(), the generator's next() and yield()), are forced inline,
// because returns around a stack switch defeat the return-stack branch predictor: each
// out-of-line function level wrapped around jump_fcontext, on either side, added about
// 5 ns to a 9 ns raw round trip (measured: 9 ns raw, 14 ns with one wrapper, 23 ns with
// both; clang declined to inline some of them on its own). Inline, the jump sits
// directly in the caller's code, as in a raw fcontext loop.

// Runs `s` until it suspends or finishes; the caller has checked that it may run on this
// thread.
[[gnu::always_inline]] inline void switch_into(fiber_state* s) noexcept {
  fiber_state* const resumer = current_fiber;
  current_fiber = s;
  s->status = fiber_status::running;
  s->san.before_resume();
  const fctx::transfer_t back = fctx::jump_fcontext(s->fiber_ctx, s);
  s->san.after_resume();
  s->fiber_ctx = back.fctx;
  current_fiber = resumer;
}

// Switches from the running fiber `s`, the caller's own, back to its resumer. The
// resumer restores current_fiber on its side.
[[gnu::always_inline]] inline void switch_out(fiber_state* s) noexcept {
  s->status = fiber_status::suspended;
  s->san.before_suspend();
  const fctx::transfer_t back = fctx::jump_fcontext(s->resumer_ctx, nullptr);
  s->san.after_suspend();
  s->resumer_ctx = back.fctx;
}

// Maps (or recycles) a stack and places a control block at its top with room below it
// for a body of `body_size` bytes aligned to `body_align`; the body is not constructed.
fiber_state* fiber_create(std::size_t stack_size, std::size_t body_size,
                          std::size_t body_align, const fiber_body_ops& ops);
// Releases a state whose body was never constructed.
void fiber_discard(fiber_state* state) noexcept;

}  // namespace detail

class fiber {
 public:
  static constexpr std::size_t default_stack_size = detail::stack_pool::default_size;

  template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, fiber> &&
             std::constructible_from<std::decay_t<F>, F> && std::invocable<std::decay_t<F>>)
  explicit fiber(F&& body, std::size_t stack_size = default_stack_size)
      : fiber(std::in_place_type<std::decay_t<F>>, stack_size, std::forward<F>(body)) {}

  // Builds the body, a B, from `args` in place on the fiber's stack: B need not be movable.
  template <class B, class... Args>
    requires(std::constructible_from<B, Args...> && std::invocable<B>)
  fiber(std::in_place_type_t<B>, std::size_t stack_size, Args&&... args);

  fiber(fiber&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  fiber& operator=(fiber&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  fiber(const fiber&) = delete;
  fiber& operator=(const fiber&) = delete;
  // Unwinds a suspended fiber (see the contract above).
  ~fiber() { release(); }

  // Runs the fiber until it suspends (true) or finishes (false). Rethrows an exception
  // that escaped the body.
  [[gnu::always_inline]] bool resume();

  // Switches from the calling fiber back to its resumer; returns when it is next resumed.
  [[gnu::always_inline]] static void suspend();

  // True when called on a fiber's stack.
  static bool in_fiber() noexcept;

  // True once the body has finished (returned or thrown), and for a moved-from fiber.
  bool done() const noexcept { return state_ == nullptr; }

  // Unwinds a suspended fiber now, as destruction would, and rethrows any exception other
  // than the forced unwind that escaped the body meanwhile. A never-started fiber is just
  // dropped. Afterwards the fiber is done.
  void close();

 private:
  template <class>
  friend class fiber_generator;
  template <class>
  friend class yielder;

  // The stored body: fiber_generator finds its yielder there. Valid until done().
  void* body() const noexcept { return state_->body; }
  detail::fiber_state* state() const noexcept { return state_; }
  // suspend() for a caller that knows its fiber (a generator's yielder): no TLS read.
  // Throws std::logic_error unless the caller runs on `self`'s stack, so a yielder used
  // inside another fiber cannot suspend that one.
  [[gnu::always_inline]] static void suspend_self(detail::fiber_state* self);
  [[gnu::always_inline]] static void suspend_from(detail::fiber_state* s);
  void release() noexcept;

  // Cold paths, out of line.
  // Throws unless `s` is a fresh fiber not yet bound to a thread, which it binds to this one.
  static void admit_first_resume(detail::fiber_state* s);
  [[noreturn]] static void throw_foreign_thread(const char* what);
  [[noreturn]] static void throw_not_in_fiber();
  [[noreturn]] static void throw_not_on_own_stack();
  [[noreturn]] static void throw_unwind();
  bool retire_after_resume();

  detail::fiber_state* state_;
};

template <class B, class... Args>
  requires(std::constructible_from<B, Args...> && std::invocable<B>)
fiber::fiber(std::in_place_type_t<B>, std::size_t stack_size, Args&&... args)
    : state_(detail::fiber_create(stack_size, sizeof(B), alignof(B),
                                  detail::fiber_body_ops_for<B>)) {
  if constexpr (std::is_nothrow_constructible_v<B, Args...>) {
    ::new (state_->body) B(std::forward<Args>(args)...);
  } else {
    try {
      ::new (state_->body) B(std::forward<Args>(args)...);
    } catch (...) {
      detail::fiber_discard(state_);
      throw;
    }
  }
}

inline bool fiber::resume() {
  detail::fiber_state* const s = state_;
  // Every rare case (moved-from, first resume, another thread, re-entry) takes the same
  // cold call, which throws or binds a fresh fiber to this thread.
  if (s == nullptr || s->home != &detail::current_fiber ||
      s->status == detail::fiber_status::running) [[unlikely]]
    admit_first_resume(s);
  detail::switch_into(s);
  if (s->status != detail::fiber_status::finished) [[likely]]
    return true;
  return retire_after_resume();
}

inline void fiber::suspend() {
  detail::fiber_state* const s = detail::current_fiber;
  if (s == nullptr) [[unlikely]]
    throw_not_in_fiber();
  suspend_from(s);
}

inline void fiber::suspend_self(detail::fiber_state* self) {
  // The real frame, not the address of a local: under ASan's use-after-return detection
  // locals live on a heap-allocated fake stack.
  const auto here = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  if (here - reinterpret_cast<std::uintptr_t>(self->stack.low) >= self->stack.size)
      [[unlikely]]
    throw_not_on_own_stack();
  suspend_from(self);
}

inline void fiber::suspend_from(detail::fiber_state* s) {
  // A fiber being destroyed that swallowed the unwind gets it again instead of a switch.
  if (s->unwinding) [[unlikely]]
    throw_unwind();
  detail::switch_out(s);
  if (s->unwinding) [[unlikely]]
    throw_unwind();
}

}  // namespace corio
