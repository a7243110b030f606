// Python's multiprocessing.Process lesson: start a child running a function, wait for it.
//
//     def run_proc(name):
//         print('Run child process %s (%s)...' % (name, os.getpid()))
//
//     print('Parent process %s.' % os.getpid())
//     p = Process(target=run_proc, args=('test',))
//     print('Child process will start.')
//     p.start()
//     p.join()
//     print('Child process end.')
#include <unistd.h>

#include <corio/ipc/process.hpp>
#include <cstdio>
#include <string>

void run_proc(const std::string& name) { std::printf("Run child process %s (%d)...\n", name.c_str(), getpid()); }

int main() {
  std::printf("Parent process %d.\n", getpid());
  corio::process p(run_proc, std::string("test"));  // the argument is copied into p
  std::printf("Child process will start.\n");
  p.start();
  p.join();
  std::printf("Child process end.\n");
  return *p.exitcode();
}
