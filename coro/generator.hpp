#pragma once
// generator<Y, Send, Return>: a synchronous coroutine with Python generator semantics.
//
//     corio::generator<int, int> jumping_range(int n) {
//       int index = 0;
//       while (index < n) {
//         std::optional<int> jump = co_yield index;   // Python: jump = yield index
//         index += jump.value_or(1);
//       }
//     }
//     auto it = jumping_range(5);
//     it.next();     // 0        Python: next(it)
//     it.send(2);    // 2        Python: it.send(2)
//
// Semantics, Python on the right:
// - next() -> std::optional<Y>: resume; the yield expression evaluates to an empty
//   optional; an empty result means exhausted (StopIteration). Repeating next() on an
//   exhausted generator keeps returning empty.
// - send(v) -> std::optional<Y>: resume; the yield expression evaluates to v.
//   send(v) before the first next() throws generator_misuse (Python's "can't send
//   non-None value to a just-started generator"), as does send(v) to a finished
//   generator: the value would otherwise be silently lost.
// - result(): the co_return value (StopIteration.value), once finished.
// - throw_into(e): raise e at the suspended co_yield (gen.throw). If the body catches it
//   and yields again, that value is returned; an uncaught exception propagates out.
// - close(): raise generator_exit at the suspended co_yield (gen.close); the frame unwinds
//   and its destructors run. A body that yields again after generator_exit is destroyed
//   and close() throws generator_misuse ("generator ignored close()").
// - co_yield elements_of(sub): yield from sub. Values, send() and throw_into() reach the
//   innermost generator; the expression evaluates to sub's co_return value.
// - for (auto& v : gen) iterates with next().
// - No co_await inside the body (it is synchronous); use async_generator for that.
// - Calling next()/send() from inside the running generator throws generator_misuse
//   ("generator already executing").
//
// Ownership: the generator object owns the frame; destroying it destroys the suspended
// frame (locals' destructors run, no generator_exit is raised). Not thread-safe: one
// thread drives a generator at a time.

#include <coroutine>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "detail/frame_allocator.hpp"

namespace corio {

// Misuse of a generator's protocol (Python: TypeError / ValueError / RuntimeError).
class generator_misuse : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Raised inside a generator body by close(). Like Python's GeneratorExit it does not
// derive from std::exception, so `catch (const std::exception&)` does not swallow it.
struct generator_exit {};

template <class Y, class Send = void, class Return = void>
class generator;

template <class G>
struct elements_of {
  G gen;
  explicit elements_of(G&& g) noexcept : gen(std::move(g)) {}
};
template <class G>
elements_of(G&&) -> elements_of<G>;

namespace detail {

// State shared by a chain of nested generators lives in the root's promise: the leaf that
// runs now, the value it yielded, and what the consumer sends or throws in.
//
// One byte says both where the chain is and, while it runs, how it was resumed: the
// consumer writes it once before resuming, the co_yield reads it once to learn whether
// it evaluates to nothing, to a sent value, or raises. A single byte written by one
// store keeps the hot path free of wide-store / narrow-load forwarding stalls.
//
// Passing control between the levels of an elements_of chain (entering an inner
// generator, returning to the outer one when the inner finishes) is not symmetric
// transfer: at -O0 and under sanitizers the compiler does not make that a tail call, and
// a chain of 10,000 levels would take 10,000 stack frames at once. Instead the level that
// hands over sets `active` to the next one, sets the phase to `transferring` and suspends;
// the consumer's resume loop (generator::finish_transfers) sees that and resumes `active`
// (marking the phase running again, so that a co_yield, which writes nothing, is told
// apart from another transfer) — a trampoline local to the chain, in constant stack at
// any depth. `finished` and `transferring` sort last, so the hot path (send -> leaf ->
// co_yield -> back) stays one resume and one byte compare, as without nesting, and the
// leaf is always resumed directly, never through its parents.
enum class generator_phase : unsigned char {
  fresh,      // created, body not entered
  suspended,  // parked at a co_yield
  resumed_by_next,
  resumed_by_send,
  resumed_by_throw,
  finished,      // returned, threw, or was closed
  transferring,  // a level of the chain handed control to `active` and suspended
};
constexpr bool is_running(generator_phase p) noexcept {
  return p >= generator_phase::resumed_by_next && p != generator_phase::finished;
}

// The value in flight from send() to the co_yield. It needs no engaged flag: send()
// constructs it and resumes at once, and the co_yield's await_resume, the first thing to
// run, moves it out and destroys it.
template <class T>
union sent_slot {
  sent_slot() noexcept {}
  ~sent_slot() {}
  T value;
};
template <>
union sent_slot<void> {};

template <class Y, class Send>
class generator_promise_base;

template <class Y, class Send>
class generator_root_state {
 public:
  std::coroutine_handle<> active;  // innermost running generator; the root when not nested
  Y* value = nullptr;              // valid while the yielding frame is suspended
  std::exception_ptr thrown;       // raised at the co_yield when resumed_by_throw
  generator_phase phase = generator_phase::fresh;
  [[no_unique_address]] sent_slot<Send> sent;
  generator_promise_base<Y, Send>* active_promise = nullptr;  // active's promise, for teardown
};

template <class Y, class Send>
class generator_promise_base : public recycled_frame {
 public:
  using root_state = generator_root_state<Y, Send>;

