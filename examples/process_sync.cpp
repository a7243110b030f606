// Python's multiprocessing.Value, Lock, Event and Barrier across processes, and one thing
// Python cannot do: a Lock whose holder was SIGKILLed is handed on ("owner died") instead
// of deadlocking every other process forever.
//
//     counter = Value('i', 0)                          # with its lock
//     def work():
//         for _ in range(10000):
//             with counter.get_lock(): counter.value += 1
//     ps = [Process(target=work) for _ in range(4)]
//     ... start, join ...
//     print('counter =', counter.value)               # 40000
#include <unistd.h>

#include <corio/ipc/process.hpp>
#include <corio/ipc/process_barrier.hpp>
#include <corio/ipc/process_event.hpp>
#include <corio/ipc/process_mutex.hpp>
#include <corio/ipc/shared_value.hpp>
#include <cstdio>
#include <vector>

int main() {
  // Value('i', 0), lock=True: four processes add 10,000 each under its lock.
  corio::shared_value<int> counter(0);
  corio::process_barrier start_line(4);  // all four begin together
  std::vector<corio::process> workers;
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back([counter, start_line]() mutable {
      (void)start_line.wait();
      for (int k = 0; k < 10'000; ++k) counter.modify([](int& v) { ++v; });
    });
  }
  for (auto& w : workers) w.start();
  for (auto& w : workers) w.join();
  std::printf("counter = %d\n", counter.get());

  // A process killed while it holds the lock.
  corio::process_mutex lock;
  corio::process_event locked;
  corio::process holder([lock, locked]() mutable {
    (void)lock.lock();
    locked.set();
    for (;;) ::pause();  // holds the lock until killed
  });
  holder.start();
  locked.wait();
  holder.kill();
  holder.join();

  const corio::lock_result r = lock.lock();  // Python would wait here forever
  std::printf("lock after the holder was killed: %s\n", r.owner_died() ? "previous owner died" : "acquired");
  std::printf("protected state consistent: %s\n", lock.consistent() ? "yes" : "no");
  lock.mark_consistent();  // (the protected state would be repaired here)
  lock.unlock();
  std::printf("next lock: %s\n", lock.lock().owner_died() ? "previous owner died" : "acquired");
  lock.unlock();
}
