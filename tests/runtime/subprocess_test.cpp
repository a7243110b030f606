// Subprocesses: pipes round trips, communicate without deadlock, exit codes, errors,
// timeouts, call/check_output, and no leaked fds or zombies.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <corio/coro/task_group.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/subprocess.hpp>
#include <corio/runtime/timer.hpp>

#include "../ipc/ipc_test_support.hpp"
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using corio::task;
using steady = std::chrono::steady_clock;
namespace sp = corio::subprocess;

namespace {

sp::options piped() {
  return sp::options{}.in(sp::stdio::pipe()).out(sp::stdio::pipe()).err(sp::stdio::pipe());
}

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  REQUIRE(d != nullptr);
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the DIR's own fd
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

std::string temp_path(const char* name) {
  return std::string("/tmp/corio_subprocess_") + std::to_string(::getpid()) + "_" + name;
}

}  // namespace

TEST_CASE("echo's stdout comes back through a pipe with returncode 0") {
  corio::loop lp;
  auto main = []() -> task<sp::result> {
    sp::child c = sp::spawn({"echo", "hello", "world"}, sp::options{}.out(sp::stdio::pipe()));
    CHECK(c.pid() > 0);
    CHECK(c.program() == "echo");
    CHECK(c.stdin_fd() == -1);
    CHECK(c.stderr_fd() == -1);
    co_return co_await c.communicate();
  };
  const sp::result r = lp.run(main());
  CHECK(r.out == "hello world\n");
  CHECK(r.err == "");
  CHECK(r.returncode == 0);
}

TEST_CASE("communicate feeds sort's stdin and returns its sorted stdout") {
  corio::loop lp;
  auto main = []() -> task<sp::result> {
    sp::child c = sp::spawn({"sort"}, piped());
    co_return co_await c.communicate("3\n1\n2\n");
  };
  const sp::result r = lp.run(main());
  CHECK(r.out == "1\n2\n3\n");
  CHECK(r.err == "");
  CHECK(r.returncode == 0);
}

TEST_CASE("50 MB of stdout and 10 MB of stderr written concurrently are drained without deadlock") {
  corio::loop lp;
  auto main = []() -> task<sp::result> {
    sp::child c =
        sp::spawn({"sh", "-c", "head -c 52428800 /dev/zero & head -c 10485760 /dev/zero >&2; wait"}, piped());
    co_return co_await c.communicate();
  };
  const sp::result r = lp.run(main());
  CHECK(r.returncode == 0);
  REQUIRE(r.out.size() == 52428800u);
  REQUIRE(r.err.size() == 10485760u);
  CHECK(std::count(r.out.begin(), r.out.end(), '\0') == 52428800);
  CHECK(std::count(r.err.begin(), r.err.end(), '\0') == 10485760);
}

TEST_CASE("input far larger than the pipe buffer round-trips through cat") {
  corio::loop lp;
  const std::string input = pattern(8 * 1024 * 1024 + 123);
  auto main = [&]() -> task<sp::result> {
    sp::child c = sp::spawn({"cat"}, piped());
    co_return co_await c.communicate(input);
  };
  const sp::result r = lp.run(main());
  CHECK(r.returncode == 0);
  CHECK(r.out.size() == input.size());
  CHECK(r.out == input);
}

TEST_CASE("a child that stops reading its input early ends normally, without SIGPIPE in the parent") {
  auto run = [] {
    corio::loop lp;
    const std::string input = pattern(4 * 1024 * 1024);
    auto main = [&]() -> task<sp::result> {
      sp::child c = sp::spawn({"head", "-c", "5"}, piped());
      co_return co_await c.communicate(input);
    };
    const sp::result r = lp.run(main());
    CHECK(r.out == input.substr(0, 5));
    CHECK(r.returncode == 0);
  };
  SUBCASE("with RWF_NOSIGNAL writes (or the probed fallback)") { run(); }
  SUBCASE("with the poll + write(2) fallback") {
    sp::testing::force_write_fallback(true);
    run();
    sp::testing::force_write_fallback(false);
  }
}

