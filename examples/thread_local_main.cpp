// Seed 002's thread-local variable: the main thread and a worker each set the same
// thread-local name and each reads back its own.
//
//     tl = threading.local()
//
//     def worker(name):
//         tl.name = name
//         time.sleep(3)
//         print("in thread:", tl.name)
//
//     t = threading.Thread(target=worker, args=("hello",), name='Thread-A')
//     t.start()
//     tl.name = 'world'
//     print("in main:", tl.name)
//
// The worker sleeps 0.3 s (the seed: 3 s), so the main thread prints first. Python waits
// for the thread at exit; here t's destructor does.
#include <corio/runtime/thread.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

thread_local std::string name;  // Python: tl = threading.local(); tl.name

void worker(const std::string& n) {
  name = n;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::printf("in thread: %s\n", name.c_str());
}

int main() {
  corio::thread t("Thread-A", worker, std::string("hello"));
  t.start();
  name = "world";
  std::printf("in main: %s\n", name.c_str());
  std::fflush(stdout);
}
