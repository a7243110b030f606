#pragma once
// The kernel features corio probes, and the one switch that turns them off.
//
//     for (const corio::kernel_feature_status& f : corio::kernel_features())
//       std::printf("%-16s %s\n", f.name.data(), f.on() ? "on" : "off");
//
// corio uses newer kernel features where the kernel has them and falls back where it does
// not (every feature below has a fallback). The development kernel is far newer than the
// ones users run (Debian 12 ships 6.1), so the fallbacks are made to run on a new kernel
// too: the environment variable
//
//     CORIO_DISABLE_FEATURES=all                       every feature below off
//     CORIO_DISABLE_FEATURES=futex_wait,rwf_nosignal   what Debian 12's 6.1 lacks
//
// turns features off for the whole process, exactly as if the kernel lacked them. The
// names are those of the table; `all` means every one. It is read once per process, at the
// first question; an unknown name is an error that names the valid ones
// (std::invalid_argument, thrown by the first loop constructed and by kernel_features()).
// scripts/test.sh runs the whole test suite once with `all`.
//
// | name             | kernel | what it gives                    | without it                      |
// |------------------|--------|----------------------------------|---------------------------------|
// | single_issuer    | 6.0    | IORING_SETUP_SINGLE_ISSUER       | plain setup (loop.hpp)          |
// | defer_taskrun    | 6.1    | IORING_SETUP_DEFER_TASKRUN       | COOP_TASKRUN                    |
// | coop_taskrun     | 5.19   | IORING_SETUP_COOP_TASKRUN        | the kernel interrupts the thread |
// | taskrun_flag     | 5.19   | idle polling reads a ring flag   | it calls io_uring_enter         |
// | cancel_any       | 5.19   | IORING_ASYNC_CANCEL_ANY/_FD/_ALL | ~loop cancels op by op; cancel_fd fails |
// | msg_ring         | 5.18   | shards wake with IORING_OP_MSG_RING | eventfd writes               |
// | multishot_accept | 5.19   | one accept request, many CQEs    | one accept per connection       |
// | recv_poll_first  | 5.19   | IORING_RECVSEND_POLL_FIRST       | recv tries the socket first     |
// | futex_wait       | 6.7    | IORING_OP_FUTEX_WAIT             | the loop's futex thread         |
// | futex_waitv      | 5.16   | that thread sleeps on many words | it polls every millisecond      |
// | rwf_nosignal     | 6.14   | pipe writes without SIGPIPE      | SIGPIPE held back around writes |
// | pidfd            | 5.3    | pidfd_open: child exit in the ring | waitpid polled with a timer   |
// | registered_ring  | 5.18   | io_uring_enter by registered index | by fd (an fdget per enter)     |
// | provided_buffers | 5.19   | buffer rings the kernel picks from | each recv names its own buffer |
// | recv_multishot   | 6.0    | one recv request, many CQEs      | one recv request per receive    |
//
// The epoll backend (backend.hpp): when this process's loops run on epoll by default
// (CORIO_BACKEND=epoll, or io_uring_setup refused) the features of io_uring itself, the
// first nine rows, report unsupported and the operations take their fallback paths,
// except cancel_any and multishot_accept, which that backend emulates; the last three
// are system calls, probed as usual. A single loop put on epoll by
// loop_options::backend says what it has in loop::features().
//
// Probes: ring setup flags by setting up a small scratch ring, opcodes through
// io_uring's probe, cancel flags by a cancel request on a scratch ring, syscalls by
// calling them, and what io_uring cannot report (op flags) from the kernel version.
// All once per process; a forked child inherits the answers.
//
// Thread-safety: every function here may be called from any thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace corio {

enum class kernel_feature : unsigned char {
  single_issuer,
  defer_taskrun,
  coop_taskrun,
  taskrun_flag,
  cancel_any,
  msg_ring,
  multishot_accept,
  recv_poll_first,
  futex_wait,
  futex_waitv,
  rwf_nosignal,
  pidfd,
  registered_ring,
  provided_buffers,
  recv_multishot,
};
inline constexpr std::size_t kernel_feature_count = 15;

struct kernel_feature_status {
  kernel_feature feature;
  std::string_view name;   // as written in CORIO_DISABLE_FEATURES
  std::string_view needs;  // the first kernel that has it: "Linux 6.7"
  bool supported;          // this kernel has it
  bool disabled;           // CORIO_DISABLE_FEATURES turns it off
  bool io_uring;           // io_uring's own, not emulated: absent on the epoll backend (above)
  bool on() const noexcept { return supported && !disabled; }
};

// Every feature, in the order of the table. Throws std::invalid_argument when
// CORIO_DISABLE_FEATURES names an unknown feature.
[[nodiscard]] std::vector<kernel_feature_status> kernel_features();

// Whether corio uses `f` in this process: supported and not disabled. Throws like
// kernel_features().
[[nodiscard]] bool kernel_feature_on(kernel_feature f);

// Whether CORIO_DISABLE_FEATURES turns `f` off (no probe). Throws like kernel_features().
[[nodiscard]] bool kernel_feature_disabled(kernel_feature f);

// The feature's name, as in the table.
[[nodiscard]] std::string_view to_string(kernel_feature f) noexcept;

namespace detail {
// For code that cannot throw: an invalid CORIO_DISABLE_FEATURES counts as `all` here (the
// loop's constructor reports it).
[[nodiscard]] bool kernel_feature_on_noexcept(kernel_feature f) noexcept;
[[nodiscard]] bool kernel_feature_disabled_noexcept(kernel_feature f) noexcept;
// Parses a value of CORIO_DISABLE_FEATURES: bit i set means feature i is off. Empty
// items are ignored; an unknown name throws std::invalid_argument naming the valid ones.
[[nodiscard]] std::uint32_t parse_disabled_features(std::string_view value);
}  // namespace detail

}  // namespace corio