TEST_CASE("the fallback write path round-trips large input through cat") {
  sp::testing::force_write_fallback(true);
  corio::loop lp;
  const std::string input = pattern(3 * 1024 * 1024 + 7);
  auto main = [&]() -> task<sp::result> {
    sp::child c = sp::spawn({"cat"}, piped());
    co_return co_await c.communicate(input);
  };
  const sp::result r = lp.run(main());
  sp::testing::force_write_fallback(false);
  CHECK(r.out == input);
}

TEST_CASE("returncode is the exit status, or minus the signal that killed the child") {
  corio::loop lp;
  auto main = []() -> task<void> {
    sp::child three = sp::spawn({"sh", "-c", "exit 3"});
    CHECK(co_await three.wait() == 3);
    CHECK(three.returncode() == 3);
    CHECK(co_await three.wait() == 3);  // waiting again returns the same code

    sp::child sleeper = sp::spawn({"sleep", "10"});
    CHECK(sleeper.poll() == std::nullopt);
    CHECK(sleeper.returncode() == std::nullopt);
    sleeper.kill();
    CHECK(co_await sleeper.wait() == -SIGKILL);
    sleeper.kill();  // a reaped child ignores signals

    sp::child term = sp::spawn({"sleep", "10"});
    term.terminate();
    CHECK(co_await term.wait() == -SIGTERM);
  };
  lp.run(main());
}

TEST_CASE("a missing program fails spawn with a message naming it") {
  const int before = open_fds();
  try {
    (void)sp::spawn({"corio-no-such-program", "x"}, piped());
    FAIL("spawn did not throw");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()) == "spawn corio-no-such-program: No such file or directory");
    CHECK(e.code().value() == ENOENT);
  }
  CHECK(open_fds() == before);  // the pipes made for it are closed
}

TEST_CASE("a file that is not executable fails spawn with EACCES") {
  const std::string path = temp_path("not_exec");
  std::ofstream(path) << "#!/bin/sh\necho hi\n";
  try {
    (void)sp::spawn({path});
    FAIL("spawn did not throw");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()) == "spawn " + path + ": Permission denied");
  }
  ::unlink(path.c_str());
}

TEST_CASE("bad argv and bad stdio fail with clear errors") {
  CHECK_THROWS_WITH_AS((void)sp::spawn({}),
                       "corio::subprocess::spawn: empty argv (argv[0] names the program)",
                       std::invalid_argument);
  CHECK_THROWS_AS((void)sp::spawn({""}), std::invalid_argument);
  CHECK_THROWS_AS((void)sp::spawn({"cat"}, sp::options{}.out(sp::stdio::to_stdout())), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)sp::spawn({"cat"}, sp::options{}.in(sp::stdio::file("/no/such/input"))),
                       "spawn cat: open /no/such/input: No such file or directory", std::system_error);
  CHECK_THROWS_WITH_AS((void)sp::spawn({"pwd"}, sp::options{}.cwd("/no/such/dir")),
                       "spawn pwd: chdir /no/such/dir: No such file or directory", std::system_error);
}

TEST_CASE("cwd and environment are honoured") {
  corio::loop lp;
  auto main = []() -> task<void> {
    sp::child c = sp::spawn({"sh", "-c", "pwd; echo $FOO; echo ${HOME:+home-set}"},
                            sp::options{}.out(sp::stdio::pipe()).cwd("/tmp").env("FOO", "bar baz"));
    const sp::result r = co_await c.communicate();
    CHECK(r.out == "/tmp\nbar baz\n" + std::string(::getenv("HOME") ? "home-set\n" : "\n"));

    sp::child e =
        sp::spawn({"/usr/bin/env"},
                  sp::options{}.out(sp::stdio::pipe()).clear_env().env("A", "1").env("B", "2").env("A", "3"));
    const sp::result r2 = co_await e.communicate();
    CHECK(r2.out == "B=2\nA=3\n");
  };
  lp.run(main());
}

