// The other program of tests/ipc/handoff_test.cpp: started through corio::child_handoff
// (an exec'd program, never a fork of the test), it takes the handles its parent sent and
// uses them. Modes (argv[1]):
//   use     receives a queue<std::string>, a connection<std::string> and a shm_region; gets
//           values until "end", answers each through the connection as "got <value>",
//           writes "helper was here" at the start of the region, then sends "done".
//   expect-int-queue  receives a queue<int> (the parent sent a queue<std::string>) and
//           prints the handoff_error's message to stdout; exit 0 when it was refused.
//   stall-in-get  receives a queue<stalling_value> and a connection<std::string>, then
//           gets a value and stops in the middle of decoding it (inside the slot's claim),
//           after sending "stalled in get, pid N"; it waits there until it is killed.
//   large   receives two queue<std::string>s, requests and replies; gets one value from
//           requests (4 MiB: through the value arena), checks it is large_value(4 MiB, 0)
//           and puts large_value(its size + 1, 1) on replies.
// Exit status: 0 done, 1 a check failed (message on stderr).
#include "handoff_test_types.hpp"

#include <corio/ipc/handoff.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

namespace {

int use() {
  corio::unix_stream parent = corio::handoff_from_parent();
  auto q = corio::receive_handle<corio::queue<std::string>>(parent);
  auto c = corio::receive_handle<corio::connection<std::string>>(parent);
  auto r = corio::receive_handle<corio::shm_region>(parent);
  for (std::string v = q.get(); v != "end"; v = q.get()) c.send("got " + v);
  const char text[] = "helper was here";
  std::memcpy(r.data(), text, sizeof text);
  c.send("done");
  return 0;
}

int expect_int_queue() {
  corio::unix_stream parent = corio::handoff_from_parent();
  try {
    (void)corio::receive_handle<corio::queue<int>>(parent);
  } catch (const corio::handoff_error& e) {
    std::printf("%s\n", e.what());
    return 0;
  }
  std::fprintf(stderr, "handoff_helper: a queue<std::string> was accepted as a queue<int>\n");
  return 1;
}

int stall_in_get() {
  corio::unix_stream parent = corio::handoff_from_parent();
  auto q = corio::receive_handle<corio::queue<corio_test::stalling_value>>(parent);
  auto c = corio::receive_handle<corio::connection<std::string>>(parent);
  corio_test::stall_while_decoding = [&] {
    c.send("stalled in get, pid " + std::to_string(::getpid()));
    for (;;) ::pause();
  };
  (void)q.get();
  std::fprintf(stderr, "handoff_helper: the get did not stall\n");
  return 1;
}

int large() {
  corio::unix_stream parent = corio::handoff_from_parent();
  auto requests = corio::receive_handle<corio::queue<std::string>>(parent);
  auto replies = corio::receive_handle<corio::queue<std::string>>(parent);
  const std::string got = requests.get(true, std::chrono::seconds(10));
  if (got != corio_test::large_value(std::size_t{4} << 20, 0)) {
    std::fprintf(stderr, "handoff_helper: the large value arrived as %zu other bytes\n", got.size());
    return 1;
  }
  replies.put(corio_test::large_value(got.size() + 1, 1));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "use") return use();
    if (mode == "expect-int-queue") return expect_int_queue();
    if (mode == "stall-in-get") return stall_in_get();
    if (mode == "large") return large();
    std::fprintf(stderr, "usage: handoff_helper use|expect-int-queue|stall-in-get|large\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_helper: %s\n", e.what());
    return 1;
  }
}
