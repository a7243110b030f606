// Seed 002's thread pool: five tasks on a ThreadPoolExecutor of four workers count a
// shared number to 10 under a lock, so the count is printed once, in order.
//
//     lock = threading.Lock()
//     count = 0
//
//     def run_thread_with_lock():
//         global count
//         with lock:
//             while count < 10:
//                 count += 1
//                 print("%s, " % count, end='')
//
//     with ThreadPoolExecutor(max_workers=4) as executor:
//         for i in range(5):
//             executor.submit(run_thread_with_lock)
//
// The seed first runs the same loop without the lock and prints a scrambled count; in
// C++ that is a data race, undefined behaviour rather than a lesson, so it is left out.
// The `with` block is the pool's scope: its destructor waits for every submitted task.
#include <corio/runtime/thread_pool.hpp>

#include <cstdio>
#include <mutex>

std::mutex lock;
int count = 0;

void run_thread_with_lock() {
  std::lock_guard guard(lock);
  while (count < 10) {
    count += 1;
    std::printf("%d, ", count);
  }
}

int main() {
  {
    corio::thread_pool executor(4);
    for (int i = 0; i < 5; ++i) executor.submit(run_thread_with_lock);
  }  // waits for the five tasks, as leaving Python's `with` block does
  std::printf("\n");
}
