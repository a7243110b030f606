#pragma once
// corio::remote_call — a function call packed into bytes in one process and run in a
// fork()ed worker of the same program: the request format of corio::pool and
// corio::executor, and the reply format that brings back a value or an exception.
//
// What may be called (checked at compile time where C++ can check it)
// - fn is a function pointer, a captureless lambda, or any trivially copyable callable;
//   it is copied byte for byte. Why that works: workers are fork()ed from the caller's
//   process, so code addresses are identical on both sides (ASLR randomises at exec, never
//   at fork). The corollary: fn must be code that was loaded when the workers started (not
//   a library dlopen()ed later), and a lambda must not capture pointers or references —
//   they would point at the parent's memory as it was at fork time. Capture plain values.
// - args are encoded with corio::codec (ipc/codec.hpp): pointers are refused at compile
//   time; strings, vectors, maps, user types with corio_fields all travel.
// - fn may be a coroutine returning corio::task<R>; the result is then R. Runners with a
//   loop (executor workers) run it concurrently with other calls; run_call runs one to
//   completion on a corio::loop of the calling thread (created on first need).
// - The result type R is encoded with corio::codec as well (void is allowed).
//
// Errors that come back
// - An exception escaping fn in the worker comes back as corio::remote_error, carrying the
//   demangled type name of the original exception and its what() ("std::invalid_argument:
//   bad x"). C++ has no registry of exception types, so corio keeps one: a type given to
//   register_remote_exception<E>() comes back as E itself, built from the message (below).
//   A result or an argument that the codec refuses at run time comes back as remote_error
//   too (encode_error / decode_error as the type).
// - corio::worker_lost: the worker process died (killed, crashed) while it had the call.
//
// Trust: requests carry a code address that the worker jumps to. Requests must only ever
// come from the program itself through memory or sockets private to it (corio's rings
// are: memfd, never a name in the file system). Never feed bytes from elsewhere to run_call.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "../coro/task.hpp"
#include "../runtime/loop.hpp"
#include "codec.hpp"

