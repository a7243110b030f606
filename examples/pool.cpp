// Python's multiprocessing.Pool, from the tutorial: a pool of 4 workers runs 5 tasks; tasks
// 0-3 start at once, task 4 waits until a worker is free.
//
//     def long_time_task(name):
//         print('Run task %s (%s)...' % (name, os.getpid()))
//         start = time.time()
//         time.sleep(random.random() * 3)
//         end = time.time()
//         print('Task %s runs %0.2f seconds.' % (name, (end - start)))
//
//     if __name__=='__main__':
//         print('Parent process %s.' % os.getpid())
//         p = Pool(4)
//         for i in range(5):
//             p.apply_async(long_time_task, args=(i,))
//         print('Waiting for all subprocesses done...')
//         p.close()
//         p.join()
//         print('All subprocesses done.')
#include <corio/ipc/pool.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

void long_time_task(int name) {
  std::printf("Run task %d (%d)...\n", name, static_cast<int>(::getpid()));
  std::fflush(stdout);  // the worker lives on: show the line now, not at its exit
  const auto start = std::chrono::steady_clock::now();
  // Python sleeps random() * 3 s; here 0.5-1 s: at least long enough that all four workers
  // have taken their first task before one is free again, so task 4 always waits for a
  // worker that ran an earlier task (tests/examples/pool.expected checks this).
  std::mt19937 gen(std::random_device{}());
  std::this_thread::sleep_for(std::chrono::duration<double>(std::uniform_real_distribution<double>(0.5, 1)(gen)));
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("Task %d runs %0.2f seconds.\n", name, took.count());
  std::fflush(stdout);
}

int main() {
  std::printf("Parent process %d.\n", static_cast<int>(::getpid()));
  std::fflush(stdout);  // before the fork: else every worker inherits the buffered line
  corio::pool p(4);
  for (int i = 0; i < 5; ++i) (void)p.apply_async(long_time_task, i);
  std::printf("Waiting for all subprocesses done...\n");
  std::fflush(stdout);
  p.close();
  p.join();
  std::printf("All subprocesses done.\n");
}
