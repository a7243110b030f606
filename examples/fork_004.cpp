// Seed 004's fork lesson, in its own wording: one call, two processes, each told apart by
// what fork returned.
//
//     def main():
//         print 'current Process {} start...'.format(os.getpid())
//         pid = os.fork()
//         if pid < 0:
//             print 'fork error!'
//             exit(1)
//         elif pid == 0:
//             print 'child Process {} starting... , and my parent process is {}'.format(
//                 os.getpid(), os.getppid())
//         else:
//             print 'I({}) created the child({})'.format(os.getpid(), pid)
//
// corio::process runs the child's branch as a callable and _exit()s the child after it,
// so the child never falls through into the parent's code; a failed fork is an exception
// (std::system_error naming the cause), the `pid < 0` branch.
#include <corio/ipc/process.hpp>

#include <unistd.h>

#include <cstdio>
#include <system_error>

int main() {
  std::printf("current Process %d start...\n", getpid());
  corio::process child([] {
    std::printf("child Process %d starting... , and my parent process is %d\n", getpid(), getppid());
  });
  try {
    child.start();  // stdout is flushed first, so "start..." is printed once, not twice
  } catch (const std::system_error& e) {
    std::printf("fork error! (%s)\n", e.what());
    return 1;
  }
  std::printf("I(%d) created the child(%d)\n", getpid(), child.pid());
  child.join();
  return *child.exitcode();
}
