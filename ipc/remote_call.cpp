#include "remote_call.hpp"

#include <cxxabi.h>

#include <array>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "detail/demangle.hpp"

namespace corio::detail {

namespace {

// The registry of register_remote_exception. Append-only: an entry is written in full,
// then published by the release store of `count`; readers load `count` (acquire) and scan
// without a lock. So a worker fork()ed while another thread registers never inherits a
// held lock, and the entries a reader sees are complete. Names are leaked on purpose
// (they live as long as the process, and a worker may read them during exit).
struct registered_type {
  const char* name;
  bool (*matches)() noexcept;
  void (*raise)(const std::string&);
};

struct exception_registry {
  static constexpr std::size_t capacity = 64;
  std::mutex writers;  // serialises registrations only
  std::array<registered_type, capacity> types{};
  std::atomic<std::size_t> count{0};

  const registered_type* find(const char* name) const noexcept {
    const std::size_t n = count.load(std::memory_order_acquire);  // entries below n are complete
    for (std::size_t i = 0; i < n; ++i)
      if (std::strcmp(types[i].name, name) == 0) return &types[i];
    return nullptr;
  }
};

exception_registry& registry() {
  static exception_registry r;
  return r;
}

}  // namespace

void register_remote_exception_type(const std::type_info& type, bool (*matches)() noexcept,
                                    void (*raise)(const std::string&)) {
  exception_registry& r = registry();
  const demangled_name name(type.name());
  std::lock_guard lk(r.writers);
  if (r.find(name.c_str()) != nullptr) return;
  const std::size_t n = r.count.load(std::memory_order_relaxed);
  if (n == exception_registry::capacity)
    throw std::length_error(std::string("corio::register_remote_exception<") + name.c_str() + ">: at most " +
                            std::to_string(exception_registry::capacity) + " types can be registered");
  r.types[n] = registered_type{::strdup(name.c_str()), matches, raise};
  if (r.types[n].name == nullptr) throw std::bad_alloc();
  r.count.store(n + 1, std::memory_order_release);  // publishes the entry written above
}

void raise_registered(const std::string& type_name, const std::string& message) {
  if (const registered_type* t = registry().find(type_name.c_str())) t->raise(message);
}

void describe_current_exception(std::string& type_name, std::string& message) {
  // __cxa_current_exception_type names the dynamic type even for exceptions that are not
  // std::exceptions (a thrown int reads "int").
  const std::type_info* type = abi::__cxa_current_exception_type();
  type_name = type != nullptr ? std::string(demangled_name(type->name()).c_str()) : "unknown exception";
  // A registered type travels under its own name; an exception derived from one (and not
  // registered itself) under the first registered base that catches it, so the caller
  // rebuilds the type it asked for.
  const exception_registry& r = registry();
  if (r.find(type_name.c_str()) == nullptr) {
    const std::size_t n = r.count.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
      if (r.types[i].matches()) {
        type_name = r.types[i].name;
        break;
      }
    }
  }
  try {
    throw;
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "(not a std::exception)";
  }
}

}  // namespace corio::detail
