// Seed 004's process pool: Pool(processes=3) runs five calls of run_proc, at most three
// at a time, each in one of the three worker processes.
//
//     def run_proc(name):
//         print 'child process {}({}) running...'.format(name, os.getpid())
//
//     def main():
//         print 'main process starting... {}'.format(os.getpid())
//         processes = Pool(processes=3)
//         for i in range(5):
//             processes.apply_async(run_proc, (str(i),))
//         processes.close()
//         processes.join()
//         print 'processes end'
//
// Seed 003's Pool(4) with five timed tasks: examples/pool.cpp.
#include <corio/ipc/pool.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>

void run_proc(const std::string& name) {
  std::printf("child process %s(%d) running...\n", name.c_str(), getpid());
  std::fflush(stdout);  // the worker lives on: show the line now, not at its exit
}

int main() {
  std::printf("main process starting... %d\n", getpid());
  std::fflush(stdout);  // before the fork: else every worker inherits the buffered line
  corio::pool processes(3);
  for (int i = 0; i < 5; ++i) (void)processes.apply_async(run_proc, std::to_string(i));
  processes.close();
  processes.join();
  std::printf("processes end\n");
}