TEST_CASE("stdout goes to /dev/null, to a file, or with stderr into one pipe") {
  corio::loop lp;
  const std::string path = temp_path("out");
  auto main = [&]() -> task<void> {
    sp::child quiet = sp::spawn({"echo", "lost"}, sp::options{}.out(sp::stdio::null()));
    const sp::result r = co_await quiet.communicate();
    CHECK(r.out == "");
    CHECK(r.returncode == 0);

    sp::child to_file = sp::spawn({"echo", "kept"}, sp::options{}.out(sp::stdio::file(path)));
    CHECK(co_await to_file.wait() == 0);
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    CHECK(ss.str() == "kept\n");

    sp::child both = sp::spawn({"sh", "-c", "echo a; echo b >&2; echo c"},
                               sp::options{}.out(sp::stdio::pipe()).err(sp::stdio::to_stdout()));
    const sp::result r3 = co_await both.communicate();
    CHECK(r3.out == "a\nb\nc\n");
    CHECK(r3.err == "");

    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    sp::child via_fd = sp::spawn({"echo", "through an fd"}, sp::options{}.out(sp::stdio::fd(p[1])));
    CHECK(co_await via_fd.wait() == 0);
    ::close(p[1]);
    char buf[64] = {};
    CHECK(::read(p[0], buf, sizeof buf) == 14);
    CHECK(std::string(buf) == "through an fd\n");
    ::close(p[0]);
  };
  lp.run(main());
  ::unlink(path.c_str());
}

TEST_CASE("a deadline kills the child, reaps it and throws timed_out naming the program") {
  corio::loop lp;
  auto main = []() -> task<void> {
    sp::child c = sp::spawn({"sleep", "10"}, piped());
    const auto start = steady::now();
    try {
      (void)co_await c.communicate("", corio::within(200ms));
      FAIL("communicate did not time out");
    } catch (const corio::timed_out& e) {
      const std::string what = e.what();
      CHECK(what == "communicate sleep (pid " + std::to_string(c.pid()) +
                        ") killed at its deadline: Connection timed out");
    }
    CHECK(steady::now() - start < 5s);
    CHECK(c.returncode() == -SIGKILL);

    sp::child w = sp::spawn({"sleep", "10"});
    CHECK_THROWS_AS((void)co_await w.wait(corio::within(100ms)), corio::timed_out);
    CHECK(w.returncode() == -SIGKILL);

    const std::vector<std::string> sleep10{"sleep", "10"};  // see the GCC 12 note in docs/subprocess.md
    CHECK_THROWS_AS((void)co_await sp::call(sleep10, {}, corio::within(100ms)), corio::timed_out);
    CHECK(steady::now() - start < 8s);
  };
  lp.run(main());
}

TEST_CASE("a stop request cancels wait and leaves the child running") {
  corio::loop lp;
  auto main = []() -> task<void> {
    sp::child c = sp::spawn({"sleep", "10"});
    std::stop_source stop;
    const std::stop_token token = stop.get_token();
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await corio::sleep_for(30ms);
      stop.request_stop();
    });
    CHECK_THROWS_AS((void)co_await c.wait({.token = &token, .deadline = {}}), corio::operation_cancelled);
    co_await g.wait();
    CHECK(c.poll() == std::nullopt);
    c.kill();
    CHECK(co_await c.wait() == -SIGKILL);
  };
  lp.run(main());
}

