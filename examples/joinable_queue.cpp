// Python's JoinableQueue: three worker processes square numbers; the parent puts ten
// tasks and join() returns once every one of them had its task_done().
//
//     def worker(tasks, results):
//         while True:
//             n = tasks.get()
//             results.put(n * n)
//             tasks.task_done()
//
//     tasks, results = JoinableQueue(), Queue()
//     for _ in range(3): Process(target=worker, args=(tasks, results), daemon=True).start()
//     for n in range(10): tasks.put(n)
//     tasks.join()
//
// Each worker puts its result before its task_done, so after join() all ten results are
// in the results queue. close() then ends the workers (their get throws queue_closed).
#include <corio/ipc/joinable_queue.hpp>
#include <corio/ipc/process.hpp>
#include <corio/ipc/queue.hpp>

#include <cstdio>
#include <vector>

void worker(corio::joinable_queue<int> tasks, corio::queue<int> results) {
  try {
    for (;;) {
      const int n = tasks.get();
      results.put(n * n);
      tasks.task_done();
    }
  } catch (const corio::queue_closed&) {
  }
}

int main() {
  corio::joinable_queue<int> tasks;  // created before the fork: every worker shares it
  corio::queue<int> results;
  std::vector<corio::process> workers;
  for (int i = 0; i < 3; ++i) workers.emplace_back(worker, tasks, results);
  for (auto& w : workers) w.start();

  for (int n = 0; n < 10; ++n) tasks.put(n);
  std::printf("put 10 tasks\n");
  tasks.join();  // every task_done arrived
  std::printf("join returned, unfinished tasks: %llu\n", static_cast<unsigned long long>(tasks.unfinished_tasks()));

  int sum = 0;
  for (int i = 0; i < 10; ++i) sum += results.get(false);  // all there: no waiting needed
  std::printf("sum of the squares of 0..9: %d\n", sum);

  tasks.close();
  for (auto& w : workers) w.join();
  std::printf("workers ended\n");
}
