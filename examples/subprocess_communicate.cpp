// Python's Popen.communicate: feed a child's stdin and collect its stdout, without threads.
//
//     p = subprocess.Popen(["sort"], stdin=PIPE, stdout=PIPE)
//     out, _ = p.communicate(b"3\n1\n2\n")
#include <corio/runtime/loop.hpp>
#include <corio/runtime/subprocess.hpp>
#include <cstdio>

namespace sp = corio::subprocess;

corio::task<int> sort_numbers() {
  sp::child sort = sp::spawn({"sort"}, sp::options{}.in(sp::stdio::pipe()).out(sp::stdio::pipe()));
  sp::result r = co_await sort.communicate("3\n1\n2\n");
  std::fputs(r.out.c_str(), stdout);
  std::printf("Exit code: %d\n", r.returncode);
  co_return r.returncode;
}

int main() {
  corio::loop lp;
  return lp.run(sort_numbers());
}