TEST_CASE("call returns the returncode and check_output the stdout") {
  corio::loop lp;
  auto main = []() -> task<void> {
    // GCC 12 rejects a braced list of string literals inside a co_await expression
    // ("array used as initializer"), so argv vectors are named first.
    const std::vector<std::string> exit3{"sh", "-c", "exit 3"}, truth{"true"}, echo{"echo", "hi"}, pwd{"pwd"};
    CHECK(co_await sp::call(exit3) == 3);
    CHECK(co_await sp::call(truth, sp::options{}.out(sp::stdio::null())) == 0);
    CHECK(co_await sp::check_output(echo) == "hi\n");
    CHECK(co_await sp::check_output(pwd, sp::options{}.cwd("/")) == "/\n");
    auto started = sp::call({"sh", "-c", "exit 4"});  // or keep the task in a variable
    CHECK(co_await std::move(started) == 4);
  };
  lp.run(main());
}

TEST_CASE("check_output throws called_process_error with the code and stderr") {
  corio::loop lp;
  auto main = []() -> task<void> {
    try {
      const std::vector<std::string> argv{"sh", "-c", "echo partial; echo boom >&2; exit 3"};
      (void)co_await sp::check_output(argv);
      FAIL("check_output did not throw");
    } catch (const sp::called_process_error& e) {
      CHECK(e.returncode() == 3);
      CHECK(e.output() == "partial\n");
      CHECK(e.error_output() == "boom\n");
      CHECK(e.argv() == std::vector<std::string>{"sh", "-c", "echo partial; echo boom >&2; exit 3"});
      CHECK(std::string(e.what()) ==
            "check_output sh -c 'echo partial; echo boom >&2; exit 3': exit status 3; stderr: boom");
    }
    try {
      const std::vector<std::string> argv{"sh", "-c", "kill -9 $$"};
      (void)co_await sp::check_output(argv);
      FAIL("check_output did not throw");
    } catch (const sp::called_process_error& e) {
      CHECK(e.returncode() == -9);
      CHECK(std::string(e.what()) == "check_output sh -c 'kill -9 $$': killed by signal 9 (Killed)");
    }
    const std::vector<std::string> missing{"corio-no-such-program"};
    CHECK_THROWS_WITH_AS((void)co_await sp::check_output(missing),
                         "spawn corio-no-such-program: No such file or directory", std::system_error);
  };
  lp.run(main());
}

TEST_CASE("communicate with input for a child without a stdin pipe is a logic_error") {
  corio::loop lp;
  auto main = []() -> task<void> {
    sp::child c = sp::spawn({"true"});
    CHECK_THROWS_AS((void)co_await c.communicate("data"), std::logic_error);
    CHECK(co_await c.wait() == 0);
  };
  lp.run(main());
}

TEST_CASE("many spawns leave no fd open in the parent") {
  corio::loop lp;
  auto main = []() -> task<void> {
    const int before = open_fds();
    for (int i = 0; i < 60; ++i) {
      sp::child c = sp::spawn({"cat"}, piped());
      const sp::result r = co_await c.communicate("x" + std::to_string(i));
      CHECK(r.out == "x" + std::to_string(i));
      CHECK_THROWS_AS((void)sp::spawn({"corio-no-such-program"}, piped()), std::system_error);
    }
    CHECK(open_fds() == before);
  };
  lp.run(main());
}

TEST_CASE("the child does not inherit the parent's fds above 2 unless close_fds is off") {
  corio::loop lp;
  int p[2];
  REQUIRE(::pipe(p) == 0);  // deliberately not CLOEXEC
  auto main = [&]() -> task<void> {
    const std::string probe =
        "test -e /proc/self/fd/" + std::to_string(p[1]) + " && echo open || echo closed";
    const std::vector<std::string> argv{"sh", "-c", probe};
    CHECK(co_await sp::check_output(argv) == "closed\n");
    CHECK(co_await sp::check_output(argv, sp::options{}.close_fds(false)) == "open\n");
  };
  lp.run(main());
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("destroying a running child kills and reaps it: no zombie is left") {
  pid_t pid = -1;
  {
    sp::child c = sp::spawn({"sleep", "10"});
    pid = c.pid();
    CHECK(::kill(pid, 0) == 0);
  }
  errno = 0;
  CHECK(::kill(pid, 0) == -1);
  CHECK(errno == ESRCH);
  CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);
  CHECK(errno == ECHILD);
}

