#include "backend.hpp"

#include <cerrno>
#include <stdexcept>
#include <string>

#include "detail/backend.hpp"
#include "detail/environment_setting.hpp"
#include "detail/epoll_backend.hpp"
#include "detail/uring_backend.hpp"
#include "kernel_features.hpp"
#include "loop.hpp"

namespace corio {

namespace {

const detail::environment_setting<backend_kind>& from_environment() {
  static const auto choice =
      detail::read_environment_setting<backend_kind>("CORIO_BACKEND", detail::parse_backend);
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

backend_kind backend_from_environment() { return from_environment().get(); }

namespace detail {

backend_kind parse_backend(std::string_view value) {
  if (value.empty() || value == "automatic") return backend_kind::automatic;
  if (value == "io_uring") return backend_kind::io_uring;
  if (value == "epoll") return backend_kind::epoll;
  throw std::invalid_argument("CORIO_BACKEND: unknown backend \"" + std::string(value) +
                              "\"; valid values: io_uring, epoll, automatic (or unset)");
}

backend_kind backend_from_environment_noexcept() noexcept {
  // Invalid counts as unset: `value` keeps its default, automatic.
  return from_environment().value;
}

std::unique_ptr<backend> make_backend(const loop_options& options, loop_features& granted) {
  // Read (and checked) whatever the options say: a bad CORIO_BACKEND never goes unnoticed.
  const backend_kind from_environment = backend_from_environment();
  const backend_kind want = options.backend == backend_kind::automatic ? from_environment : options.backend;
  if (want != backend_kind::epoll) {
    int error = 0;
    if (auto b = uring_backend::create(options, granted, error)) {
      granted.cancel_any = options.try_cancel_any && kernel_feature_on(kernel_feature::cancel_any);
      granted.futex_wait = kernel_feature_on(kernel_feature::futex_wait);
      granted.msg_ring = kernel_feature_on(kernel_feature::msg_ring);
      granted.registered_ring = kernel_feature_on(kernel_feature::registered_ring);
      return b;
    }
    // Refused (seccomp, kernel.io_uring_disabled: EPERM; no io_uring: ENOSYS; no setup this
    // kernel accepts: EINVAL): automatic falls back, an explicit io_uring does not.
    const bool refused = error == EPERM || error == ENOSYS || error == EINVAL;
    if (want == backend_kind::io_uring || !refused) throw_uring_setup_error(error);
  }
  granted = {};
  // The emulation cancels everything at once too (epoll_backend.hpp); kept to what
  // kernel_features() says, so ~loop takes the same path as an io_uring loop would here.
  granted.cancel_any = options.try_cancel_any && kernel_feature_on(kernel_feature::cancel_any);
  return std::make_unique<epoll_backend>(options.entries);
}

}  // namespace detail
}  // namespace corio
