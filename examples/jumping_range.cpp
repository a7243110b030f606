// The seed's jumping_range: a generator whose caller can make it jump with send().
//
//   Python                          corio
//   jump = yield index              std::optional<int> jump = co_yield index;
//   next(itr)                       itr.next()
//   itr.send(2)                     itr.send(2)
//
// Prints 0, 2, 3, 2 (one per line).
#include <corio/coro/generator.hpp>

#include <cstdio>
#include <optional>

corio::generator<int, int> jumping_range(int n) {
  int index = 0;
  while (index < n) {
    // The value passed to send() arrives here; next() leaves it empty.
    std::optional<int> jump = co_yield index;
    index += jump.value_or(1);
  }
}

int main() {
  auto itr = jumping_range(5);
  std::printf("%d\n", *itr.next());
  std::printf("%d\n", *itr.send(2));
  std::printf("%d\n", *itr.next());
  std::printf("%d\n", *itr.send(-1));
}