  std::suspend_always initial_suspend() const noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
      auto& p = self.promise();
      if (!p.parent_) {
        p.root_->phase = generator_phase::finished;
        return std::noop_coroutine();
      }
      // A nested generator hands control back to the one it serves, through the
      // consumer's resume loop (see generator_phase).
      p.root_->active = p.parent_;
      p.root_->active_promise = p.parent_promise_;
      p.root_->phase = generator_phase::transferring;
      return std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  // The yield expression: the sent value (or nothing), or the exception thrown in.
  struct yield_awaiter_base {
    root_state* root;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    auto await_resume() const {
      const generator_phase how = root->phase;
      if constexpr (std::is_void_v<Send>) {
        if (how == generator_phase::resumed_by_throw) [[unlikely]]
          raise();
      } else {
        if (how == generator_phase::resumed_by_next) return std::optional<Send>{};
        if (how == generator_phase::resumed_by_throw) [[unlikely]]
          raise();
        struct destroy_sent {
          Send* v;
          ~destroy_sent() { v->~Send(); }
        } guard{&root->sent.value};
        return std::optional<Send>{std::move(root->sent.value)};
      }
    }
    [[noreturn]] void raise() const { std::rethrow_exception(std::exchange(root->thrown, nullptr)); }
  };
  struct yield_ref_awaiter : yield_awaiter_base {};
  struct yield_copy_awaiter : yield_awaiter_base {
    Y copy;
    void await_suspend(std::coroutine_handle<>) noexcept { this->root->value = &copy; }
  };

  // An rvalue lives until the end of the full co_yield expression, which spans the
  // suspension, so the consumer may move from it in place.
  yield_ref_awaiter yield_value(Y&& v) noexcept {
    root_->value = std::addressof(v);
    return {{root_}};
  }
  // An lvalue is copied so the consumer's move cannot reach into the body's variable,
  // unless moving is copying (trivially copyable Y): then the consumer reads it in place.
  auto yield_value(const Y& v) noexcept(std::is_nothrow_copy_constructible_v<Y>) {
    if constexpr (std::is_trivially_copyable_v<Y>) {
      root_->value = const_cast<Y*>(std::addressof(v));
      return yield_ref_awaiter{{root_}};
    } else {
      return yield_copy_awaiter{{root_}, v};
    }
  }

  template <class S, class R>
  auto yield_value(elements_of<generator<Y, S, R>> sub);

  // A synchronous generator cannot wait for anything (style.md: fail at compile time).
  template <class U>
  void await_transform(U&&) = delete;

  root_state* root_ = nullptr;
  std::coroutine_handle<> parent_;
  std::exception_ptr exception_;
  // A nested generator: the promise of the one it serves, and the handle in that one's
  // frame which owns this frame (generator::reset takes it to tear a chain down).
  generator_promise_base* parent_promise_ = nullptr;
  std::coroutine_handle<>* owner_ = nullptr;
};

template <class Y, class Send, class Return>
class generator_promise : public generator_promise_base<Y, Send>,
                          public generator_root_state<Y, Send> {
 public:
  generator<Y, Send, Return> get_return_object() noexcept;
  template <class U>
    requires std::is_convertible_v<U&&, Return>
  void return_value(U&& v) {
    result_.emplace(std::forward<U>(v));
  }
  std::optional<Return> result_;
};

template <class Y, class Send>
class generator_promise<Y, Send, void> : public generator_promise_base<Y, Send>,
                                         public generator_root_state<Y, Send> {
 public:
  generator<Y, Send, void> get_return_object() noexcept;
  void return_void() noexcept {}
};

}  // namespace detail

template <class Y, class Send, class Return>
class [[nodiscard]] generator {
  static_assert(std::is_object_v<Y> && !std::is_const_v<Y>,
                "generator<Y>: Y must be a non-const object type (yield values, not references)");
  static_assert(std::is_void_v<Send> || std::is_object_v<Send>, "generator: Send must be void or an object type");

