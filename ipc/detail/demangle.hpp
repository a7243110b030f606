#pragma once
// The readable name of a type from its mangled name (std::type_info::name()), for the
// messages that report an exception: "std::out_of_range" rather than "St12out_of_range".

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

namespace corio::detail {

// Demangles on construction; c_str() is the demangled name, or the mangled one when
// __cxa_demangle fails. It never throws and allocates nothing beyond __cxa_demangle's own
// buffer, so a noexcept function reporting a std::bad_alloc can still use it.
class demangled_name {
 public:
  // __cxa_demangle returns null whenever its status is not 0 (success).
  explicit demangled_name(const char* mangled) noexcept
      : mangled_(mangled), name_(abi::__cxa_demangle(mangled, nullptr, nullptr, nullptr)) {}

  [[nodiscard]] const char* c_str() const noexcept { return name_ ? name_.get() : mangled_; }

 private:
  struct free_deleter {
    void operator()(char* p) const noexcept { std::free(p); }
  };

  const char* mangled_;
  std::unique_ptr<char, free_deleter> name_;
};

}  // namespace corio::detail
