#pragma once
// subprocess: run external programs from a loop (Python's subprocess.Popen / call /
// check_output).
//
//     namespace sp = corio::subprocess;
//     sp::child c = sp::spawn({"sort"}, sp::options{}.in(sp::stdio::pipe()).out(sp::stdio::pipe()));
//     sp::result r = co_await c.communicate("3\n1\n2\n");   // r.out == "1\n2\n3\n"
//     std::vector<std::string> exit3{"sh", "-c", "exit 3"}, echo{"echo", "hi"};
//     int rc = co_await sp::call(exit3);                // 3
//     std::string s = co_await sp::check_output(echo);  // "hi\n"
//
// (GCC 12 rejects a braced list of string literals inside a co_await expression, hence
// the named argv; clang accepts `co_await sp::call({"sh", "-c", "exit 3"})`.)
//
// The model
// - spawn() starts the program at once (posix_spawnp, so a vfork-style clone: no copy of
//   the parent's page tables; fork + exec with options::parent_death_signal) and returns a `child` that owns the process and the parent's
//   ends of its pipes. The program is looked up in the parent's PATH. The child's signal
//   mask is emptied and SIGPIPE reset to its default, so a parent that blocks signals for
//   a signalfd (signal.hpp) or ignores SIGPIPE does not pass that on.
// - Failures to start throw in the caller, naming the program: a missing program or a
//   bad cwd gives std::system_error "spawn nosuchprog: No such file or directory" (the
//   exec error reaches the parent through posix_spawn's CLOEXEC channel); an empty argv
//   gives std::invalid_argument.
// - Every fd the parent creates (pipes, opened files, the pidfd) is O_CLOEXEC, and by
//   default the child closes every fd above 2 before exec (close_fds, as in Python), so
//   children never inherit another child's pipe: a reader always sees end-of-file.
// - Waiting for exit polls a pidfd (pidfd_open, Linux 5.3+) through the ring, then reaps
//   with waitpid; without pidfd support it falls back to polling waitpid with a timer.
//   returncode follows Python: the exit status, or minus the signal that killed it.
// - communicate() writes stdin, drains stdout and stderr as three concurrent ring
//   operations (a task_group), then waits for exit; no pipe can fill up and deadlock.
//   Writes to stdin carry RWF_NOSIGNAL (Linux 6.14+; probed): a child that exits without
//   reading its input gives EPIPE, which communicate ignores, never a SIGPIPE to the
//   parent. Older kernels: the write is issued with write(2) after a ring poll, SIGPIPE
//   blocked around it and any pending SIGPIPE it raised consumed.
// - Deadlines: op_options::deadline (corio::within(2s)) on wait()/communicate()/call()
//   kills the child with SIGKILL, reaps it, and throws corio::timed_out naming the
//   program. A stop request throws operation_cancelled and leaves the child running.
//
// Who may touch it: a child is used on one loop's thread. wait()/communicate() keep a
// pointer to the child: it must outlive them and must not be moved while they run.
// Destruction: a child still running (not reaped) when destroyed is SIGKILLed and
// reaped, blocking the thread for the moment it takes a killed process to exit; pipes
// are closed. So a child object never leaks a zombie or an fd (Python's Popen leaves the
// process running; corio chooses the safe default: wait() first to let it finish).

#include <sys/types.h>

#include <csignal>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../coro/task.hpp"
#include "detail/uring_awaiter.hpp"

namespace corio::subprocess {

class child;

// Where one of the child's standard streams goes.
class stdio {
 public:
  enum class kind { inherit, pipe, null, file, fd, to_stdout };

