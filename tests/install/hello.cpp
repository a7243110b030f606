// An out-of-tree program built only from what `meson install` put under the prefix,
// found through pkg-config: proves the installed headers are complete and self-consistent
// and that libcorio (the fiber code) and its Boost.Context dependency link.
// tests/install/run.sh checks its exact output.
#include <corio/coro/fiber_generator.hpp>
#include <corio/coro/generator.hpp>
#include <corio/coro/sync_wait.hpp>
#include <corio/coro/task.hpp>

#include <cstdio>
#include <optional>
#include <string>

namespace {

// Python: def jumping_range(n): i = 0; while i < n: jump = yield i; i += jump or 1
corio::generator<int, int> jumping_range(int n) {
  int i = 0;
  while (i < n) {
    std::optional<int> jump = co_yield i;
    i += jump ? *jump : 1;
  }
}

corio::task<int> answer() { co_return 42; }

corio::task<int> twice_the_answer() { co_return 2 * co_await answer(); }

}  // namespace

int main() {
  std::string line = "hello corio: jumping_range";
  auto gen = jumping_range(10);
  // 0, then send(3) jumps to 3, then next() walks 4..9.
  for (auto v = gen.next(); v; v = (*v == 0) ? gen.send(3) : gen.next()) {
    line += ' ' + std::to_string(*v);
  }
  line += "; answer " + std::to_string(corio::sync_wait(twice_the_answer()));
  // A stackful generator: its fiber code lives in libcorio, not in the headers.
  corio::fiber_generator<int> squares([](corio::yielder<int>& out) {
    for (int i = 1; i <= 3; ++i) out.yield(i * i);
  });
  line += "; squares";
  for (int v : squares) line += ' ' + std::to_string(v);
  std::puts(line.c_str());
  return 0;
}
