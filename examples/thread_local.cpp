// ThreadLocal from the threading tutorial: one global name, a separate value per thread.
// Each thread binds its own student, and process_student() finds the right one without
// it being passed along. C++ has this in the language: `thread_local`.
#include <cstdio>
#include <string>
#include <thread>

// Python: local_school = threading.local(); local_school.student = name
thread_local std::string student;
// Python: threading.current_thread().name
thread_local std::string thread_name;

void process_student() {
  // The student bound to the current thread.
  std::printf("Hello, %s (in %s)\n", student.c_str(), thread_name.c_str());
}

void process_thread(std::string name, std::string thread) {
  thread_name = std::move(thread);
  student = std::move(name);
  process_student();
}

int main() {
  std::thread t1(process_thread, "Alice", "Thread-A");
  std::thread t2(process_thread, "Bob", "Thread-B");
  t1.join();
  t2.join();
}
