// Python's multiprocessing.Pipe lesson: one process sends ten urls, another receives them.
//
//     def proc_send(pipe, urls):
//         for url in urls:
//             pipe.send(url)
//     def proc_recv(pipe):
//         while True:
//             print('process {}: recv {}'.format(os.getpid(), pipe.recv()))
//
// The Python version's receiver never ends (recv blocks forever: the parent still holds
// the sending end). Here the receiver stops on its own: corio::process moves each end
// into its child only, so once the sender exits no process holds the sending end and the
// receiver's recv() throws corio::pipe_closed.
//
// Output order: on a terminal the two children's lines interleave. Into a pipe or a file
// (as tests/examples runs it) stdout is fully buffered and each child flushes when it
// ends; the sender ends before the receiver can see the end of the stream, so the
// sender's lines come first, then the receiver's, then "done".
#include <unistd.h>

#include <corio/ipc/pipe.hpp>
#include <corio/ipc/process.hpp>
#include <cstdio>
#include <string>
#include <vector>

void proc_send(corio::connection<std::string>& pipe, const std::vector<std::string>& urls) {
  std::printf("process %d is ready to send urls\n", getpid());
  for (const auto& url : urls) {
    pipe.send(url);
    std::printf("process %d: send %s\n", getpid(), url.c_str());
  }
}

void proc_recv(corio::connection<std::string>& pipe) {
  std::printf("process %d is ready to recv urls\n", getpid());
  try {
    for (;;) std::printf("process %d: recv %s\n", getpid(), pipe.recv().c_str());
  } catch (const corio::pipe_closed&) {
    std::printf("process %d: end of stream\n", getpid());
  }
}

int main() {
  auto [receiving_end, sending_end] = corio::make_pipe<std::string>(false);  // one-way
  std::vector<std::string> urls;
  for (int i = 0; i < 10; ++i) urls.push_back("url_" + std::to_string(i));

  corio::process process_send(proc_send, std::move(sending_end), urls);
  corio::process process_recv(proc_recv, std::move(receiving_end));
  // Start the sender first: its end then closes in this process (start() drops the
  // parent's copy), so the receiver, forked next, does not inherit it.
  process_send.start();
  process_recv.start();
  process_send.join();
  process_recv.join();
  std::printf("done\n");
  return *process_send.exitcode() + *process_recv.exitcode();
}