 public:
  using promise_type = detail::generator_promise<Y, Send, Return>;
  using value_type = Y;
  using send_type = Send;
  using return_type = Return;

  generator() noexcept = default;
  generator(generator&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
  generator& operator=(generator&& o) noexcept {
    if (this != &o) {
      reset();
      handle_ = std::exchange(o.handle_, {});
    }
    return *this;
  }
  ~generator() { reset(); }

  std::optional<Y> next() {
    if (!handle_) return std::nullopt;
    auto& p = handle_.promise();
    if (p.phase != phase::suspended) [[unlikely]] {
      if (p.phase == phase::finished) return std::nullopt;
      if (detail::is_running(p.phase)) throw_running();
    }
    return resume(p, phase::resumed_by_next);
  }

  template <class S = Send>
    requires(!std::is_void_v<S>)
  std::optional<Y> send(S value) {
    if (!handle_) throw_finished("send");
    auto& p = handle_.promise();
    if (p.phase != phase::suspended) [[unlikely]] {
      if (p.phase == phase::finished) throw_finished("send");
      if (detail::is_running(p.phase)) throw_running();
      throw generator_misuse(
          "corio::generator::send: can't send a value to a just-started generator; call next() first");
    }
    std::construct_at(&p.sent.value, std::move(value));
    return resume(p, phase::resumed_by_send);
  }

  std::optional<Y> throw_into(std::exception_ptr e) {
    if (!handle_) std::rethrow_exception(e);  // Python raises it at once too
    auto& p = handle_.promise();
    if (p.phase == phase::finished) std::rethrow_exception(e);
    if (p.phase == phase::fresh) {
      // A just-started generator has no yield to raise at: it finishes with the exception.
      reset();
      std::rethrow_exception(e);
    }
    if (detail::is_running(p.phase)) throw_running();
    p.thrown = std::move(e);
    return resume(p, phase::resumed_by_throw);
  }
  template <class E>
    requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
  std::optional<Y> throw_into(E&& e) {
    return throw_into(std::make_exception_ptr(std::forward<E>(e)));
  }

  void close();

  // True once the body has returned, thrown, or been closed.
  bool done() const noexcept { return !handle_ || handle_.done(); }

  // The co_return value. Throws generator_misuse unless the body returned normally.
  template <class R = Return>
    requires(!std::is_void_v<R>)
  R& result() {
    if (!handle_ || !handle_.done() || !handle_.promise().result_)
      throw generator_misuse("corio::generator::result: the generator has not returned a value");
    return *handle_.promise().result_;
  }

  class iterator;
  iterator begin() { return iterator{this}; }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  friend promise_type;
  template <class, class>
  friend class detail::generator_promise_base;

  explicit generator(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {
    auto& p = h.promise();
    p.root_ = &p;
    p.active = h;
    p.active_promise = &p;
  }

  using phase = detail::generator_phase;

  // A suspended elements_of chain is torn down from the leaf up, one level at a time:
  // destroying the root first would destroy each level from inside its parent's
  // destruction, one nest of stack frames per level. (The order is the same either way:
  // innermost first.)
  void reset() noexcept {
    if (!handle_) return;
    auto& p = handle_.promise();
    for (detail::generator_promise_base<Y, Send>* q = p.active_promise; q != &p;) {
      detail::generator_promise_base<Y, Send>* up = q->parent_promise_;
      std::exchange(*q->owner_, {}).destroy();
      q = up;
    }
    std::exchange(handle_, {}).destroy();
  }

  [[noreturn]] static void throw_running() {
    throw generator_misuse("corio::generator: generator already executing");
  }
  [[noreturn]] static void throw_finished(const char* op) {
    throw generator_misuse(std::string("corio::generator::") + op + ": the generator has finished");
  }

  // Precondition: p is the root promise, fresh or suspended.
  std::optional<Y> resume(promise_type& p, phase how) {
    p.phase = how;
    p.active.resume();
    if (p.phase >= phase::finished) [[unlikely]] {  // finished or transferring
      finish_transfers(p);
      if (p.phase == phase::finished) {
        if (p.exception_) std::rethrow_exception(p.exception_);
        return std::nullopt;
      }
    }
    p.phase = phase::suspended;
    return std::optional<Y>{std::move(*p.value)};
  }

  // The chain's trampoline (see detail::generator_phase): runs every level that control
  // was handed to, until the chain yields (the phase stays `resumed_by_next`) or the root
  // finishes. How the chain was resumed is no longer needed here: only the co_yield the
  // consumer resumes reads it, and the consumer writes it anew each time.
  static void finish_transfers(promise_type& p) {
    while (p.phase == phase::transferring) {
      p.phase = phase::resumed_by_next;
      p.active.resume();
    }
  }

  std::coroutine_handle<promise_type> handle_;
};

template <class Y, class Send, class Return>
class generator<Y, Send, Return>::iterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using difference_type = std::ptrdiff_t;
  using value_type = Y;

  iterator() = default;
  explicit iterator(generator* g) : gen_(g), current_(g->next()) {}
  Y& operator*() const noexcept { return *current_; }
  Y* operator->() const noexcept { return &*current_; }
  iterator& operator++() {
    current_ = gen_->next();
    return *this;
  }
  void operator++(int) { ++*this; }
  friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
    return !it.current_.has_value();
  }

