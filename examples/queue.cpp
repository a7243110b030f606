// Seed 004's queue lesson (Python: multiprocessing.Queue), in its wording: two writers
// put urls, a reader gets them forever; the parent waits for the writers, stops the reader
// and says done. Writers' lines interleave in any order; `done` is always last.
//
//     def Proc_writer(q, urls):
//         print 'Process {} is writing...'.format(os.getpid())
//         for url in urls:
//             q.put(url)
//             print 'put {} to the Queue'.format(url)
//             time.sleep(random.random())
//
//     def Proc_reader(q):
//         print 'Process {} is reading...'.format(os.getpid())
//         while True:
//             url = q.get(True)
//             print 'get the {} from the Queue'.format(url)
//
// Seeds 000-003's version (A, B, C): examples/queue_abc.cpp.
#include <corio/ipc/process.hpp>
#include <corio/ipc/queue.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

void proc_writer(corio::queue<std::string> q, std::vector<std::string> urls) {
  std::printf("Process %d is writing...\n", ::getpid());
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  for (const auto& url : urls) {
    q.put(url);
    std::printf("put %s to the Queue\n", url.c_str());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 50));  // Python: random.random() s
  }
}

// Loops forever, like the Python reader; the parent terminates it. It flushes each line
// because SIGTERM gives stdio no chance to, and acknowledges each printed url so the parent
// never terminates it between a get and its print (a race the Python version has).
void proc_reader(corio::queue<std::string> q, corio::queue<int> printed) {
  std::printf("Process %d is reading...\n", ::getpid());
  for (;;) {
    std::string url = q.get(true);
    std::printf("get the %s from the Queue\n", url.c_str());
    std::fflush(stdout);
    printed.put(1);
  }
}

int main() {
  std::printf("main process %d is running...\n", ::getpid());
  std::fflush(stdout);
  corio::queue<std::string> q;  // created before the fork: every child shares it
  corio::queue<int> printed;
  const std::vector<std::string> urls_1{"url_1", "url_2", "url_3"};
  const std::vector<std::string> urls_2{"url_4", "url_5", "url_6"};
  corio::process process_1(proc_writer, q, urls_1);
  corio::process process_2(proc_writer, q, urls_2);
  corio::process process_3(proc_reader, q, printed);
  process_1.start();
  process_2.start();
  process_3.start();
  process_1.join();
  process_2.join();
  for (std::size_t i = 0; i < urls_1.size() + urls_2.size(); ++i) (void)printed.get(true, std::chrono::seconds(60));
  process_3.terminate();
  process_3.join();
  std::printf("done\n");
}
