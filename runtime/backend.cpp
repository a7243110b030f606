#include "backend.hpp"

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "detail/backend.hpp"
#include "detail/uring_backend.hpp"
#include "loop.hpp"

namespace corio {

namespace {

struct environment_choice {
  backend_kind kind = backend_kind::automatic;
  std::string error;  // non-empty: the variable was invalid
};

const environment_choice& from_environment() {
  static const environment_choice choice = [] {
    environment_choice c;
    const char* value = std::getenv("CORIO_BACKEND");
    if (value == nullptr) return c;
    try {
      c.kind = detail::parse_backend(value);
    } catch (const std::invalid_argument& e) {
      c.error = e.what();
    }
    return c;
  }();
  return choice;
}

}  // namespace

std::string_view to_string(backend_kind k) noexcept {
  switch (k) {
    case backend_kind::automatic: return "automatic";
    case backend_kind::io_uring: return "io_uring";
    case backend_kind::epoll: return "epoll";
  }
  return "unknown";
}

backend_kind backend_from_environment() {
  const environment_choice& c = from_environment();
  if (!c.error.empty()) throw std::invalid_argument(c.error);
  return c.kind;
}

namespace detail {

backend_kind parse_backend(std::string_view value) {
  if (value.empty() || value == "automatic") return backend_kind::automatic;
  if (value == "io_uring") return backend_kind::io_uring;
  if (value == "epoll") return backend_kind::epoll;
  throw std::invalid_argument("CORIO_BACKEND: unknown backend \"" + std::string(value) +
                              "\"; valid values: io_uring, epoll, automatic (or unset)");
}

backend_kind backend_from_environment_noexcept() noexcept {
  const environment_choice& c = from_environment();
  return c.error.empty() ? c.kind : backend_kind::automatic;
}

std::unique_ptr<backend> make_backend(const loop_options& options, loop_features& granted) {
  int error = 0;
  if (auto b = uring_backend::create(options, granted, error)) return b;
  throw_uring_setup_error(error);
}

}  // namespace detail
}  // namespace corio
