// The bank-balance race from the threading tutorial (seeds 000 and 001): two threads each
// deposit and withdraw 100,000 times; a lock around change_it() keeps the balance at 0.
// Without it, the read-modify-write steps of the two threads interleave and the balance
// drifts.
//
//     balance = 0
//     lock = threading.Lock()
//
//     def change_it(n):
//         global balance
//         balance = balance + n
//         balance = balance - n
//
//     def run_thread(n):
//         for i in range(100000):
//             lock.acquire()
//             try:
//                 change_it(n)
//             finally:
//                 lock.release()
//
//     t1 = threading.Thread(target=run_thread, args=(5,))
//     t2 = threading.Thread(target=run_thread, args=(8,))
//     t1.start(); t2.start(); t1.join(); t2.join()
//     print(balance)
//
// The lock is std::mutex (Python's threading.Lock); std::lock_guard is the
// acquire/try/finally/release. corio::mutex is for coroutines (held across a suspension,
// shared by loops); between plain threads std::mutex is the cheaper lock.
#include <corio/runtime/thread.hpp>

#include <cstdio>
#include <mutex>

long balance = 0;  // your bank balance
std::mutex lock;

void change_it(long n) {
  // Deposit, then withdraw: the result should be 0.
  balance = balance + n;
  balance = balance - n;
}

void run_thread(long n) {
  for (int i = 0; i < 100'000; ++i) {
    std::lock_guard guard(lock);  // take the lock; it is released at the end of the block
    change_it(n);
  }
}

int main() {
  corio::thread t1(run_thread, 5L);
  corio::thread t2(run_thread, 8L);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  std::printf("%ld\n", balance);
}
