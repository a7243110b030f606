// Seed 004's three ways to give a thread its work: a function and its arguments, a
// callable object, a class derived from the thread class overriding run(). Each way runs
// loop 0 (0.6 s) and loop 1 (0.2 s) on two threads at once: both start together, and
// loop 1 finishes first. (The seed sleeps 6 s and 4 s.)
//
//     def loop(sec, i):
//         print 'loop', i, 'start at', ctime()
//         sleep(sec)
//         print 'loop', i, 'finished at', ctime()
//
//     threads.append(threading.Thread(target=loop, args=(secLoop[i], i)))     # 1
//     threads.append(threading.Thread(target=ThreadFunc(loop, (secLoop[i], i))))  # 2
//     class MyThread(threading.Thread):                                         # 3
//         def run(self): loop(self.sec, self.i)
#include <corio/runtime/thread.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

const std::vector<double> sec_loop = {0.6, 0.2};
std::mutex print_lock;  // one line at a time from two threads

// Python's time.ctime(): "Fri Dec  4 21:10:00 2026".
std::string ctime_now() {
  const std::time_t now = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", std::localtime(&now));
  return buf;
}

void say(int i, const char* what) {
  std::lock_guard guard(print_lock);
  std::printf("loop %d %s at %s\n", i, what, ctime_now().c_str());
  std::fflush(stdout);
}

void loop(double sec, int i) {
  say(i, "start");
  std::this_thread::sleep_for(std::chrono::duration<double>(sec));
  say(i, "finished");
}

// Way 2: Python's ThreadFunc, an object whose call runs func(*args).
class thread_func {
 public:
  thread_func(void (*func)(double, int), double sec, int i) : func_(func), sec_(sec), i_(i) {}
  void operator()() const { func_(sec_, i_); }

 private:
  void (*func_)(double, int);
  double sec_;
  int i_;
};

// Way 3: derive from corio::thread and override run().
class my_thread : public corio::thread {
 public:
  my_thread(double sec, int i) : sec_(sec), i_(i) {}
  ~my_thread() override {
    if (joinable()) join();  // before sec_ and i_ die (corio::thread's destructor is too late)
  }

 protected:
  void run() override { loop(sec_, i_); }

 private:
  double sec_;
  int i_;
};

void start_and_join(std::vector<std::unique_ptr<corio::thread>>& threads) {
  for (auto& t : threads) t->start();
  for (auto& t : threads) t->join();
}

int main() {
  std::puts("1. a function and its arguments");
  std::vector<std::unique_ptr<corio::thread>> threads;
  for (int i = 0; i < 2; ++i) threads.push_back(std::make_unique<corio::thread>(loop, sec_loop[i], i));
  start_and_join(threads);

  std::puts("2. a callable object");
  threads.clear();
  for (int i = 0; i < 2; ++i) threads.push_back(std::make_unique<corio::thread>(thread_func(loop, sec_loop[i], i)));
  start_and_join(threads);

  std::puts("3. a derived class overriding run()");
  threads.clear();
  for (int i = 0; i < 2; ++i) threads.push_back(std::make_unique<my_thread>(sec_loop[i], i));
  start_and_join(threads);
}
