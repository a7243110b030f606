#pragma once
// Which sanitizers this translation unit is built with, as 0/1 macros usable in #if:
// CORIO_DETAIL_ASAN (AddressSanitizer) and CORIO_DETAIL_TSAN (ThreadSanitizer). GCC
// announces them with __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__, clang with
// __has_feature. This is the one place in corio that asks.

#if defined(__SANITIZE_ADDRESS__)
#define CORIO_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORIO_DETAIL_ASAN 1
#endif
#endif
#ifndef CORIO_DETAIL_ASAN
#define CORIO_DETAIL_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define CORIO_DETAIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORIO_DETAIL_TSAN 1
#endif
#endif
#ifndef CORIO_DETAIL_TSAN
#define CORIO_DETAIL_TSAN 0
#endif
