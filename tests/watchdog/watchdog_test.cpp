// Test cases for the per-test-case watchdog in tests/doctest_main.cpp, run one at a time
// by watchdog_check.py: the hanging one must end the process with the watchdog's message,
// not pass and not wait for meson's timeout.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

using namespace std::chrono_literals;

TEST_CASE("a case that ends within its watchdog limit disarms it" * doctest::timeout(1)) {
  std::this_thread::sleep_for(500ms);
  CHECK(true);
}

// Runs after the one above: if that one's timer were still armed, it would fire here.
TEST_CASE("a later case runs under the default limit, not the previous case's") {
  std::this_thread::sleep_for(1500ms);
  CHECK(true);
}

TEST_CASE("a case that hangs is ended by the watchdog" * doctest::timeout(1)) {
  for (int i = 0; i < 600; ++i) std::this_thread::sleep_for(100ms);
  FAIL("the watchdog did not end the hanging case within 60 s");
}