  // The parent's own stream (the default).
  static stdio inherit() { return stdio(kind::inherit); }
  // A pipe to the parent: child::stdin_fd()/stdout_fd()/stderr_fd(), communicate().
  static stdio pipe() { return stdio(kind::pipe); }
  // /dev/null.
  static stdio null() { return stdio(kind::null); }
  // A file opened by the parent (so errors name it) for the child. flags -1 means
  // O_RDONLY for stdin and O_WRONLY | O_CREAT | O_TRUNC for stdout and stderr.
  static stdio file(std::string path, int flags = -1, mode_t mode = 0644) {
    stdio s(kind::file);
    s.path_ = std::move(path);
    s.flags_ = flags;
    s.mode_ = mode;
    return s;
  }
  // An fd the caller owns (borrowed: duplicated into the child, never closed by corio).
  static stdio fd(int fd) {
    stdio s(kind::fd);
    s.fd_ = fd;
    return s;
  }
  // For stderr only: wherever stdout goes (Python's subprocess.STDOUT, sh's 2>&1).
  static stdio to_stdout() { return stdio(kind::to_stdout); }

  kind which() const noexcept { return kind_; }
  const std::string& path() const noexcept { return path_; }
  int flags() const noexcept { return flags_; }
  mode_t mode() const noexcept { return mode_; }
  int borrowed_fd() const noexcept { return fd_; }

 private:
  explicit stdio(kind k) : kind_(k) {}
  kind kind_;
  std::string path_;
  int flags_ = -1;
  mode_t mode_ = 0644;
  int fd_ = -1;
};

// How to start the program. A class with chainable setters, not an aggregate, on purpose:
// GCC 12 destroys an aggregate temporary with non-trivial members twice when it is built
// inside a co_await expression, and `co_await call(argv, options{}.cwd("/tmp"))` is
// natural code.
class options {
 public:
  options() = default;

  options& in(stdio s) {
    in_ = std::move(s);
    return *this;
  }
  options& out(stdio s) {
    out_ = std::move(s);
    return *this;
  }
  options& err(stdio s) {
    err_ = std::move(s);
    return *this;
  }
  // The child's working directory (relative program paths then resolve against it).
  options& cwd(std::string dir) {
    cwd_ = std::move(dir);
    return *this;
  }
  // Sets NAME=value in the child's environment, on top of the parent's (or of nothing
  // after clear_env()).
  options& env(std::string name, std::string value) {
    env_.push_back(std::move(name) + '=' + std::move(value));
    return *this;
  }
  // Starts the child's environment empty instead of copying the parent's.
  options& clear_env() {
    inherit_env_ = false;
    return *this;
  }
  // Default true: the child closes every fd above 2 (all corio fds are CLOEXEC anyway).
  options& close_fds(bool on) {
    close_fds_ = on;
    return *this;
  }
  // Hands the child a copy of `fd` (borrowed: duplicated, never closed by corio), as fd
  // number 3 + k in the child, k counting the earlier pass_fd calls on these options
  // (first call: 3, then 4, ...), without close-on-exec there. close_fds still closes
  // every other fd above 2. How the program learns the number is up to the caller (an
  // argument or an environment variable: ipc/handoff.hpp's child_handoff sets one).
  options& pass_fd(int fd) {
    pass_fds_.push_back(fd);
    return *this;
  }
  // How many fds pass_fd has added: the next one becomes fd 3 + passed_fd_count().
  [[nodiscard]] int passed_fd_count() const noexcept { return static_cast<int>(pass_fds_.size()); }
  // The signal the child gets when its parent dies (prctl(PR_SET_PDEATHSIG), set in the
  // child before exec, then getppid() re-checked so a parent that died during the start is
  // not missed); 0, the default: none, the program outlives its parent. The kernel sends
  // it when the *thread* that called spawn() exits: spawn from a thread that lives as long
  // as the program should. posix_spawn cannot set it, so such a child is started with
  // fork() + exec (page tables copied: slower for a large parent).
  options& parent_death_signal(int sig) {
    parent_death_signal_ = sig;
    return *this;
  }

 private:
  friend child spawn(std::vector<std::string> argv, options opts);
  friend task<std::string> check_output(std::vector<std::string> argv, options opts, op_options wait_options);

