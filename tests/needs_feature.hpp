#pragma once
// Test cases that need a kernel feature:
//
//     CORIO_TEST_NEEDS("async_wait sleeps in the ring", corio::kernel_feature::futex_wait) { ... }
//
// Decided when the test binary starts: without the feature (the kernel lacks it,
// CORIO_DISABLE_FEATURES turns it off, or it is io_uring's and CORIO_BACKEND=epoll) doctest skips the case, and the reason is printed
// to stderr. Never a pass. CORIO_TEST_IF(name, ok, reason) does the same for a condition
// of the host.
#include <doctest/doctest.h>

#include <corio/runtime/kernel_features.hpp>

#include <cstdio>

namespace corio_test {

inline doctest::skip needs(corio::kernel_feature f, const char* test) {
  for (const corio::kernel_feature_status& s : corio::kernel_features()) {
    if (s.feature != f || s.on()) continue;
    const char* why = s.disabled  ? "disabled by CORIO_DISABLE_FEATURES"
                      : s.io_uring ? "which this kernel lacks, or io_uring does not run here (the epoll backend)"
                                   : "which this kernel lacks";
    std::fprintf(stderr, "SKIP \"%s\": needs %.*s (%.*s), %s\n", test, static_cast<int>(s.name.size()),
                 s.name.data(), static_cast<int>(s.needs.size()), s.needs.data(), why);
    return doctest::skip(true);
  }
  return doctest::skip(false);
}

// The same for a condition of the host that is not a kernel feature (a resource limit, an
// IPv6 loopback): skipped, with `reason` printed, when `ok` is false.
inline doctest::skip skip_unless(bool ok, const char* test, const char* reason) {
  if (!ok) std::fprintf(stderr, "SKIP \"%s\": %s\n", test, reason);
  return doctest::skip(!ok);
}

}  // namespace corio_test

#define CORIO_TEST_NEEDS(name, feature) TEST_CASE(name * corio_test::needs(feature, name))
#define CORIO_TEST_IF(name, ok, reason) TEST_CASE(name * corio_test::skip_unless(ok, name, reason))
