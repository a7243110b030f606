#pragma once
// environment_setting (internal): a CORIO_* environment variable, read and parsed once per
// process (CORIO_BACKEND in backend.cpp, CORIO_DISABLE_FEATURES in kernel_features.cpp).
// A bad value is kept as its error text rather than thrown at the first reader, so every
// entry point that depends on it throws the same std::invalid_argument (get()), and code
// that cannot throw still reads `value` (its default) and `error`.
//
// Who may touch it: any thread; each caller keeps its setting in a function-local static.

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace corio::detail {

template <class T>
struct environment_setting {
  T value{};          // the parsed value; T{} when the variable is unset or invalid
  std::string error;  // non-empty: the variable was invalid (parse's message)

  // The value; throws std::invalid_argument with parse's message when it was invalid.
  const T& get() const {
    if (!error.empty()) throw std::invalid_argument(error);
    return value;
  }
};

// Reads `name` and parses it with `parse` (which throws std::invalid_argument on a bad
// value); unset leaves the default.
template <class T, class Parse>
environment_setting<T> read_environment_setting(const char* name, Parse parse) {
  environment_setting<T> s;
  const char* value = std::getenv(name);
  if (value == nullptr) return s;
  try {
    s.value = parse(value);
  } catch (const std::invalid_argument& e) {
    s.error = e.what();
  }
  return s;
}

}  // namespace corio::detail