  stdio in_ = stdio::inherit(), out_ = stdio::inherit(), err_ = stdio::inherit();
  std::string cwd_;
  std::vector<std::string> env_;  // NAME=value, later entries win
  bool inherit_env_ = true;
  bool close_fds_ = true;
  std::vector<int> pass_fds_;  // the child's fds 3, 4, ...
  int parent_death_signal_ = 0;
};

// What communicate() collected.
struct result {
  std::string out;  // stdout, if piped
  std::string err;  // stderr, if piped
  int returncode = 0;
};

// check_output() on a non-zero exit (Python's CalledProcessError). what():
// "check_output false: exit status 1" (+ "; stderr: ..." when the child wrote any).
class called_process_error : public std::runtime_error {
 public:
  called_process_error(std::vector<std::string> argv, int returncode, std::string out, std::string err);
  int returncode() const noexcept { return returncode_; }
  const std::vector<std::string>& argv() const noexcept { return argv_; }
  const std::string& output() const noexcept { return out_; }
  const std::string& error_output() const noexcept { return err_; }

 private:
  std::vector<std::string> argv_;
  int returncode_;
  std::string out_, err_;
};

class child {
 public:
  child() = default;  // owns nothing
  child(child&& o) noexcept { *this = std::move(o); }
  child& operator=(child&& o) noexcept;
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child();  // SIGKILL + reap if still running; closes the pipes (see the contract above)

  pid_t pid() const noexcept { return pid_; }
  const std::string& program() const noexcept { return program_; }
  // The parent's pipe ends, or -1 when that stream is not a pipe (or was closed).
  int stdin_fd() const noexcept { return fds_[0]; }
  int stdout_fd() const noexcept { return fds_[1]; }
  int stderr_fd() const noexcept { return fds_[2]; }
  // Closes the parent's end of stdin: the child reads end-of-file.
  void close_stdin() noexcept;

  // Python's returncode: empty until the child has been reaped.
  std::optional<int> returncode() const noexcept { return returncode_; }
  // Reaps the child if it has exited (never blocks); returns returncode().
  std::optional<int> poll();

  // Waits for exit and returns the returncode. With a deadline: timed_out after killing.
  [[nodiscard]] task<int> wait(op_options options = {});
  // Writes `input` to stdin (then closes it), reads stdout and stderr to their end, all
  // concurrently, then waits for exit. Input for a child whose stdin is not a pipe throws
  // std::logic_error. A deadline kills the child and throws timed_out.
  [[nodiscard]] task<result> communicate(std::string input = {}, op_options options = {});

  // Signals to a reaped child are ignored (Python does the same).
  void send_signal(int sig);
  void terminate() { send_signal(SIGTERM); }
  void kill() { send_signal(SIGKILL); }

 private:
  friend child spawn(std::vector<std::string> argv, options opts);
  task<void> kill_and_reap();
  void close_fds() noexcept;
  [[noreturn]] void throw_timed_out(const char* what);

  pid_t pid_ = -1;
  int pidfd_ = -1;  // -1 on kernels without pidfd_open
  int fds_[3] = {-1, -1, -1};
  std::string program_;
  std::optional<int> returncode_;
};

// Starts argv[0] (looked up in PATH) with the given arguments. Throws std::invalid_argument
// for an empty argv, std::system_error naming the program (or the file) when it cannot
// start.
child spawn(std::vector<std::string> argv, options opts = {});

// Runs the program to its end; returns its returncode (Python's subprocess.call). Starts
// it at once (errors throw here, not at co_await).
[[nodiscard]] task<int> call(std::vector<std::string> argv, options opts = {}, op_options wait_options = {});

// Runs the program with stdout (and stderr, unless redirected in opts) captured; returns
// stdout, or throws called_process_error on a non-zero returncode.
[[nodiscard]] task<std::string> check_output(std::vector<std::string> argv, options opts = {},
                                             op_options wait_options = {});

namespace testing {
// Tests only: makes writes to stdin take the pre-6.14 path (ring poll + write(2) with
// SIGPIPE held back) as if the kernel lacked RWF_NOSIGNAL; false re-probes.
void force_write_fallback(bool on) noexcept;
// Tests only: children spawned while on get no pidfd, as on kernels before 5.3, so wait()
// polls waitpid on a timer and signals go through kill(2).
void force_no_pidfd(bool on) noexcept;
}  // namespace testing

}  // namespace corio::subprocess
