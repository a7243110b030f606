#pragma once
// lifetime: counts live instances, to prove that a frame or stack destroyed its locals.
// Tests reset `alive` to 0 first and compare it after the scope under test.

namespace corio_test {

struct lifetime {
  static inline int alive = 0;
  lifetime() { ++alive; }
  lifetime(const lifetime&) { ++alive; }
  ~lifetime() { --alive; }
};

}  // namespace corio_test
