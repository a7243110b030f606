#include "subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <span>
#include <stop_token>
#include <string_view>

#include "../coro/task_group.hpp"
#include "file_ops.hpp"
#include "kernel_features.hpp"
#include "process_ops.hpp"

extern char** environ;

namespace corio::subprocess {
namespace {

using namespace std::chrono_literals;

// RWF_NOSIGNAL (Linux 6.14): EPIPE without SIGPIPE. Older uapi headers lack it; older
// kernels reject it with EOPNOTSUPP, which the first write to a child's stdin probes.
constexpr int rwf_nosignal = 0x00000100;
// 0: not probed yet, 1: the kernel honours RWF_NOSIGNAL, -1: it does not (or a test
// forces the fallback). Relaxed: every thread may probe; all reach the same answer.
std::atomic<int> nosignal_state{0};
std::atomic<bool> no_pidfd{false};  // tests: act as if pidfd_open were missing

class fd_guard {
 public:
  explicit fd_guard(int fd = -1) noexcept : fd_(fd) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  void reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

// Keeps fds the child will receive out of 0..2, so one dup2 never overwrites the source of
// the next when the parent runs with a standard stream closed.
int above_stdio(int fd, const std::string& what) {
  if (fd > 2) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int error = errno;
  ::close(fd);
  if (moved < 0) corio::detail::throw_errno(error, what);
  return moved;
}

struct file_actions {
  posix_spawn_file_actions_t fa;
  file_actions() { ::posix_spawn_file_actions_init(&fa); }
  ~file_actions() { ::posix_spawn_file_actions_destroy(&fa); }
};
struct spawn_attr {
  posix_spawnattr_t attr;
  spawn_attr() { ::posix_spawnattr_init(&attr); }
  ~spawn_attr() { ::posix_spawnattr_destroy(&attr); }
};

void check_spawn_call(int error, const std::string& what) {
  if (error != 0) corio::detail::throw_errno(error, what);
}

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    const bool quote = a.empty() || a.find_first_of(" \t\n'\"\\$") != std::string::npos;
    s += quote ? "'" + a + "'" : a;
  }
  return s;
}

std::string describe_exit(int rc) {
  if (rc >= 0) return "exit status " + std::to_string(rc);
  return "killed by signal " + std::to_string(-rc) + " (" + ::strsignal(-rc) + ")";
}

// write(2) with SIGPIPE held back: blocked around the call, and consumed if this write
// raised it (and it was not already pending for some other reason).
ssize_t write_without_sigpipe(int fd, std::string_view data) {
  sigset_t pipe_set, old, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  ::sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  const ssize_t n = ::write(fd, data.data(), data.size());
  const int error = errno;
  if (n < 0 && error == EPIPE && !was_pending) {
    const timespec zero{};
    while (::sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = error;
  return n;
}

// One write to a child's stdin that can never SIGPIPE the parent; returns bytes written.
task<std::size_t> write_stdin(int fd, std::string_view data, op_options options, const std::string& program) {
  const unsigned n = static_cast<unsigned>(std::min<std::size_t>(data.size(), 1u << 20));
  auto describe = [&program] { return "write stdin of " + program; };
  if (nosignal_state.load(std::memory_order_relaxed) >= 0 &&
      !corio::detail::kernel_feature_disabled_noexcept(corio::kernel_feature::rwf_nosignal)) {
    try {
      const int written = co_await corio::detail::uring_awaiter(
          [&](io_uring_sqe* sqe) {
            io_uring_prep_write(sqe, fd, data.data(), n, at_current_position);
            sqe->rw_flags = rwf_nosignal;
          },
          describe, options);
      nosignal_state.store(1, std::memory_order_relaxed);
      co_return static_cast<std::size_t>(written);
    } catch (const std::system_error& e) {
      if (e.code() != std::errc::operation_not_supported ||
          nosignal_state.load(std::memory_order_relaxed) == 1)
        throw;
    }
    nosignal_state.store(-1, std::memory_order_relaxed);
  }
  // Fallback: wait for room through the ring, then a non-blocking write(2).
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  for (;;) {
    co_await corio::poll(fd, POLLOUT, options);
    const ssize_t written = write_without_sigpipe(fd, data.substr(0, n));
    if (written >= 0) co_return static_cast<std::size_t>(written);
    if (errno != EAGAIN && errno != EINTR) corio::detail::throw_errno(errno, describe());
  }
}

task<void> drain(int fd, std::string& out, op_options options) {
  // Reads land directly in `out` (std::string grows its capacity geometrically). The
  // chunk is what one read may return: a default pipe holds 64 KiB; a read that fills the
  // chunk doubles it, up to 1 MiB, so the zero-filled tail stays near the real size.
  std::size_t chunk = 64 * 1024;
  for (;;) {
    const std::size_t size = out.size();
    out.resize(size + chunk);
    const int n = co_await corio::read(fd, std::as_writable_bytes(std::span(out.data() + size, chunk)),
                                       at_current_position, options);
    out.resize(size + static_cast<std::size_t>(n));
    if (n == 0) co_return;
    if (static_cast<std::size_t>(n) == chunk) chunk = std::min<std::size_t>(chunk * 2, 1024 * 1024);
  }
}

struct group_stopper {
  task_group* group;
  void operator()() const noexcept { group->request_stop(); }
};

task<int> wait_owned(child c, op_options options) { co_return co_await c.wait(options); }

task<std::string> check_owned(child c, std::vector<std::string> argv, op_options options) {
  result r = co_await c.communicate(std::string(), options);
  if (r.returncode != 0)
    throw called_process_error(std::move(argv), r.returncode, std::move(r.out), std::move(r.err));
  co_return std::move(r.out);
}

// What the child does between fork and exec, decided in the parent.
struct launch_plan {
  int dup_from[3] = {-1, -1, -1};  // the fd to become 0, 1, 2 in the child; -1: inherit
  // The fds to become 3, 4, ... (options::pass_fd), each numbered at least 3 + count so
  // that no dup2 onto a target overwrites the source of a later one.
  const int* pass_from = nullptr;
  int pass_count = 0;
  const char* cwd = nullptr;
  bool close_fds = true;
  int death_signal = 0;  // PR_SET_PDEATHSIG; 0: none
  char** argv = nullptr;
  char** envp = nullptr;
};

// posix_spawnp: a vfork-style clone, the fast path. It cannot set PR_SET_PDEATHSIG.
pid_t start_spawned(const launch_plan& plan, const std::string& what) {
  file_actions actions;
  spawn_attr attr;
  for (int i = 0; i < 3; ++i)
    if (plan.dup_from[i] >= 0) check_spawn_call(::posix_spawn_file_actions_adddup2(&actions.fa, plan.dup_from[i], i), what);
  for (int i = 0; i < plan.pass_count; ++i)
    check_spawn_call(::posix_spawn_file_actions_adddup2(&actions.fa, plan.pass_from[i], 3 + i), what);
  if (plan.cwd) check_spawn_call(::posix_spawn_file_actions_addchdir_np(&actions.fa, plan.cwd), what);
  if (plan.close_fds)
    check_spawn_call(::posix_spawn_file_actions_addclosefrom_np(&actions.fa, 3 + plan.pass_count), what);

  sigset_t none, pipe_only;
  sigemptyset(&none);
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  check_spawn_call(::posix_spawnattr_setsigmask(&attr.attr, &none), what);
  check_spawn_call(::posix_spawnattr_setsigdefault(&attr.attr, &pipe_only), what);
  check_spawn_call(::posix_spawnattr_setflags(&attr.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
                   what);

  pid_t pid = -1;
  const int error = ::posix_spawnp(&pid, plan.argv[0], &actions.fa, &attr.attr, plan.argv, plan.envp);
  if (error != 0) {
    // posix_spawn reports a failed chdir and a failed exec alike; tell them apart so the
    // message points at the right culprit.
    if (plan.cwd) {
      const int dir = ::open(plan.cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (dir < 0) corio::detail::throw_errno(errno, what + ": chdir " + plan.cwd);
      ::close(dir);
    }
    corio::detail::throw_errno(error, what);
  }
  return pid;
}

// What a forked child that could not exec tells the parent through the error pipe.
struct launch_failure {
  int in_chdir;  // 1: chdir failed, 0: a later step (exec)
  int error;
};

// Closes every fd from `first` up except `keep` (close_range, Linux 5.9+; else one by one).
void close_fds_except(unsigned first, int keep) noexcept {
  auto close_span = [](unsigned first, unsigned last) {
    if (first > last) return;
    if (::syscall(SYS_close_range, first, last, 0) == 0) return;
    rlimit lim{};
    const unsigned top = ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 65536 ? lim.rlim_cur : 65536;
    for (unsigned fd = first; fd <= std::min(last, top); ++fd) ::close(static_cast<int>(fd));
  };
  close_span(first, static_cast<unsigned>(keep) - 1);
  close_span(static_cast<unsigned>(keep) + 1, ~0u);
}

// In the child of start_forked: async-signal-safe calls only (another thread of the parent
// may have held any lock at the fork).
[[noreturn]] void report_launch_failure(int error_fd, int in_chdir) noexcept {
  const launch_failure f{in_chdir, errno};
  (void)!::write(error_fd, &f, sizeof f);
  ::_exit(127);
}

[[noreturn]] void run_forked(const launch_plan& plan, pid_t parent, int error_fd) noexcept {
  auto fail = [error_fd](int in_chdir) { report_launch_failure(error_fd, in_chdir); };
  ::signal(SIGPIPE, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::prctl(PR_SET_PDEATHSIG, plan.death_signal) != 0) fail(0);
  // The parent may have died between fork and prctl: then nobody will send the signal.
  if (::getppid() != parent) {
    ::raise(plan.death_signal);
    ::_exit(127);
  }
  for (int i = 0; i < 3; ++i)
    if (plan.dup_from[i] >= 0 && ::dup2(plan.dup_from[i], i) < 0) fail(0);
  for (int i = 0; i < plan.pass_count; ++i)
    if (::dup2(plan.pass_from[i], 3 + i) < 0) fail(0);
  if (plan.cwd && ::chdir(plan.cwd) != 0) fail(1);
  if (plan.close_fds) close_fds_except(static_cast<unsigned>(3 + plan.pass_count), error_fd);
  ::execvpe(plan.argv[0], plan.argv, plan.envp);
  report_launch_failure(error_fd, 0);
}

// fork + prctl(PR_SET_PDEATHSIG) + exec: for children that must die with the parent.
// fork() copies the parent's page tables (slower than posix_spawn for a large parent);
// exec errors come back through a close-on-exec pipe.
pid_t start_forked(const launch_plan& plan, const std::string& what) {
  int errors[2];
  corio::detail::check_errno(::pipe2(errors, O_CLOEXEC), what + ": pipe");
  fd_guard error_read(errors[0]), error_write(errors[1]);
  if (errors[1] < 3 + plan.pass_count) {  // out of the way of the passed fds' numbers
    errors[1] = corio::detail::check_errno(::fcntl(errors[1], F_DUPFD_CLOEXEC, 3 + plan.pass_count), what + ": pipe");
    error_write.reset(errors[1]);
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) corio::detail::throw_errno(errno, what + ": fork");
  if (pid == 0) run_forked(plan, parent, errors[1]);
  error_write.reset(-1);
  launch_failure f{};
  ssize_t n;
  while ((n = ::read(errors[0], &f, sizeof f)) < 0 && errno == EINTR) {
  }
  if (n == 0) return pid;  // exec closed the pipe: the program runs
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof f)) corio::detail::throw_errno(EPROTO, what + ": child setup");
  if (f.in_chdir) corio::detail::throw_errno(f.error, what + ": chdir " + plan.cwd);
  corio::detail::throw_errno(f.error, what);
}

}  // namespace

namespace testing {
void force_write_fallback(bool on) noexcept { nosignal_state.store(on ? -1 : 0, std::memory_order_relaxed); }
void force_no_pidfd(bool on) noexcept { no_pidfd.store(on, std::memory_order_relaxed); }
}  // namespace testing

called_process_error::called_process_error(std::vector<std::string> argv, int returncode, std::string out,
                                           std::string err)
    : std::runtime_error([&] {
        std::string what = "check_output " + join(argv) + ": " + describe_exit(returncode);
        std::string_view tail = err;
        while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.remove_suffix(1);
        if (tail.size() > 1024) tail = tail.substr(tail.size() - 1024);
        if (!tail.empty()) what += "; stderr: " + std::string(tail);
        return what;
      }()),
      argv_(std::move(argv)),
      returncode_(returncode),
      out_(std::move(out)),
      err_(std::move(err)) {}

// --- child ------------------------------------------------------------------------------

child& child::operator=(child&& o) noexcept {
  if (this == &o) return *this;
  this->~child();
  pid_ = std::exchange(o.pid_, -1);
  pidfd_ = std::exchange(o.pidfd_, -1);
  for (int i = 0; i < 3; ++i) fds_[i] = std::exchange(o.fds_[i], -1);
  program_ = std::move(o.program_);
  returncode_ = std::exchange(o.returncode_, std::nullopt);
  return *this;
}

child::~child() {
  if (pid_ > 0 && !returncode_) {
    // Safe default: never leave a zombie or an orphan behind an object that is gone.
    corio::detail::signal_child(pid_, pidfd_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    returncode_ = corio::detail::decode_wait_status(status);
  }
  close_fds();
  if (pidfd_ >= 0) ::close(std::exchange(pidfd_, -1));
  pid_ = -1;
}

void child::close_fds() noexcept {
  for (int& fd : fds_)
    if (fd >= 0) ::close(std::exchange(fd, -1));
}

void child::close_stdin() noexcept {
  if (fds_[0] >= 0) ::close(std::exchange(fds_[0], -1));
}

std::optional<int> child::poll() {
  if (returncode_ || pid_ <= 0) return returncode_;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0 || (r < 0 && errno == EINTR)) return std::nullopt;
  if (r < 0)  // ECHILD: SIGCHLD set to SIG_IGN lets the kernel reap our children
    corio::detail::throw_errno(errno, "wait " + program_ + " (pid " + std::to_string(pid_) + ")");
  returncode_ = corio::detail::decode_wait_status(status);
  if (pidfd_ >= 0) ::close(std::exchange(pidfd_, -1));
  return returncode_;
}

void child::send_signal(int sig) {
  if (pid_ <= 0 || returncode_) return;
  const long r = corio::detail::signal_child(pid_, pidfd_, sig);
  if (r < 0 && errno != ESRCH)
    corio::detail::throw_errno(
        errno, "signal " + std::to_string(sig) + " to " + program_ + " (pid " + std::to_string(pid_) + ")");
}

void child::throw_timed_out(const char* what) {
  throw timed_out(std::string(what) + " " + program_ + " (pid " + std::to_string(pid_) +
                  ") killed at its deadline");
}

task<void> child::kill_and_reap() {
  send_signal(SIGKILL);
  // Not cancellable: the caller is already failing and must not leave a zombie behind.
  const op_options forever{.token = &corio::detail::never_stop, .deadline = std::nullopt};
  corio::detail::exit_wait waits(1ms);  // without a pidfd: a SIGKILLed child ends soon
  while (!poll()) co_await waits.next(pidfd_, forever);
}

task<int> child::wait(op_options options) {
  if (pid_ <= 0) throw std::logic_error("corio::subprocess::child::wait: this child owns no process");
  corio::detail::exit_wait waits;
  for (;;) {
    if (auto rc = poll()) co_return *rc;
    bool late = false;
    try {
      co_await waits.next(pidfd_, options);
    } catch (const timed_out&) {
      late = true;
    }
    if (late) {
      co_await kill_and_reap();
      throw_timed_out("wait");
    }
  }
}

task<result> child::communicate(std::string input, op_options options) {
  if (pid_ <= 0) throw std::logic_error("corio::subprocess::child::communicate: this child owns no process");
  if (!input.empty() && fds_[0] < 0)
    throw std::logic_error("communicate " + program_ +
                           ": input given but stdin is not a pipe (use stdio::pipe())");
  result r;
  bool late = false;
  {
    task_group group;
    // The group forwards the ambient token by itself; an explicit one is forwarded here.
    std::optional<std::stop_callback<group_stopper>> forward;
    if (options.token) forward.emplace(*options.token, group_stopper{&group});
    const op_options inner{.token = nullptr, .deadline = options.deadline};
    if (fds_[0] >= 0)
      group.spawn([this, &input, inner]() -> task<void> {
        std::string_view rest = input;
        try {
          while (!rest.empty()) rest.remove_prefix(co_await write_stdin(fds_[0], rest, inner, program_));
        } catch (const std::system_error& e) {
          // A child that exits without reading all its input is not an error (Python
          // ignores BrokenPipeError here too).
          if (e.code() != std::errc::broken_pipe) {
            close_stdin();
            throw;
          }
        }
        close_stdin();
      });
    if (fds_[1] >= 0) group.spawn(drain(fds_[1], r.out, inner));
    if (fds_[2] >= 0) group.spawn(drain(fds_[2], r.err, inner));
    try {
      co_await group.wait();
    } catch (const timed_out&) {
      late = true;
    }
  }
  if (late) {
    co_await kill_and_reap();
    throw_timed_out("communicate");
  }
  r.returncode = co_await wait(options);
  co_return r;
}

// --- spawn ------------------------------------------------------------------------------

child spawn(std::vector<std::string> argv, options opts) {
  if (argv.empty())
    throw std::invalid_argument("corio::subprocess::spawn: empty argv (argv[0] names the program)");
  if (argv[0].empty()) throw std::invalid_argument("corio::subprocess::spawn: empty program name in argv[0]");
  if (opts.in_.which() == stdio::kind::to_stdout || opts.out_.which() == stdio::kind::to_stdout)
    throw std::invalid_argument("corio::subprocess::spawn: stdio::to_stdout() is only for stderr");

  child c;
  c.program_ = argv[0];
  const std::string what = "spawn " + c.program_;
  launch_plan plan;
  fd_guard child_ends[3];
  const stdio* streams[3] = {&opts.in_, &opts.out_, &opts.err_};
  for (int i = 0; i < 3; ++i) {
    const stdio& s = *streams[i];
    switch (s.which()) {
      case stdio::kind::inherit:
        continue;
      case stdio::kind::to_stdout:
        plan.dup_from[i] = 1;  // stdout is already in place: it comes first
        continue;
      case stdio::kind::pipe: {
        int p[2];
        corio::detail::check_errno(::pipe2(p, O_CLOEXEC), what + ": pipe");
        const int theirs = i == 0 ? p[0] : p[1], ours = i == 0 ? p[1] : p[0];
        c.fds_[i] = ours;
        child_ends[i].reset(above_stdio(theirs, what + ": pipe"));
        break;
      }
      case stdio::kind::null:
        child_ends[i].reset(above_stdio(
            corio::detail::check_errno(::open("/dev/null", (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC),
                                       what + ": open /dev/null"),
            what));
        break;
      case stdio::kind::file: {
        const int flags = s.flags() != -1 ? s.flags() : i == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC;
        child_ends[i].reset(
            above_stdio(corio::detail::check_errno(::open(s.path().c_str(), flags | O_CLOEXEC, s.mode()),
                                                   what + ": open " + s.path()),
                        what));
        break;
      }
      case stdio::kind::fd:
        child_ends[i].reset(corio::detail::check_errno(::fcntl(s.borrowed_fd(), F_DUPFD_CLOEXEC, 3),
                                                       what + ": fd " + std::to_string(s.borrowed_fd())));
        break;
    }
    plan.dup_from[i] = child_ends[i].get();
  }
  // Copies of the passed fds numbered above every target (3 .. 3 + count - 1).
  const int pass_count = static_cast<int>(opts.pass_fds_.size());
  std::vector<fd_guard> passed(opts.pass_fds_.size());
  std::vector<int> pass_from;
  for (std::size_t k = 0; k < opts.pass_fds_.size(); ++k) {
    const int fd = opts.pass_fds_[k];
    passed[k].reset(corio::detail::check_errno(::fcntl(fd, F_DUPFD_CLOEXEC, 3 + pass_count),
                                               what + ": pass fd " + std::to_string(fd)));
    pass_from.push_back(passed[k].get());
  }
  plan.pass_from = pass_from.data();
  plan.pass_count = pass_count;
  if (!opts.cwd_.empty()) plan.cwd = opts.cwd_.c_str();
  plan.close_fds = opts.close_fds_;
  plan.death_signal = opts.parent_death_signal_;

  std::vector<std::string> env;
  if (opts.inherit_env_)
    for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  for (const std::string& entry : opts.env_) {
    const std::string_view name = std::string_view(entry).substr(0, entry.find('=') + 1);  // "NAME="
    std::erase_if(env, [&](const std::string& e) { return e.starts_with(name); });
    env.push_back(entry);
  }
  std::vector<char*> envp, argp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (auto& a : argv) argp.push_back(a.data());
  argp.push_back(nullptr);
  plan.argv = argp.data();
  plan.envp = envp.data();

  const pid_t pid = plan.death_signal != 0 ? start_forked(plan, what) : start_spawned(plan, what);
  c.pid_ = pid;
  c.pidfd_ = corio::detail::open_pidfd(pid, no_pidfd.load(std::memory_order_relaxed));  // safe: the pid cannot be reused before we reap it
  return c;
}

task<int> call(std::vector<std::string> argv, options opts, op_options wait_options) {
  return wait_owned(spawn(std::move(argv), std::move(opts)), wait_options);
}

task<std::string> check_output(std::vector<std::string> argv, options opts, op_options wait_options) {
  opts.out(stdio::pipe());
  if (opts.err_.which() == stdio::kind::inherit) opts.err(stdio::pipe());
  std::vector<std::string> copy = argv;
  return check_owned(spawn(std::move(argv), std::move(opts)), std::move(copy), wait_options);
}

}  // namespace corio::subprocess
