#pragma once
// A value type and a value maker shared by tests/ipc/handoff_test.cpp and the program it
// starts, tests/ipc/handoff_helper.cpp: both name the type alike, so the handoff's type tag
// matches, and both make the same large values to compare.
#include <cstddef>
#include <functional>
#include <string>

namespace corio_test {

// Decoding one calls stall_while_decoding (when set) in the middle of the get: the helper
// sets it to stop there, inside the ring slot's claim, until it is killed.
inline std::function<void()> stall_while_decoding;

struct stalling_value {
  int v = 0;
  template <class Ar>
  void corio_fields(Ar& ar) {
    ar(v);
    if (stall_while_decoding && v < 0)  // only in the helper, and only for negative values
      stall_while_decoding();
  }
};

// `bytes` bytes that differ with position and seed: a value cut, shifted or taken from
// another slot does not compare equal.
inline std::string large_value(std::size_t bytes, unsigned seed) {
  std::string s(bytes, '\0');
  for (std::size_t i = 0; i < bytes; ++i) s[i] = static_cast<char>((i * 131 + i / 4096 + seed * 7) % 251);
  return s;
}

}  // namespace corio_test