TEST_CASE("a moved child keeps ownership in its new object") {
  corio::loop lp;
  auto main = []() -> task<void> {
    sp::child a = sp::spawn({"sh", "-c", "exit 7"});
    const pid_t pid = a.pid();
    sp::child b = std::move(a);
    CHECK(a.pid() == -1);
    CHECK(b.pid() == pid);
    CHECK(co_await b.wait() == 7);
  };
  lp.run(main());
}

TEST_CASE("without a pidfd, wait, kill and deadlines still work (kernels before 5.3)") {
  sp::testing::force_no_pidfd(true);
  corio::loop lp;
  auto main = []() -> task<void> {
    sp::child c = sp::spawn({"sh", "-c", "sleep 0.05; exit 5"}, piped());
    CHECK(co_await c.wait() == 5);
    sp::child k = sp::spawn({"sleep", "10"});
    k.kill();
    CHECK(co_await k.wait() == -SIGKILL);
    sp::child late = sp::spawn({"sleep", "10"}, piped());
    CHECK_THROWS_AS((void)co_await late.communicate("", corio::within(100ms)), corio::timed_out);
    CHECK(late.returncode() == -SIGKILL);
  };
  lp.run(main());
  sp::testing::force_no_pidfd(false);
}

TEST_CASE("the child starts with an empty signal mask and SIGPIPE at its default") {
  corio::loop lp;
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  REQUIRE(::pthread_sigmask(SIG_BLOCK, &usr1, nullptr) == 0);  // as a signal_set does
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(::sigaction(SIGPIPE, &ignore, &old) == 0);  // as many servers do
  auto main = []() -> task<void> {
    const std::vector<std::string> usr1_self{"sh", "-c", "kill -USR1 $$; echo survived"};
    const std::vector<std::string> pipe_self{"sh", "-c", "kill -PIPE $$; echo survived"};
    CHECK(co_await sp::call(usr1_self, sp::options{}.out(sp::stdio::null())) == -SIGUSR1);
    CHECK(co_await sp::call(pipe_self, sp::options{}.out(sp::stdio::null())) == -SIGPIPE);
  };
  lp.run(main());
  ::sigaction(SIGPIPE, &old, nullptr);
  ::pthread_sigmask(SIG_UNBLOCK, &usr1, nullptr);
}

namespace {

// A middle process spawns `sleep 1000` with `opts`, reports its pid through a pipe and
// waits to be SIGKILLed by the test. Returns the sleep's pid once the middle is reaped
// (the sleep is then our orphan: the test is its subreaper).
pid_t orphan_a_program(sp::options opts) {
  corio_test::raw_pipe out;
  const pid_t middle = corio_test::fork_child([&] {
    const sp::child c = sp::spawn({"sleep", "1000"}, std::move(opts));
    const pid_t pid = c.pid();
    if (::write(out.write_end(), &pid, sizeof pid) != static_cast<ssize_t>(sizeof pid)) return 1;
    for (;;) ::pause();
  });
  pid_t pid = 0;
  REQUIRE(::read(out.read_end(), &pid, sizeof pid) == static_cast<ssize_t>(sizeof pid));
  REQUIRE(::kill(middle, SIGKILL) == 0);
  corio_test::check_sigkilled_within(middle, 5s, "the middle process");
  return pid;
}

}  // namespace

TEST_CASE("with parent_death_signal the program dies when its parent is SIGKILLed") {
  corio_test::subreaper_scope adopt;
  const pid_t pid = orphan_a_program(sp::options{}.parent_death_signal(SIGKILL));
  corio_test::check_sigkilled_within(pid, 5s, "the program of a SIGKILLed parent");
}

