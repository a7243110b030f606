// ThreadLocal from the threading tutorial (seed 001): one global name, a separate value
// per thread. Each thread binds its own student, and process_student() finds the right
// one without it being passed along. C++ has this in the language: `thread_local`.
//
//     local_school = threading.local()
//
//     def process_student():
//         std = local_school.student
//         print('Hello, %s (in %s)' % (std, threading.current_thread().name))
//
//     def process_thread(name):
//         local_school.student = name
//         process_student()
//
//     t1 = threading.Thread(target=process_thread, args=('Alice',), name='Thread-A')
//     t2 = threading.Thread(target=process_thread, args=('Bob',), name='Thread-B')
#include <corio/runtime/thread.hpp>

#include <cstdio>
#include <string>

// Python: local_school = threading.local(); local_school.student = name
thread_local std::string student;

void process_student() {
  // The student bound to the current thread.
  std::printf("Hello, %s (in %s)\n", student.c_str(), corio::current_thread_name().c_str());
}

void process_thread(const std::string& name) {
  student = name;
  process_student();
}

int main() {
  corio::thread t1("Thread-A", process_thread, std::string("Alice"));
  corio::thread t2("Thread-B", process_thread, std::string("Bob"));
  t1.start();
  t2.start();
  t1.join();
  t2.join();
}
