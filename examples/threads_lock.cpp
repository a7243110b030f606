// The bank-balance race from the threading tutorial: two threads each deposit and withdraw
// 1,000,000 times; a lock around change_it() keeps the balance at 0. Without it, the
// read-modify-write steps of the two threads interleave and the balance drifts.
//
// The threads are those of a corio::thread_pool: the loop offloads the two blocking loops
// and awaits both, staying free for other work. The lock is std::mutex, because the data
// is shared between threads (corio::mutex is for coroutines of one loop).
#include <corio/coro/task.hpp>
#include <corio/coro/when_all.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/thread_pool.hpp>

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
  for (int i = 0; i < 1'000'000; ++i) {
    std::lock_guard guard(lock);  // take the lock; it is released at the end of the block
    change_it(n);
  }
}

corio::task<void> deposit(corio::thread_pool& pool, long n) {
  co_await pool.submit([n] { run_thread(n); });
}

corio::task<void> main_task() {
  corio::thread_pool pool(2);  // t1 and t2
  co_await corio::when_all(deposit(pool, 5), deposit(pool, 8));
  std::printf("balance = %ld\n", balance);
}

int main() {
  corio::loop lp;
  lp.run(main_task());
}
