#include "kernel_features.hpp"

#include <liburing.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "backend.hpp"
#include "detail/environment_setting.hpp"

namespace corio {
namespace {

struct feature_info {
  std::string_view name;
  std::string_view needs;
  bool io_uring;  // io_uring's own and not emulated: absent where the epoll backend runs
};

constexpr std::array<feature_info, kernel_feature_count> infos{{
    {"single_issuer", "Linux 6.0", true},
    {"defer_taskrun", "Linux 6.1", true},
    {"coop_taskrun", "Linux 5.19", true},
    {"taskrun_flag", "Linux 5.19", true},
    {"cancel_any", "Linux 5.19", false},
    {"msg_ring", "Linux 5.18", true},
    {"multishot_accept", "Linux 5.19", false},
    {"recv_poll_first", "Linux 5.19", true},
    {"futex_wait", "Linux 6.7", true},
    {"futex_waitv", "Linux 5.16", false},
    {"rwf_nosignal", "Linux 6.14", false},
    {"pidfd", "Linux 5.3", false},
    {"registered_ring", "Linux 5.18", true},
    {"provided_buffers", "Linux 5.19", true},
    {"recv_multishot", "Linux 6.0", true},
}};
static_assert(static_cast<std::size_t>(kernel_feature::recv_multishot) + 1 == kernel_feature_count);

constexpr std::uint8_t op_futex_wait = 51;  // IORING_OP_FUTEX_WAIT; Debian 12's headers predate it

std::string valid_names() {
  std::string names = "all";
  for (const feature_info& i : infos) {
    names += ", ";
    names += i.name;
  }
  return names;
}

// What parse_disabled_features made of the variable, read once per process.
const detail::environment_setting<std::uint32_t>& disabled() {
  static const auto set =
      detail::read_environment_setting<std::uint32_t>("CORIO_DISABLE_FEATURES", detail::parse_disabled_features);
  return set;
}

std::uint32_t disabled_mask() { return disabled().get(); }

bool kernel_at_least(int major, int minor) noexcept {
  utsname u{};
  int have_major = 0, have_minor = 0;
  if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &have_major, &have_minor) != 2) return false;
  return have_major > major || (have_major == major && have_minor >= minor);
}

bool ring_accepts(unsigned flags) noexcept {
  io_uring ring;
  io_uring_params p{};
  p.flags = flags;
  if (io_uring_queue_init_params(2, &ring, &p) != 0) return false;
  io_uring_queue_exit(&ring);
  return true;
}

bool opcode_supported(int op) noexcept {
  io_uring_probe* probe = io_uring_get_probe();
  if (probe == nullptr) return false;
  const bool supported = io_uring_opcode_supported(probe, op) != 0;
  io_uring_free_probe(probe);
  return supported;
}

// A kernel that knows IORING_ASYNC_CANCEL_ANY answers a cancel of nothing with 0 (none cancelled);
// one before 5.19 rejects the flag with -EINVAL.
bool cancel_any_supported() noexcept {
  io_uring ring;
  if (io_uring_queue_init(2, &ring, 0) != 0) return false;
  bool ok = false;
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring)) {
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_submit_and_wait(&ring, 1) >= 0 && io_uring_peek_cqe(&ring, &cqe) == 0 && cqe != nullptr)
      ok = cqe->res != -EINVAL;
  }
  io_uring_queue_exit(&ring);
  return ok;
}

// futex_waitv with no waiters: -EINVAL where the syscall exists, -ENOSYS where it does not.
bool futex_waitv_supported() noexcept {
  return !(::syscall(SYS_futex_waitv, nullptr, 0, 0, nullptr, 0) == -1 && errno == ENOSYS);
}

bool pidfd_supported() noexcept {
  const long fd = ::syscall(SYS_pidfd_open, ::getpid(), 0);
  if (fd < 0) return false;
  ::close(static_cast<int>(fd));
  return true;
}

// Registers the scratch ring's own fd (5.18); older kernels answer -EINVAL.
bool registered_ring_supported() noexcept {
  io_uring ring;
  if (io_uring_queue_init(2, &ring, 0) != 0) return false;
  const bool ok = io_uring_register_ring_fd(&ring) == 1;
  io_uring_queue_exit(&ring);  // unregisters it too
  return ok;
}

// Registers a one-entry buffer ring on a scratch ring (5.19); older kernels answer -EINVAL.
bool provided_buffers_supported() noexcept {
  io_uring ring;
  if (io_uring_queue_init(2, &ring, 0) != 0) return false;
  void* mem = nullptr;
  bool ok = false;
  if (::posix_memalign(&mem, 4096, 4096) == 0) {
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
    reg.ring_entries = 1;
    reg.bgid = 0;
    ok = io_uring_register_buf_ring(&ring, &reg, 0) == 0;
  }
  io_uring_queue_exit(&ring);  // frees the registration before the memory goes
  std::free(mem);
  return ok;
}

