#pragma once
// A value type shared by tests/ipc/handoff_test.cpp and the program it starts,
// tests/ipc/handoff_helper.cpp: both name it alike, so the handoff's type tag matches.
#include <functional>

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

}  // namespace corio_test
