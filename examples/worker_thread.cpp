// Seed 002's thread: a thread named WorkerThread that works for a second.
//
//     def worker():
//         print('thread %s is running...' % threading.current_thread().name)
//         time.sleep(1)
//         print('thread %s ended.' % threading.current_thread().name)
//
//     t = threading.Thread(target=worker, name='WorkerThread')
//     t.start()
//     t.join()
#include <corio/runtime/thread.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

void worker() {
  std::printf("thread %s is running...\n", corio::current_thread_name().c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the seed sleeps 1 s
  std::printf("thread %s ended.\n", corio::current_thread_name().c_str());
}

int main() {
  corio::thread t("WorkerThread", worker);
  t.start();
  t.join();
}
