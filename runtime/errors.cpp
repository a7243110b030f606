#include "errors.hpp"

namespace corio::detail {

void throw_errno(int error, std::string_view what) {
  const std::string message(what);
  if (error == ECANCELED) throw operation_cancelled(message);
  if (error == ETIME || error == ETIMEDOUT) throw timed_out(message);
  throw std::system_error(error, std::system_category(), message);
}

}  // namespace corio::detail
