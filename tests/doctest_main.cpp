// The main() of every doctest suite, plus a per-test-case watchdog.
//
// A test that waits on another process hangs when a regression makes the other side
// never answer; without a watchdog that costs meson's whole 300 s timeout and says only
// "TIMEOUT". The watchdog arms a one-shot timer when a test case starts and disarms it
// when the case ends; if it fires, it prints the test case's name and
// "watchdog: timed out after N s" to stderr and ends the process with exit code 124 (as
// timeout(1) does), so the hang fails in seconds with a message.
//
// The limit: 120 s by default; CORIO_TEST_WATCHDOG=N (seconds, 0 = off) sets the default
// for a run; a test case's own `* doctest::timeout(N)` decorator sets its limit (doctest
// itself also fails a case that ends later than that). Sanitizer builds run several times
// slower, so every limit is multiplied by 3 there.
//
// The timer is ITIMER_REAL (SIGALRM): it is not inherited by fork()ed children (pool
// workers, processes), so only the test process itself is watched. The handler does only
// async-signal-safe things: write(2) of a message prepared when the case started, then
// _exit.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr double sanitizer_factor = 3;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
constexpr double sanitizer_factor = 3;
#else
constexpr double sanitizer_factor = 1;
#endif
#else
constexpr double sanitizer_factor = 1;
#endif

constexpr double default_limit_s = 120;
constexpr int exit_timed_out = 124;

// Written before the timer is armed and read only by the handler.
char message[512];
std::size_t message_length = 0;

extern "C" void on_watchdog(int) {
  ssize_t ignored = ::write(STDERR_FILENO, message, message_length);
  (void)ignored;
  ::_exit(exit_timed_out);
}

double default_limit() {
  const char* s = std::getenv("CORIO_TEST_WATCHDOG");
  if (s == nullptr || *s == '\0') return default_limit_s;
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || v < 0) {
    std::fprintf(stderr, "watchdog: ignoring CORIO_TEST_WATCHDOG=%s (want seconds, 0 = off)\n", s);
    return default_limit_s;
  }
  return v;
}

void set_timer(double seconds) {
  itimerval t{};
  const auto whole = static_cast<long>(seconds);
  t.it_value.tv_sec = whole;
  t.it_value.tv_usec = static_cast<long>((seconds - static_cast<double>(whole)) * 1e6);
  ::setitimer(ITIMER_REAL, &t, nullptr);  // zero disarms
}

struct watchdog : doctest::IReporter {
  explicit watchdog(const doctest::ContextOptions&) {
    struct sigaction sa {};
    sa.sa_handler = on_watchdog;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGALRM, &sa, nullptr);
  }

  void test_case_start(const doctest::TestCaseData& tc) override {
    const double limit = (tc.m_timeout > 0 ? tc.m_timeout : default_limit()) * sanitizer_factor;
    if (limit <= 0) return;
    const int n = std::snprintf(message, sizeof message, "\n%s:%d: TEST CASE: %s\nwatchdog: timed out after %g s\n",
                                tc.m_file.c_str(), tc.m_line, tc.m_name, limit);
    message_length = n < 0 ? 0 : static_cast<std::size_t>(n) < sizeof message ? static_cast<std::size_t>(n)
                                                                               : sizeof message - 1;
    set_timer(limit);
  }
  void test_case_end(const doctest::CurrentTestCaseStats&) override { set_timer(0); }
  // A case that throws out of its body still reaches test_case_end.
  void test_case_exception(const doctest::TestCaseException&) override {}

  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

REGISTER_LISTENER("corio_watchdog", 1, watchdog);