TEST_CASE("without parent_death_signal the program outlives its SIGKILLed parent") {
  corio_test::subreaper_scope adopt;
  const pid_t pid = orphan_a_program(sp::options{});
  CHECK(corio_test::reap_within(pid, 300ms) == -1);  // still running
  REQUIRE(::kill(pid, SIGKILL) == 0);
  CHECK(corio_test::reap_within(pid, 5s) != -1);
}

TEST_CASE("a program started with parent_death_signal gets its stdio, cwd, env, fds and signals as usual") {
  corio::loop lp;
  int leak[2];
  REQUIRE(::pipe(leak) == 0);  // deliberately not CLOEXEC
  auto main = [&]() -> task<void> {
    const auto dying = [] { return sp::options{}.parent_death_signal(SIGKILL); };
    const std::vector<std::string> probe{
        "sh", "-c",
        "pwd; echo $FOO; test -e /proc/self/fd/" + std::to_string(leak[1]) + " && echo open || echo closed; "
        "echo err >&2; exit 3"};
    sp::child c = sp::spawn(probe, dying().out(sp::stdio::pipe()).err(sp::stdio::to_stdout()).cwd("/tmp").env("FOO", "bar"));
    const sp::result r = co_await c.communicate();
    CHECK(r.out == "/tmp\nbar\nclosed\nerr\n");
    CHECK(r.returncode == 3);
    const std::vector<std::string> pipe_self{"sh", "-c", "kill -PIPE $$; echo survived"};
    CHECK(co_await sp::call(pipe_self, dying().out(sp::stdio::null())) == -SIGPIPE);
  };
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(::sigaction(SIGPIPE, &ignore, &old) == 0);
  lp.run(main());
  ::sigaction(SIGPIPE, &old, nullptr);
  ::close(leak[0]);
  ::close(leak[1]);
  const int before = open_fds();
  CHECK_THROWS_WITH_AS((void)sp::spawn({"corio-no-such-program"}, sp::options{}.parent_death_signal(SIGKILL)),
                       "spawn corio-no-such-program: No such file or directory", std::system_error);
  CHECK_THROWS_WITH_AS((void)sp::spawn({"pwd"}, sp::options{}.parent_death_signal(SIGKILL).cwd("/no/such/dir")),
                       "spawn pwd: chdir /no/such/dir: No such file or directory", std::system_error);
  CHECK(open_fds() == before);
}

TEST_CASE("pass_fd hands fds to the child as 3, 4, ... and close_fds still closes the others") {
  // Two pipes whose write ends the child gets as fds 3 and 4; a third fd, open in the
  // parent without close-on-exec, must not reach it. Both posix_spawn and fork + exec.
  for (const int death_signal : {0, SIGKILL}) {
    CAPTURE(death_signal);
    int a[2], b[2];
    REQUIRE(::pipe2(a, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(b, O_CLOEXEC) == 0);
    const int stray = ::fcntl(a[1], F_DUPFD, 20);  // not close-on-exec
    REQUIRE(stray >= 0);
    corio::loop lp;
    std::vector<std::string> argv{"sh", "-c", "echo first >&3; echo second >&4; ls -v /proc/$$/fd"};
    const sp::result r = lp.run([&]() -> task<sp::result> {
      sp::child c = sp::spawn(argv, sp::options{}.out(sp::stdio::pipe()).pass_fd(a[1]).pass_fd(b[1])
                                        .parent_death_signal(death_signal));
      co_return co_await c.communicate({}, corio::within(10s));
    }());
    ::close(a[1]);
    ::close(b[1]);
    ::close(stray);
    char buf[64] = {};
    CHECK(::read(a[0], buf, sizeof buf) == 6);
    CHECK(std::string(buf) == "first\n");
    std::fill(std::begin(buf), std::end(buf), '\0');
    CHECK(::read(b[0], buf, sizeof buf) == 7);
    CHECK(std::string(buf) == "second\n");
    CHECK(r.out == "0\n1\n2\n3\n4\n");  // the shell's fds: no other one reached it
    CHECK(r.returncode == 0);
    ::close(a[0]);
    ::close(b[0]);
  }
}
