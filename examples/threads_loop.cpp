// The first threading program of the tutorials (seeds 000 and 001): the main thread starts
// a thread named LoopThread, which counts to 5, and waits for it.
//
//     def loop():
//         print('thread %s is running...' % threading.current_thread().name)
//         n = 0
//         while n < 5:
//             n = n + 1
//             print('thread %s >>> %s' % (threading.current_thread().name, n))
//             time.sleep(1)
//         print('thread %s ended.' % threading.current_thread().name)
//
//     print('thread %s is running...' % threading.current_thread().name)
//     t = threading.Thread(target=loop, name='LoopThread')
//     t.start()
//     t.join()
//     print('thread %s ended.' % threading.current_thread().name)
//
// corio::thread carries the name; corio::current_thread_name() is
// threading.current_thread().name ("MainThread" for the main thread). The kernel knows
// the name too: run it and look with `top -H` or `ps -L`.
#include <corio/runtime/thread.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

void loop() {
  std::printf("thread %s is running...\n", corio::current_thread_name().c_str());
  int n = 0;
  while (n < 5) {
    n = n + 1;
    std::printf("thread %s >>> %d\n", corio::current_thread_name().c_str(), n);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the seed sleeps 1 s
  }
  std::printf("thread %s ended.\n", corio::current_thread_name().c_str());
}

int main() {
  std::printf("thread %s is running...\n", corio::current_thread_name().c_str());
  corio::thread t("LoopThread", loop);
  t.start();
  t.join();
  std::printf("thread %s ended.\n", corio::current_thread_name().c_str());
}
