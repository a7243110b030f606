// A queue and a pipe handed to a program that was NOT fork()ed from their creator
// (corio/ipc/handoff.hpp; its other half is examples/handoff_client.cpp).
//
//     handoff_server listen /tmp/handoff.sock     # then, from any shell:
//     handoff_client connect /tmp/handoff.sock
//
//     handoff_server spawn [CLIENT]               # starts CLIENT (default: the
//                                                 # handoff_client next to this program)
//
// Either way the server creates a corio::queue<std::string> and a pipe, hands the queue and
// one end of the pipe to the client — over the Unix socket the client connected to, or by
// inheritance to the client it starts through corio::subprocess (corio::child_handoff) —
// then puts fruit names in the queue one by one, and reads the client's answer to each
// through the pipe. The client has its own copy of neither object: it maps the server's
// queue memory and holds the other end of the server's socketpair.
//
// The two programs take turns (ready, put, answer, put, ...) and write whole lines, so
// their lines come out in one order even when they share a terminal or a pipe.
#include <corio/ipc/handoff.hpp>
#include <corio/runtime/loop.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

// Waits for the client's "ready", puts each fruit, then prints the client's answer to it;
// "end" tells the client to stop.
void converse(corio::queue<std::string>& q, corio::connection<std::string>& answers) {
  std::printf("server: the client is %s\n", answers.recv().c_str());
  for (const char* fruit : {"apple", "banana", "cherry"}) {
    std::printf("server: put %s\n", fruit);
    q.put(fruit);
    std::printf("server: the client answered %s\n", answers.recv().c_str());
  }
  q.put("end");
  try {
    (void)answers.recv();
  } catch (const corio::pipe_closed&) {
    std::printf("server: the client closed its end of the pipe\n");
  }
}

int listen_on(const std::string& path) {
  corio::loop lp;
  auto listener = corio::unix_listener::bind(corio::address::parse("unix:" + path));
  std::printf("server: listening on %s\n", path.c_str());
  corio::unix_stream client = lp.run([&]() -> corio::task<corio::unix_stream> { co_return co_await listener.accept(); }());
  listener.close();  // one client; removes the socket file

  corio::queue<std::string> q(16);
  auto [answers, theirs] = corio::make_pipe<std::string>();
  corio::send_handle(client, q);
  corio::send_handle(client, theirs);
  theirs.close();  // only the client holds that end now: its exit ends our stream
  std::printf("server: handed a queue<std::string> and a pipe end to the client\n");
  converse(q, answers);
  return 0;
}

int spawn(const std::string& client_program) {
  corio::queue<std::string> q(16);
  auto [answers, theirs] = corio::make_pipe<std::string>();
  corio::child_handoff handoff;
  handoff.send(q);
  handoff.send(theirs);
  std::printf("server: starting %s with a queue<std::string> and a pipe end\n",
              std::filesystem::path(client_program).filename().c_str());
  corio::subprocess::child client = handoff.spawn({client_program, "inherited"});
  theirs.close();
  converse(q, answers);
  corio::loop lp;
  std::printf("server: the client exited with status %d\n", lp.run(client.wait()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Line by line even into a pipe: a spawned client writes to the same stdout.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "listen") return listen_on(args[1]);
    if (args.size() <= 2 && !args.empty() && args[0] == "spawn") {
      const auto next_to_me = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "handoff_client";
      return spawn(args.size() == 2 ? args[1] : next_to_me.string());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_server: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: handoff_server listen SOCKET_PATH | handoff_server spawn [CLIENT]\n");
  return 2;
}