// Whether this process's loops run on io_uring by default: not when CORIO_BACKEND=epoll,
// nor when the kernel (or a seccomp filter) refuses io_uring_setup.
bool io_uring_runs() noexcept {
  static const bool runs =
      detail::backend_from_environment_noexcept() != backend_kind::epoll && ring_accepts(0);
  return runs;
}

bool probe(kernel_feature f) noexcept {
  if (infos[static_cast<std::size_t>(f)].io_uring && !io_uring_runs()) return false;
  switch (f) {
    case kernel_feature::single_issuer: return ring_accepts(IORING_SETUP_SINGLE_ISSUER);
    case kernel_feature::defer_taskrun:
      return ring_accepts(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    case kernel_feature::coop_taskrun: return ring_accepts(IORING_SETUP_COOP_TASKRUN);
    case kernel_feature::taskrun_flag: return ring_accepts(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
    // The epoll backend emulates this one and multishot accept (epoll_backend.hpp).
    case kernel_feature::cancel_any: return !io_uring_runs() || cancel_any_supported();
    case kernel_feature::msg_ring: return opcode_supported(IORING_OP_MSG_RING);
    // io_uring's probe reports opcodes, not their flags: these go by the kernel version.
    case kernel_feature::multishot_accept: return !io_uring_runs() || kernel_at_least(5, 19);  // emulated on epoll
    case kernel_feature::recv_poll_first: return kernel_at_least(5, 19);
    case kernel_feature::rwf_nosignal: return kernel_at_least(6, 14);
    case kernel_feature::futex_wait: return opcode_supported(op_futex_wait);
    case kernel_feature::futex_waitv: return futex_waitv_supported();
    case kernel_feature::pidfd: return pidfd_supported();
    case kernel_feature::registered_ring: return registered_ring_supported();
    case kernel_feature::provided_buffers: return provided_buffers_supported();
    // Multishot recv (IORING_RECV_MULTISHOT) is an op flag: by the kernel version.
    case kernel_feature::recv_multishot: return kernel_at_least(6, 0);
  }
  return false;
}

// Probed lazily, each feature once per process (a probe sets up a scratch ring: a few
// tens of microseconds).
bool supported(kernel_feature f) noexcept {
  static const std::array<bool, kernel_feature_count> answers = [] {
    std::array<bool, kernel_feature_count> a{};
    for (std::size_t i = 0; i < kernel_feature_count; ++i) a[i] = probe(static_cast<kernel_feature>(i));
    return a;
  }();
  return answers[static_cast<std::size_t>(f)];
}

std::uint32_t bit(kernel_feature f) noexcept { return std::uint32_t{1} << static_cast<unsigned>(f); }

}  // namespace

std::string_view to_string(kernel_feature f) noexcept { return infos[static_cast<std::size_t>(f)].name; }

std::vector<kernel_feature_status> kernel_features() {
  const std::uint32_t off = disabled_mask();
  std::vector<kernel_feature_status> all;
  all.reserve(kernel_feature_count);
  for (std::size_t i = 0; i < kernel_feature_count; ++i) {
    const auto f = static_cast<kernel_feature>(i);
    all.push_back({f, infos[i].name, infos[i].needs, supported(f), (off & bit(f)) != 0, infos[i].io_uring});
  }
  return all;
}

bool kernel_feature_disabled(kernel_feature f) { return (disabled_mask() & bit(f)) != 0; }

bool kernel_feature_on(kernel_feature f) { return !kernel_feature_disabled(f) && supported(f); }

namespace detail {

bool kernel_feature_disabled_noexcept(kernel_feature f) noexcept {
  const auto& s = disabled();
  return !s.error.empty() || (s.value & bit(f)) != 0;
}

bool kernel_feature_on_noexcept(kernel_feature f) noexcept {
  return !kernel_feature_disabled_noexcept(f) && supported(f);
}

std::uint32_t parse_disabled_features(std::string_view value) {
  std::uint32_t mask = 0;
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    if (item == "all") {
      mask = (std::uint32_t{1} << kernel_feature_count) - 1;
      continue;
    }
    std::size_t i = 0;
    while (i < kernel_feature_count && infos[i].name != item) ++i;
    if (i == kernel_feature_count)
      throw std::invalid_argument("CORIO_DISABLE_FEATURES: unknown feature \"" + std::string(item) +
                                  "\"; valid names: " + valid_names());
    mask |= std::uint32_t{1} << i;
  }
  return mask;
}

}  // namespace detail
}  // namespace corio
