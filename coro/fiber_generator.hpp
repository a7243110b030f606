#pragma once
// fiber_generator<Y>: a generator whose body is ordinary code running on a fiber, so it
// can yield from any depth of plain function calls. A recursive tree walk stays plain
// recursion:
//
//     void walk(const node* n, corio::yielder<int>& out) {
//       if (n == nullptr) return;
//       walk(n->left, out);
//       out.yield(n->value);
//       walk(n->right, out);
//     }
//     corio::fiber_generator<int> values([&](corio::yielder<int>& out) { walk(root, out); });
//     for (int v : values) use(v);
//
// Contract
// - Lazy: the body starts at the first next() (or begin()).
// - next() runs the body to its next yield and returns the value; once the body has
//   returned it returns an empty optional, then and on every later call (Python's
//   StopIteration).
// - An exception escaping the body propagates out of next() (or begin() / ++it); the
//   generator is then exhausted.
// - Range-for: an input range, to be walked once. begin() runs the body to its first
//   yield. *it is the yielded object itself, living in the suspended yield() call: it is
//   valid until the iterator advances and may be moved from.
// - Destroying a generator mid-way (a break out of range-for) or calling close() unwinds
//   the body's stack: destructors of its locals run (fiber.hpp tells what happens to a
//   body that swallows the unwind).
// - yield() must run on the generator's own fiber: in the body or anything the body
//   calls. From another fiber (one the body resumes) it throws std::logic_error there; a
//   bare fiber::suspend() in the body makes next() throw std::logic_error.
// - Cost per value: one fiber round trip and one move of the value into next()'s
//   optional (none through the iterator). The stack is a fiber stack (fiber.hpp:
//   guarded, pooled, 256 KiB unless told otherwise).
//
// Who may touch it: like its fiber, it is bound to the thread of its first next(); it is
// move-only, and its yielder stays put on the fiber's stack.

#include <concepts>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "fiber.hpp"

namespace corio {
namespace detail {

// What the generator's fiber runs: the user's body, and the yielder it is handed. Built in
// place on the fiber's stack, so the generator can keep a pointer to the yielder.
template <class Y, class F>
struct fiber_generator_body {
  template <class G>
  explicit fiber_generator_body(G&& g) : fn(std::forward<G>(g)) {}

  void operator()() { std::invoke(std::move(fn), out); }

  F fn;
  yielder<Y> out;
};

}  // namespace detail

// The body's handle for producing values. Not copyable: the generator reads the one it
// created.
template <class Y>
class yielder {
 public:
  yielder(const yielder&) = delete;
  yielder& operator=(const yielder&) = delete;

  // Hands `value` to the consumer and suspends until the next value is wanted.
  [[gnu::always_inline]] void yield(Y value) { publish(value); }
  // The same, so a yielder can be passed where a callback is expected.
  [[gnu::always_inline]] void operator()(Y value) { publish(value); }

 private:
  template <class>
  friend class fiber_generator;
  template <class, class>
  friend struct detail::fiber_generator_body;

  yielder() = default;

  // The value stays in yield()'s frame while the fiber is suspended; the consumer reads
  // it there, so nothing is copied across the switch.
  [[gnu::always_inline]] void publish(Y& value) {
    value_ = std::addressof(value);
    fiber::suspend_self(owner_);
  }

  Y* value_ = nullptr;
  detail::fiber_state* owner_ = nullptr;
};

template <class Y>
class fiber_generator {
  static_assert(std::is_object_v<Y> && !std::is_const_v<Y> && !std::is_array_v<Y>,
                "fiber_generator<Y>: Y must be a non-const object type");

 public:
  using value_type = Y;
  class iterator;

  template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, fiber_generator> &&
             std::constructible_from<std::decay_t<F>, F> &&
             std::invocable<std::decay_t<F>, yielder<Y>&>)
  explicit fiber_generator(F&& body, std::size_t stack_size = fiber::default_stack_size)
      : fiber_(std::in_place_type<detail::fiber_generator_body<Y, std::decay_t<F>>>,
               stack_size, std::forward<F>(body)),
        out_(&static_cast<detail::fiber_generator_body<Y, std::decay_t<F>>*>(fiber_.body())
                  ->out) {
    out_->owner_ = fiber_.state();
  }

  fiber_generator(fiber_generator&& other) noexcept
      : fiber_(std::move(other.fiber_)), out_(std::exchange(other.out_, nullptr)) {}
  fiber_generator& operator=(fiber_generator&& other) noexcept {
    if (this != &other) {
      fiber_ = std::move(other.fiber_);
      out_ = std::exchange(other.out_, nullptr);
    }
    return *this;
  }

  // The next value, or an empty optional once the body has returned.
  [[nodiscard, gnu::always_inline]] std::optional<Y> next();

  iterator begin();
  std::default_sentinel_t end() const noexcept { return {}; }

  // True once the body has returned or thrown (and for a moved-from generator).
  bool done() const noexcept { return fiber_.done(); }

  // Unwinds the body now (see fiber::close()); the generator is then exhausted.
  void close() { fiber_.close(); }

 private:
  // Runs the body to its next yield: true when a value is ready at *out_->value_.
  [[gnu::always_inline]] bool advance();
  // Out of line: advance() is inlined into every caller (fiber.hpp, detail::switch_into).
  [[noreturn, gnu::noinline, gnu::cold]] static void throw_no_value();

  fiber fiber_;
  // Lives on the fiber's stack: valid until the fiber is done.
  yielder<Y>* out_;
};

template <class Y>
class fiber_generator<Y>::iterator {
 public:
  using iterator_concept = std::input_iterator_tag;
  using value_type = Y;
  using difference_type = std::ptrdiff_t;

  iterator() = default;

  Y& operator*() const noexcept { return *gen_->out_->value_; }
  [[gnu::always_inline]] iterator& operator++() {
    gen_->advance();
    return *this;
  }
  void operator++(int) { ++*this; }

  friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
    return it.gen_ == nullptr || it.gen_->done();
  }

 private:
  friend class fiber_generator;
  explicit iterator(fiber_generator* gen) noexcept : gen_(gen) {}

  fiber_generator* gen_ = nullptr;
};

template <class Y>
inline std::optional<Y> fiber_generator<Y>::next() {
  if (!advance()) return std::nullopt;
  return std::optional<Y>(std::move(*out_->value_));
}

template <class Y>
typename fiber_generator<Y>::iterator fiber_generator<Y>::begin() {
  advance();
  return iterator(this);
}

template <class Y>
inline bool fiber_generator<Y>::advance() {
  if (fiber_.done()) return false;
  // Cleared so a suspend that did not come from our yielder is caught below.
  out_->value_ = nullptr;
  if (!fiber_.resume()) return false;
  if (out_->value_ == nullptr) [[unlikely]]
    throw_no_value();
  return true;
}

template <class Y>
void fiber_generator<Y>::throw_no_value() {
  throw std::logic_error(
      "corio::fiber_generator: the body suspended without yielding a value (a bare "
      "fiber::suspend())");
}

}  // namespace corio
