#include "remote_call.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <typeinfo>

namespace corio::detail {

namespace {

std::string demangle(const char* mangled) {
  int status = 0;
  const std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                                    std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

}  // namespace

void describe_current_exception(std::string& type_name, std::string& message) {
  // __cxa_current_exception_type names the dynamic type even for exceptions that are not
  // std::exceptions (a thrown int reads "int").
  const std::type_info* type = abi::__cxa_current_exception_type();
  type_name = type != nullptr ? demangle(type->name()) : "unknown exception";
  try {
    throw;
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "(not a std::exception)";
  }
}

}  // namespace corio::detail
