// Seed 004's processes in a list: five processes started in a loop, then joined one by
// one.
//
//     def run_proc(name):
//         print 'child process {}({}) running...'.format(name, os.getpid())
//
//     def main():
//         print 'main process starting... {}'.format(os.getpid())
//         processes = []
//         for i in range(5):
//             p = multiprocessing.Process(target=run_proc, args=(str(i),))
//             processes.append(p)
//             print 'process {} will start'
//             p.start()
//         for p in processes:
//             p.join()
//         print 'processes end'
//
// (The seed forgot .format(i) on 'process {} will start' and prints the braces; this
// prints the number it meant.) The children's lines interleave with the parent's in any
// order; `processes end` comes after every join.
#include <corio/ipc/process.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

void run_proc(const std::string& name) { std::printf("child process %s(%d) running...\n", name.c_str(), getpid()); }

int main() {
  std::printf("main process starting... %d\n", getpid());
  std::vector<corio::process> processes;
  for (int i = 0; i < 5; ++i) {
    processes.emplace_back(run_proc, std::to_string(i));
    std::printf("process %d will start\n", i);
    processes.back().start();  // flushes stdout first: the child does not repeat the lines
  }
  int failed = 0;
  for (auto& p : processes) {
    p.join();
    failed += *p.exitcode() != 0;
  }
  std::printf("processes end\n");
  return failed;
}
