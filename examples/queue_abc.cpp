// The queue lesson of seeds 000-003: one process writes A, B, C into a queue, another
// reads them forever; the parent waits for the writer and terminates the reader.
//
//     def write(q):
//         print('Process to write: %s' % os.getpid())
//         for value in ['A', 'B', 'C']:
//             print('Put %s to queue...' % value)
//             q.put(value)
//             time.sleep(random.random())
//
//     def read(q):
//         print('Process to read: %s' % os.getpid())
//         while True:
//             value = q.get(True)
//             print('Get %s from queue.' % value)
//
//     q = Queue()
//     pw = Process(target=write, args=(q,))
//     pr = Process(target=read, args=(q,))
//     pw.start()
//     pr.start()
//     pw.join()
//     pr.terminate()
//
// The Python writer sleeps a random time after each put and hopes the reader prints in
// the meantime; here it waits for the reader to say it printed (a second queue), so the
// lines come in the seed's order every time and the parent never terminates the reader
// between a get and its print. (write and read are named proc_write and proc_read: C++
// already has POSIX write and read.) Seed 004's two writers and `done`: examples/queue.cpp.
#include <corio/ipc/process.hpp>
#include <corio/ipc/queue.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

void proc_write(corio::queue<std::string> q, corio::queue<int> printed) {
  std::printf("Process to write: %d\n", ::getpid());
  for (const char* value : {"A", "B", "C"}) {
    std::printf("Put %s to queue...\n", value);
    std::fflush(stdout);
    q.put(value);
    (void)printed.get(true, std::chrono::seconds(60));  // Python: time.sleep(random.random())
  }
}

// Loops forever; the parent terminates it. Each line is flushed because SIGTERM gives
// stdio no chance to.
void proc_read(corio::queue<std::string> q, corio::queue<int> printed) {
  std::printf("Process to read: %d\n", ::getpid());
  std::fflush(stdout);
  for (;;) {
    const std::string value = q.get(true);
    std::printf("Get %s from queue.\n", value.c_str());
    std::fflush(stdout);
    printed.put(1);
  }
}

int main() {
  corio::queue<std::string> q;  // created before the fork: both children share it
  corio::queue<int> printed;
  corio::process pw(proc_write, q, printed);
  corio::process pr(proc_read, q, printed);
  pw.start();
  pr.start();
  pw.join();
  pr.terminate();  // the reader loops forever: it can only be stopped
  pr.join();
  return *pw.exitcode();
}
