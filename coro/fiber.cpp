// corio::fiber (fiber.hpp): creation, the fiber entry, unwinding and the cold paths. The
// hot halves of a switch are inline in fiber.hpp (detail::switch_into / switch_out).
//
// The switch protocol, in one place:
//   resume():  current_fiber = fiber; jump in; current_fiber = the previous one.
//   suspend(): jump back into the resume() that is running this fiber.
//   entry:     run the body, destroy it, mark the state finished, jump out for good.
// jump_fcontext hands each side the context it came from: resume() learns where the fiber
// stopped, the fiber learns where its current resumer waits. Nothing else crosses.
//
// A finished fiber's stack, control block included, is recycled at once by whoever saw
// it finish (the resume() it returned to, or the destructor or close() that unwound it),
// after moving out the exception it may carry.

#include "fiber.hpp"

#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include "detail/sanitizer_fiber.hpp"
#include "detail/stack_pool.hpp"

namespace corio {
namespace detail {

constinit thread_local fiber_state* current_fiber = nullptr;

namespace {

// Thrown by suspend() inside a fiber that is being destroyed or closed, caught at the
// fiber's entry. Not a std::exception, so a body's catch (const std::exception&) cannot
// stop the unwind by accident.
struct forced_unwind {};

// A stack must keep at least this much below the control block and the stored body.
constexpr std::size_t min_free_stack = stack_pool::min_size / 2;

void fiber_entry(fctx::transfer_t from) noexcept {
  auto* const s = static_cast<fiber_state*>(from.data);
  s->resumer_ctx = from.fctx;
  s->san.on_entry();
  try {
    s->ops->run(s->body);
  } catch (const forced_unwind&) {
    // The destructor (or close()) asked for this; nothing to report.
  } catch (...) {
    s->error = std::current_exception();
  }
  // The body's captures die with the body, on the fiber, not later on some other stack.
  s->ops->destroy(s->body);
  s->status = fiber_status::finished;
  s->san.before_finish();
  fctx::jump_fcontext(s->resumer_ctx, nullptr);
  // The resumer recycles this stack as soon as it lands: nothing ever jumps back here.
  std::terminate();
}

// Ends the life of a state whose body is no longer stored (destroyed or never built) and
// recycles its stack. Returns what escaped the body, if anything.
std::exception_ptr retire(fiber_state* s) noexcept {
  std::exception_ptr error = std::move(s->error);
  const fiber_stack stack = s->stack;
  s->san.destroy();
  s->~fiber_state();
  stack_pool::deallocate(stack);
  return error;
}

// Resumes a suspended fiber with suspend() primed to throw, so its stack unwinds to the
// entry. Every later suspend() throws again without switching (see fiber.hpp), so when
// control returns here the fiber has finished.
void unwind(fiber_state* s) noexcept {
  s->unwinding = true;
  switch_into(s);
}

}  // namespace

fiber_state* fiber_create(std::size_t stack_size, std::size_t body_size,
                          std::size_t body_align, const fiber_body_ops& ops) {
  const fiber_stack stack = stack_pool::allocate(stack_size);
  // From the top down: control block, body, then the stack proper.
  const auto low = reinterpret_cast<std::uintptr_t>(stack.low);
  const auto high = reinterpret_cast<std::uintptr_t>(stack.high());
  const std::uintptr_t state_at = (high - sizeof(fiber_state)) & ~(alignof(fiber_state) - 1);
  const std::uintptr_t room = state_at - low;
  if (body_size > room || ((state_at - body_size) & ~(body_align - 1)) - low < min_free_stack) {
    stack_pool::deallocate(stack);
    throw std::length_error("corio::fiber: a body of " + std::to_string(body_size) +
                            " bytes leaves too little of a " + std::to_string(stack.size) +
                            "-byte stack");
  }
  const std::uintptr_t body_at = (state_at - body_size) & ~(body_align - 1);
  // The ABI wants a 16-byte aligned stack; make_fcontext aligns too, this keeps the size
  // given to it exact.
  const std::uintptr_t sp = body_at & ~std::uintptr_t{15};

  auto* const s = ::new (reinterpret_cast<void*>(state_at)) fiber_state{};
  s->ops = &ops;
  s->body = reinterpret_cast<void*>(body_at);
  s->stack = stack;
  s->fiber_ctx = fctx::make_fcontext(reinterpret_cast<void*>(sp), sp - low, &fiber_entry);
  s->san.create(stack.low, sp - low);
  return s;
}

void fiber_discard(fiber_state* state) noexcept { static_cast<void>(retire(state)); }

}  // namespace detail

void fiber::admit_first_resume(detail::fiber_state* s) {
  if (s == nullptr)
    throw std::logic_error("corio::fiber::resume: the fiber has finished (or was moved from)");
  if (s->status == detail::fiber_status::running)
    throw std::logic_error(
        "corio::fiber::resume: the fiber is already running (re-entrant resume from its own "
        "stack or from a fiber it resumed)");
  if (s->home != nullptr) throw_foreign_thread("resume");
  s->home = &detail::current_fiber;
}

void fiber::throw_foreign_thread(const char* what) {
  throw std::logic_error(std::string("corio::fiber::") + what +
                         ": the fiber is bound to the thread that first resumed it");
}

bool fiber::retire_after_resume() {
  detail::fiber_state* const s = std::exchange(state_, nullptr);
  if (std::exception_ptr error = detail::retire(s)) std::rethrow_exception(std::move(error));
  return false;
}

void fiber::throw_not_in_fiber() {
  throw std::logic_error("corio::fiber::suspend: called outside a fiber");
}

void fiber::throw_not_on_own_stack() {
  throw std::logic_error(
      "corio::yielder: yield called outside the generator's own fiber (inside another fiber "
      "the generator's body resumed)");
}

void fiber::throw_unwind() { throw detail::forced_unwind{}; }

bool fiber::in_fiber() noexcept { return detail::current_fiber != nullptr; }

void fiber::close() {
  detail::fiber_state* const s = state_;
  if (s == nullptr) return;
  if (s->status == detail::fiber_status::running)
    throw std::logic_error("corio::fiber::close: the fiber is running");
  if (s->status == detail::fiber_status::suspended && s->home != &detail::current_fiber)
    throw_foreign_thread("close");
  state_ = nullptr;
  if (s->status == detail::fiber_status::fresh) {
    s->ops->destroy(s->body);
  } else {
    detail::unwind(s);
  }
  if (std::exception_ptr error = detail::retire(s)) std::rethrow_exception(std::move(error));
}

void fiber::release() noexcept {
  detail::fiber_state* const s = state_;
  if (s == nullptr) return;
  switch (s->status) {
    case detail::fiber_status::fresh:
      s->ops->destroy(s->body);
      break;
    case detail::fiber_status::suspended:
      if (s->home != &detail::current_fiber) {
        std::fputs("corio::fiber: a suspended fiber destroyed on a thread other than the one "
                   "it is bound to\n",
                   stderr);
        std::terminate();
      }
      detail::unwind(s);
      break;
    case detail::fiber_status::running:
    case detail::fiber_status::finished:  // unreachable: a finished fiber is already retired
      std::fputs("corio::fiber: destroyed while running (from its own stack or from a fiber "
                 "it resumed)\n",
                 stderr);
      std::terminate();
  }
  state_ = nullptr;
  // Destruction has nobody to report to: an exception other than the unwind is dropped.
  static_cast<void>(detail::retire(s));
}

}  // namespace corio
