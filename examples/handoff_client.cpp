// The other half of examples/handoff_server.cpp: receives the server's queue and pipe end
// and uses them as if it had been fork()ed from the server — which it was not.
//
//     handoff_client connect SOCKET_PATH   # a separately started program: over the socket
//     handoff_client inherited             # started by `handoff_server spawn`: the socket
//                                          # is an inherited fd named by CORIO_HANDOFF_FD
//
// It gets fruit names from the queue until "end" and answers each through the pipe with
// the name in capitals. A receive that does not get a corio::queue<std::string> (another
// element type, a file instead of shared memory, a peer that is not corio) fails with
// corio::handoff_error saying what was wrong.
#include <corio/ipc/handoff.hpp>
#include <corio/runtime/loop.hpp>

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

namespace {

int serve(const corio::unix_stream& server) {
  auto q = corio::receive_handle<corio::queue<std::string>>(server);
  auto answers = corio::receive_handle<corio::connection<std::string>>(server);
  std::printf("client: received a queue<std::string> and a pipe end\n");
  answers.send("ready");
  for (std::string fruit = q.get(); fruit != "end"; fruit = q.get()) {
    std::printf("client: got %s\n", fruit.c_str());
    for (char& c : fruit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    answers.send(fruit);
  }
  std::printf("client: got end, closing the pipe\n");
  return 0;  // the pipe end closes with the program
}

}  // namespace

int main(int argc, char** argv) {
  // Line by line even into a pipe, each line before the answer that follows it: a server
  // that started this program prints to the same stdout once it has the answer.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "connect") {
      corio::loop lp;
      corio::unix_stream server = lp.run(corio::unix_stream::connect(corio::address::parse("unix:" + args[1])));
      return serve(server);
    }
    if (args.size() == 1 && args[0] == "inherited") return serve(corio::handoff_from_parent());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "handoff_client: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: handoff_client connect SOCKET_PATH | handoff_client inherited\n");
  return 2;
}
