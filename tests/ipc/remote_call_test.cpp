// remote_call: requests and replies round-trip for plain and coroutine callables, values,
// void, exceptions (type name + message), corrupt requests, and a call run in a fork()ed
// child.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"

#include <corio/coro/task.hpp>
#include <corio/ipc/remote_call.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using corio::remote_error;
namespace d = corio::detail;
using corio_test::bytes_of;
using corio_test::exit_status;
using corio_test::fork_child;
using corio_test::raw_pipe;

namespace {

int add(int a, int b) { return a + b; }
void nothing(int) {}
std::string shout(std::string s) {
  for (char& c : s) c = static_cast<char>(c - ('a' <= c && c <= 'z' ? 32 : 0));
  return s;
}
int fails(int x) { throw std::invalid_argument("bad x " + std::to_string(x)); }
int throws_int(int) { throw 7; }
corio::task<int> slow_square(int x) {
  co_await corio::sleep_for(1ms);
  co_return x * x;
}

template <class R, class F, class... Args>
R call_here(F fn, Args... args) {
  std::vector<std::byte> request, reply;
  d::encode_call(request, fn, args...);
  d::run_call(request, reply);
  return d::take_reply<R>(reply);
}

}  // namespace

TEST_CASE("plain functions, lambdas and trivially copyable captures round-trip") {
  CHECK(call_here<int>(&add, 2, 40) == 42);
  CHECK(call_here<std::string>(&shout, std::string("hello")) == "HELLO");
  call_here<void>(&nothing, 1);
  int base = 100;  // not const: a const int would not need capturing at all
  CHECK(call_here<int>([base](int x) { return base + x; }, 5) == 105);
  auto sum = [](std::map<std::string, int> m) {
    int s = 0;
    for (auto& [k, v] : m) s += v * static_cast<int>(k.size());
    return s;
  };
  CHECK(call_here<int>(sum, std::map<std::string, int>{{"a", 1}, {"bb", 2}}) == 5);
  static_assert(std::is_same_v<corio::remote_result_t<decltype(&slow_square), int>, int>);
}

TEST_CASE("a function named without & travels as its address, not as its code bytes") {
  std::vector<std::byte> request, reply;
  d::encode_call(request, add, 2, 40);  // F = int(&)(int, int): executor::submit(key, add, ...)
  d::run_call(request, reply);
  CHECK(d::take_reply<int>(reply) == 42);
  std::vector<std::byte> by_pointer;
  d::encode_call(by_pointer, &add, 2, 40);
  CHECK(request == by_pointer);
}

TEST_CASE("an exception comes back as remote_error with its type name and message") {
  try {
    (void)call_here<int>(&fails, 3);
    FAIL("no exception");
  } catch (const remote_error& e) {
    CHECK(e.type_name() == "std::invalid_argument");
    CHECK(e.message() == "bad x 3");
    CHECK(std::string(e.what()) == "std::invalid_argument: bad x 3");
  }
  try {
    (void)call_here<int>(&throws_int, 0);
    FAIL("no exception");
  } catch (const remote_error& e) {
    CHECK(e.type_name() == "int");
    CHECK(e.message() == "(not a std::exception)");
  }
}

TEST_CASE("coroutine callables run through sync_wait in run_call and inside a loop in run_call_async") {
  CHECK(call_here<int>(&slow_square, 9) == 81);
  std::vector<std::byte> request, reply;
  d::encode_call(request, &slow_square, 12);
  corio::loop lp;
  auto main = [&]() -> corio::task<int> {
    co_await d::run_call_async(request, reply);
    co_return d::take_reply<int>(reply);
  };
  CHECK(lp.run(main()) == 144);
}

TEST_CASE("corrupt requests and replies fail with decode_error, never a jump") {
  std::vector<std::byte> reply;
  d::run_call(std::vector<std::byte>{std::byte{1}}, reply);  // too short
  CHECK_THROWS_WITH_AS(d::take_reply<int>(reply), doctest::Contains("decode_error"), remote_error);
  reply.clear();
  std::vector<std::byte> request;
  d::encode_call(request, &add, 1, 2);
  request[0] = std::byte{9};  // unknown kind
  d::run_call(request, reply);
  CHECK_THROWS_AS(d::take_reply<int>(reply), remote_error);
  // A truncated argument tuple is reported by the worker side, not executed.
  request.clear();
  reply.clear();
  d::encode_call(request, &add, 1, 2);
  request.pop_back();
  d::run_call(request, reply);
  CHECK_THROWS_WITH_AS(d::take_reply<int>(reply), doctest::Contains("decode_error"), remote_error);
  CHECK_THROWS_AS(d::take_reply<int>(std::vector<std::byte>{}), corio::decode_error);
  CHECK_THROWS_AS(d::take_reply<int>(std::vector<std::byte>{std::byte{5}}), corio::decode_error);
}

TEST_CASE("a request built in the parent runs in a fork()ed child") {
  std::vector<std::byte> request;
  d::encode_call(request, [](std::string s, int n) { return shout(s) + std::to_string(n); }, std::string("abc"), 7);
  raw_pipe out;
  const pid_t pid = fork_child([&] {
    std::vector<std::byte> reply;
    d::run_call(request, reply);
    const auto n = ::write(out.write_end(), reply.data(), reply.size());
    return n == static_cast<ssize_t>(reply.size()) ? 0 : 1;
  });
  out.close_write();
  const std::string reply = out.read_all();
  REQUIRE(!reply.empty());
  CHECK(d::take_reply<std::string>(bytes_of(reply)) == "ABC7");
  CHECK(exit_status(pid) == 0);
}