 private:
  generator* gen_ = nullptr;
  mutable std::optional<Y> current_;
};

template <class Y, class Send, class Return>
void generator<Y, Send, Return>::close() {
  if (!handle_) return;
  auto& p = handle_.promise();
  if (p.phase == phase::finished) return;
  if (p.phase == phase::fresh) {
    reset();
    return;
  }
  if (detail::is_running(p.phase)) throw_running();
  p.thrown = std::make_exception_ptr(generator_exit{});
  p.phase = phase::resumed_by_throw;
  p.active.resume();
  finish_transfers(p);
  if (p.phase != phase::finished) {
    reset();
    throw generator_misuse("corio::generator::close: generator ignored close() and yielded again");
  }
  if (p.exception_) {
    try {
      std::rethrow_exception(p.exception_);
    } catch (const generator_exit&) {
      // The expected way out: the body let generator_exit unwind it.
    }
  }
}

namespace detail {

template <class Y, class Send>
template <class S, class R>
auto generator_promise_base<Y, Send>::yield_value(elements_of<generator<Y, S, R>> sub) {
  static_assert(std::is_same_v<S, Send>,
                "co_yield elements_of(sub): sub must take the same Send type (sends pass through)");
  using inner_promise = generator_promise<Y, S, R>;
  // Owns the inner frame for as long as the co_yield lasts, through a type-erased handle
  // that generator::reset can take to tear a deep chain down level by level.
  struct delegate_awaiter {
    std::coroutine_handle<> frame;
    root_state* root;
    generator_promise_base* outer;

    delegate_awaiter(std::coroutine_handle<> f, root_state* r, generator_promise_base* o) noexcept
        : frame(f), root(r), outer(o) {}
    delegate_awaiter(delegate_awaiter&&) = delete;  // its address is the inner's owner_
    ~delegate_awaiter() {
      if (frame) frame.destroy();
    }
    inner_promise& inner() const noexcept {
      return std::coroutine_handle<inner_promise>::from_address(frame.address()).promise();
    }

    bool await_ready() const {
      if (!frame) throw generator_misuse("co_yield elements_of: the inner generator is empty (moved from)");
      if (inner().phase != generator_phase::fresh)
        throw generator_misuse("co_yield elements_of: the inner generator was already started");
      return false;
    }
    // Enters the inner generator through the consumer's resume loop (see generator_phase).
    void await_suspend(std::coroutine_handle<> outer_frame) noexcept {
      auto& ip = inner();
      ip.root_ = root;
      ip.parent_ = outer_frame;
      ip.parent_promise_ = outer;
      ip.owner_ = &frame;
      ip.phase = generator_phase::resumed_by_next;  // marks it used; the root's phase rules the chain
      root->active = frame;
      root->active_promise = &ip;
      root->phase = generator_phase::transferring;
    }
    R await_resume() {
      auto& ip = inner();
      if (ip.exception_) std::rethrow_exception(ip.exception_);
      if constexpr (!std::is_void_v<R>) return std::move(*ip.result_);
    }
  };
  return delegate_awaiter{std::exchange(sub.gen.handle_, {}), root_, this};
}

template <class Y, class Send, class Return>
generator<Y, Send, Return> generator_promise<Y, Send, Return>::get_return_object() noexcept {
  return generator<Y, Send, Return>{
      std::coroutine_handle<generator_promise>::from_promise(*this)};
}
template <class Y, class Send>
generator<Y, Send, void> generator_promise<Y, Send, void>::get_return_object() noexcept {
  return generator<Y, Send, void>{std::coroutine_handle<generator_promise>::from_promise(*this)};
}

}  // namespace detail

}  // namespace corio
