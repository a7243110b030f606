#pragma once
// What `co_await x` produces, computed without a coroutine: the awaiter (member or free
// operator co_await, else x itself) and the type of its await_resume().

#include <concepts>
#include <coroutine>
#include <type_traits>
#include <utility>

namespace corio::detail {

template <class A>
concept has_member_co_await = requires(A&& a) { std::forward<A>(a).operator co_await(); };
template <class A>
concept has_free_co_await = requires(A&& a) { operator co_await(std::forward<A>(a)); };

template <class A>
decltype(auto) get_awaiter(A&& a) {
  if constexpr (has_member_co_await<A>)
    return std::forward<A>(a).operator co_await();
  else if constexpr (has_free_co_await<A>)
    return operator co_await(std::forward<A>(a));
  else
    return std::forward<A>(a);
}

template <class A>
using awaiter_t = decltype(get_awaiter(std::declval<A>()));

template <class A>
using await_result_t = decltype(std::declval<awaiter_t<A>&>().await_resume());

template <class A>
concept awaitable = requires { typename await_result_t<A>; };

// The type a combinator hands back for one child: references to temporaries decay to
// values, lvalue references stay references, void becomes std::monostate in tuples.
template <class A>
using stored_result_t = std::conditional_t<std::is_lvalue_reference_v<await_result_t<A>>,
                                           await_result_t<A>,
                                           std::remove_cvref_t<await_result_t<A>>>;

}  // namespace corio::detail
