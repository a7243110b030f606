#pragma once
// What a fuzz target calls when an input breaks a contract without crashing (a span
// outside the ring, a length past the input): it names the broken promise and aborts,
// which libFuzzer records as a crash with the input, and the corpus replay test
// (replay_test.cpp) reports as a failed test.

#include <cstdio>
#include <cstdlib>

namespace corio_fuzz {

inline void check(bool ok, const char* promise) {
  if (ok) return;
  std::fprintf(stderr, "fuzz finding: %s\n", promise);
  std::abort();
}

}  // namespace corio_fuzz
