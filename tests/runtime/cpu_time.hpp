#pragma once
// CPU time consumed so far, for the tests that prove a loop sleeps instead of spinning.
#include <sys/resource.h>

namespace corio_test {

// who: RUSAGE_THREAD (this thread) or RUSAGE_SELF (the whole process).
inline double cpu_seconds(int who) {
  rusage u{};
  getrusage(who, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

}  // namespace corio_test
