#include "remote_call.hpp"

#include <cxxabi.h>

#include <exception>
#include <string>
#include <typeinfo>

#include "detail/demangle.hpp"

namespace corio::detail {

void describe_current_exception(std::string& type_name, std::string& message) {
  // __cxa_current_exception_type names the dynamic type even for exceptions that are not
  // std::exceptions (a thrown int reads "int").
  const std::type_info* type = abi::__cxa_current_exception_type();
  type_name = type != nullptr ? std::string(demangled_name(type->name()).c_str()) : "unknown exception";
  try {
    throw;
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "(not a std::exception)";
  }
}

}  // namespace corio::detail
