// Seed 003's os.fork() lesson, with corio::process: one call, two processes.
//
//     print('process (%s) start...' % os.getpid())
//     pid = os.fork()
//     if pid == 0:
//         print('I am child process (%s) and my parent is %s.' % (os.getpid(), os.getppid()))
//     else:
//         print('I (%s) just created a child process (%s).' % (os.getpid(), pid))
//
// (The seed passes os.getpid() twice and so names the child as its own parent; this
// prints the parent it meant.) Seed 004's wording: examples/fork_004.cpp.
//
// corio::process runs a callable in the forked child and _exit()s it afterwards, so the
// child never falls through into the parent's code (the classic fork mistake).
#include <unistd.h>

#include <corio/ipc/process.hpp>
#include <cstdio>

int main() {
  std::printf("process (%d) start...\n", getpid());
  corio::process child([] { std::printf("I am child process (%d) and my parent is %d.\n", getpid(), getppid()); });
  child.start();  // stdout is flushed first, so "start..." is printed once, not twice
  std::printf("I (%d) just created a child process (%d).\n", getpid(), child.pid());
  child.join();
  return *child.exitcode();
}