namespace corio {

// An exception that escaped a call in a worker process; what() is "type: message".
class remote_error : public std::runtime_error {
 public:
  remote_error(std::string type_name, std::string message)
      : std::runtime_error(type_name + ": " + message), type_(std::move(type_name)), message_(std::move(message)) {}
  // The demangled type of the original exception ("std::out_of_range"), or "unknown
  // exception" when it was not derived from std::exception.
  [[nodiscard]] const std::string& type_name() const noexcept { return type_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

 private:
  std::string type_;
  std::string message_;
};

// The worker process that ran (or held) a call died before it replied.
class worker_lost : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- remote exceptions by type ----------------------------------------------------------
// register_remote_exception<E>() makes an E thrown (or an exception derived from E) in a
// worker come back to get() as an E constructed from its what() text, so the caller
// catches it by type: `catch (const my_error& e)`. Unregistered types stay remote_error.
// Call it before the pool or executor starts its workers: a worker names the registered
// type it matched from the registry it inherited at fork (a derived exception is matched
// through its base); the caller rebuilds from its own registry, read when the reply
// arrives. E must be constructible from std::string or const char*. Thread-safe; at most
// 64 types (std::length_error beyond); registering a type twice is harmless.
template <class E>
void register_remote_exception();

namespace detail {

// remote_call.cpp. Appends unless a type of that name is already there. The registry is
// append-only and read without a lock, so a fork()ed child never inherits it locked.
void register_remote_exception_type(const std::type_info& type, bool (*matches)() noexcept,
                                    void (*raise)(const std::string&));
// Throws the registered type of that name with `message`; returns when none is registered.
void raise_registered(const std::string& type_name, const std::string& message);

template <class E>
bool current_exception_is() noexcept {
  try {
    throw;
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

template <class E>
[[noreturn]] void raise_remote(const std::string& message) {
  if constexpr (std::is_constructible_v<E, const std::string&>) {
    throw E(message);
  } else {
    throw E(message.c_str());
  }
}

template <class T>
struct unwrap_task {
  using type = T;
  static constexpr bool coroutine = false;
};
template <class T>
struct unwrap_task<task<T>> {
  using type = T;
  static constexpr bool coroutine = true;
};

}  // namespace detail

// The value a remote call of fn(args...) produces in the caller (task<R> unwrapped to R).
template <class F, class... Args>
using remote_result_t = typename detail::unwrap_task<std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>&...>>::type;

namespace detail {

// Request: [u8 kind][thunk address][fn bytes][codec(tuple<args...>)].
// Reply:   [u8 status][payload]: status 0 = codec(value) (nothing for void), 1 = codec of
//          the pair (type name, message).
enum class call_kind : std::uint8_t { plain = 0, coroutine = 1 };
enum class reply_status : std::uint8_t { value = 0, error = 1 };

using plain_thunk = void (*)(std::span<const std::byte> body, std::vector<std::byte>& reply);
using coroutine_thunk = task<void> (*)(std::span<const std::byte> body, std::vector<std::byte>& reply);

// The demangled type and what() of the exception being handled (in a catch block).
void describe_current_exception(std::string& type_name, std::string& message);

// Appends an error reply for the exception being handled.
inline void append_error_reply(std::vector<std::byte>& reply, std::size_t reply_start) noexcept {
  try {
    std::string type, message;
    describe_current_exception(type, message);
    reply.resize(reply_start);
    reply.push_back(std::byte{static_cast<std::uint8_t>(reply_status::error)});
    encode(std::pair<std::string, std::string>(type, message), reply);
  } catch (...) {
    // Out of memory while describing the error: an empty error pair still tells the caller.
    reply.resize(reply_start);
    reply.push_back(std::byte{static_cast<std::uint8_t>(reply_status::error)});
  }
}

// The callable, rebuilt from its bytes. Fn is trivially copyable, hence an implicit-lifetime
// type: copying its bytes into suitably aligned storage creates the object (C++20,
// [intro.object]); a lambda with captures has no default constructor to start from.
template <class Fn>
struct callable_bytes {
  alignas(Fn) std::byte storage[sizeof(Fn)];
  Fn& get() noexcept { return *std::launder(reinterpret_cast<Fn*>(storage)); }
};

template <class Fn, class ArgsTuple>
Fn& decode_call_body(std::span<const std::byte> body, callable_bytes<Fn>& fn, ArgsTuple& args) {
  if (body.size() < sizeof(Fn)) throw decode_error("remote call: request shorter than its callable");
  std::memcpy(fn.storage, body.data(), sizeof(Fn));
  decode(body.subspan(sizeof(Fn)), args);
  return fn.get();
}

template <class R>
void append_value_reply(std::vector<std::byte>& reply, const R* value) {
  reply.push_back(std::byte{static_cast<std::uint8_t>(reply_status::value)});
  if constexpr (!std::is_void_v<R>) encode(*value, reply);
}

template <class Fn, class... Args>
void run_plain(std::span<const std::byte> body, std::vector<std::byte>& reply) {
  const std::size_t start = reply.size();
  try {
    callable_bytes<Fn> bytes;
    std::tuple<Args...> args;
    Fn& fn = decode_call_body(body, bytes, args);
    using R = std::invoke_result_t<Fn&, Args&...>;
    if constexpr (std::is_void_v<R>) {
      std::apply(fn, args);
      append_value_reply<void>(reply, nullptr);
    } else {
      const R value = std::apply(fn, args);
      append_value_reply(reply, &value);
    }
  } catch (...) {
    append_error_reply(reply, start);
  }
}

// The body is decoded before the first suspension (run_call_async starts it at once), so
// the request bytes need only live until then.
template <class Fn, class... Args>
task<void> run_coroutine(std::span<const std::byte> body, std::vector<std::byte>& reply) {
  const std::size_t start = reply.size();
  try {
    callable_bytes<Fn> bytes;
    std::tuple<Args...> args;
    Fn& fn = decode_call_body(body, bytes, args);
    using R = typename unwrap_task<std::invoke_result_t<Fn&, Args&...>>::type;
    if constexpr (std::is_void_v<R>) {
      co_await std::apply(fn, args);
      append_value_reply<void>(reply, nullptr);
    } else {
      const R value = co_await std::apply(fn, args);
      append_value_reply(reply, &value);
    }
  } catch (...) {
    append_error_reply(reply, start);
  }
}

template <class F, class... Args>
void encode_call(std::vector<std::byte>& out, F&& fn, Args&&... args) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_trivially_copyable_v<Fn>,
                "remote call: fn must be a function pointer, a captureless lambda or a trivially "
                "copyable callable (capture plain values, never pointers or references)");
  static_assert(std::is_invocable_v<Fn&, std::decay_t<Args>&...>, "remote call: fn cannot be called with these args");
  using Raw = std::invoke_result_t<Fn&, std::decay_t<Args>&...>;
  constexpr bool coroutine = unwrap_task<Raw>::coroutine;
  const std::size_t start = out.size();
  out.push_back(std::byte{static_cast<std::uint8_t>(coroutine ? call_kind::coroutine : call_kind::plain)});
  std::uintptr_t thunk = 0;
  if constexpr (coroutine) {
    thunk = reinterpret_cast<std::uintptr_t>(&run_coroutine<Fn, std::decay_t<Args>...>);
  } else {
    thunk = reinterpret_cast<std::uintptr_t>(&run_plain<Fn, std::decay_t<Args>...>);
  }
  const auto* thunk_bytes = reinterpret_cast<const std::byte*>(&thunk);
  out.insert(out.end(), thunk_bytes, thunk_bytes + sizeof thunk);
  // Decayed first: a function named without & (F = int(&)(int)) must travel as its
  // address; the bytes at the address of the reference would be the function's code.
  const Fn callable(std::forward<F>(fn));
  const auto* fn_bytes = reinterpret_cast<const std::byte*>(std::addressof(callable));
  out.insert(out.end(), fn_bytes, fn_bytes + sizeof(Fn));
  try {
    encode(std::tuple<const std::decay_t<Args>&...>(args...), out);
  } catch (...) {
    out.resize(start);
    throw;
  }
}

struct decoded_request {
  call_kind kind;
  std::uintptr_t thunk;
  std::span<const std::byte> body;
};

inline decoded_request split_request(std::span<const std::byte> request) {
  constexpr std::size_t head = 1 + sizeof(std::uintptr_t);
  if (request.size() < head) throw decode_error("remote call: request shorter than its header");
  decoded_request d{};
  d.kind = static_cast<call_kind>(request[0]);
  if (d.kind != call_kind::plain && d.kind != call_kind::coroutine)
    throw decode_error("remote call: unknown request kind");
  std::memcpy(&d.thunk, request.data() + 1, sizeof d.thunk);
  d.body = request.subspan(head);
  return d;
}

// Runs one request to completion on this thread and appends its reply; a coroutine call
// runs on this thread's corio::loop (one is created on first need, and kept). Must not be
// called from inside a running loop. Never throws for a failing call: the failure is the
// reply.
inline void run_call(std::span<const std::byte> request, std::vector<std::byte>& reply) {
  const std::size_t start = reply.size();
  try {
    const decoded_request d = split_request(request);
    if (d.kind == call_kind::plain) {
      reinterpret_cast<plain_thunk>(d.thunk)(d.body, reply);
    } else {
      // The loop outlives every call on this thread: creating an io_uring per call would
      // cost more than most calls.
      thread_local loop call_loop;
      call_loop.run(reinterpret_cast<coroutine_thunk>(d.thunk)(d.body, reply));
    }
  } catch (...) {
    append_error_reply(reply, start);
  }
}

// Runs one request inside a loop; a coroutine call suspends with it. `request` must stay
// valid until this task's first suspension, `reply` until it ends.
inline task<void> run_call_async(std::span<const std::byte> request, std::vector<std::byte>& reply) {
  const std::size_t start = reply.size();
  decoded_request d{};
  try {
    d = split_request(request);
  } catch (...) {
    append_error_reply(reply, start);
    co_return;
  }
  if (d.kind == call_kind::plain) {
    reinterpret_cast<plain_thunk>(d.thunk)(d.body, reply);
  } else {
    co_await reinterpret_cast<coroutine_thunk>(d.thunk)(d.body, reply);
  }
}

// Turns a reply into the call's value, or throws remote_error / decode_error.
template <class R>
R take_reply(std::span<const std::byte> reply) {
  if (reply.empty()) throw decode_error("remote call: empty reply");
  const auto status = static_cast<reply_status>(reply[0]);
  const auto payload = reply.subspan(1);
  if (status == reply_status::error) {
    if (payload.empty()) throw remote_error("unknown exception", "(no memory to describe it)");
    auto [type, message] = decode<std::pair<std::string, std::string>>(payload);
    raise_registered(type, message);
    throw remote_error(std::move(type), std::move(message));
  }
  if (status != reply_status::value) throw decode_error("remote call: unknown reply status");
  if constexpr (std::is_void_v<R>) {
    if (!payload.empty()) throw decode_error("remote call: a void call replied with a value");
  } else {
    return decode<R>(payload);
  }
}

}  // namespace detail

template <class E>
void register_remote_exception() {
  static_assert(std::is_constructible_v<E, const std::string&> || std::is_constructible_v<E, const char*>,
                "corio::register_remote_exception<E>: E must be constructible from std::string or const char* "
                "(the caller rebuilds it from the message)");
  detail::register_remote_exception_type(typeid(E), &detail::current_exception_is<E>, &detail::raise_remote<E>);
}

}  // namespace corio
