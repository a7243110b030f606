// File and fd operations through the ring: data round trips, errors, cancellation.
#include <doctest/doctest.h>

#include "../needs_feature.hpp"

#include <corio/coro/task_group.hpp>
#include <corio/runtime/file_ops.hpp>
#include <corio/runtime/loop.hpp>
#include <corio/runtime/timer.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;
using corio::task;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

std::string temp_path(const char* name) {
  return std::string("/tmp/corio_file_ops_") + std::to_string(::getpid()) + "_" + name;
}

// A pipe closed at scope exit.
struct pipe_fds {
  int r = -1, w = -1;
  pipe_fds() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    r = fds[0];
    w = fds[1];
  }
  ~pipe_fds() {
    ::close(r);
    ::close(w);
  }
};

}  // namespace

TEST_CASE("write, fsync, read at offsets and statx round-trip a file") {
  corio::loop lp;
  const std::string path = temp_path("roundtrip");
  auto main = [&]() -> task<std::string> {
    const int fd = co_await corio::openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    const std::string hello = "hello, ", world = "io_uring";
    CHECK(co_await corio::write(fd, bytes_of(hello), 0) == 7);
    CHECK(co_await corio::write(fd, bytes_of(world), 7) == 8);
    co_await corio::fsync(fd);
    struct statx st = co_await corio::statx(AT_FDCWD, path);
    CHECK(st.stx_size == 15);
    std::string back(15, '\0');
    CHECK(co_await corio::read(fd, std::as_writable_bytes(std::span(back)), 0) == 15);
    co_await corio::close(fd);
    co_await corio::unlinkat(AT_FDCWD, path);
    co_return back;
  };
  CHECK(lp.run(main()) == "hello, io_uring");
  CHECK(::access(path.c_str(), F_OK) != 0);
}

TEST_CASE("readv and writev scatter and gather") {
  corio::loop lp;
  const std::string path = temp_path("vectored");
  auto main = [&]() -> task<std::string> {
    const int fd = co_await corio::openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    char a[] = "abc", b[] = "defg";
    iovec out[2] = {{a, 3}, {b, 4}};
    CHECK(co_await corio::writev(fd, out, 0) == 7);
    char x[2], y[5];
    iovec in[2] = {{x, 2}, {y, 5}};
    CHECK(co_await corio::readv(fd, in, 0) == 7);
    co_await corio::close(fd);
    co_await corio::unlinkat(AT_FDCWD, path);
    co_return std::string(x, 2) + "|" + std::string(y, 5);
  };
  CHECK(lp.run(main()) == "ab|cdefg");
}

TEST_CASE("opening a missing file names the path and the errno text") {
  corio::loop lp;
  auto main = []() -> task<int> { co_return co_await corio::openat(AT_FDCWD, "/no/such/dir/file", O_RDONLY); };
  try {
    lp.run(main());
    FAIL("openat succeeded");
  } catch (const std::system_error& e) {
    CHECK(e.code() == std::errc::no_such_file_or_directory);
    CHECK(std::string(e.what()) == "openat /no/such/dir/file: No such file or directory");
  }
}

TEST_CASE("reading a closed fd fails with EBADF and names the fd") {
  corio::loop lp;
  auto main = []() -> task<int> {
    std::byte buf[4];
    co_return co_await corio::read(987654, buf);
  };
  CHECK_THROWS_WITH_AS(lp.run(main()), "read fd 987654: Bad file descriptor", std::system_error);
}

TEST_CASE("a cancelled read on an empty pipe ends with operation_cancelled and the pipe still works") {
  corio::loop lp;
  pipe_fds p;
  std::stop_source src;
  const std::stop_token token = src.get_token();
  auto main = [&]() -> task<std::string> {
    std::byte buf[16];
    corio::task_group g;
    g.spawn([&]() -> task<void> {
      co_await corio::sleep_for(10ms);
      src.request_stop();
    });
    try {
      co_await corio::read(p.r, buf, corio::at_current_position, {.token = &token, .deadline = {}});
      FAIL("read returned without data");
    } catch (const corio::operation_cancelled& e) {
      CHECK(std::string(e.what()) == "read fd " + std::to_string(p.r) + ": Operation canceled");
    }
    co_await g.wait();
    // The cancelled read consumed nothing: the next write is read whole.
    const std::string msg = "still usable";
    co_await corio::write(p.w, bytes_of(msg));
    const int n = co_await corio::read(p.r, buf);
    co_return std::string(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
  };
  CHECK(lp.run(main()) == "still usable");
}

TEST_CASE("a read past its deadline throws timed_out") {
  corio::loop lp;
  pipe_fds p;
  auto main = [&]() -> task<void> {
    std::byte buf[1];
    co_await corio::read(p.r, buf, corio::at_current_position, corio::within(20ms));
  };
  CHECK_THROWS_AS(lp.run(main()), corio::timed_out);
}

TEST_CASE("poll reports a readable pipe") {
  corio::loop lp;
  pipe_fds p;
  REQUIRE(::write(p.w, "x", 1) == 1);
  auto main = [&]() -> task<int> { co_return co_await corio::poll(p.r, POLLIN); };
  CHECK((lp.run(main()) & POLLIN) != 0);
}

CORIO_TEST_NEEDS("cancel_fd cancels every read pending on an fd and reports how many",
                 corio::kernel_feature::cancel_any) {
  corio::loop lp;
  pipe_fds p;
  int cancelled = 0;
  auto reader = [&]() -> task<void> {
    std::byte buf[4];
    try {
      co_await corio::read(p.r, buf);
    } catch (const corio::operation_cancelled&) {
      ++cancelled;
    }
  };
  auto main = [&]() -> task<int> {
    corio::task_group g;
    g.spawn(reader());
    g.spawn(reader());
    co_await corio::sleep_for(5ms);  // both reads are in the kernel now
    const int found = co_await corio::cancel_fd(p.r);
    co_await g.wait();
    co_return found;
  };
  CHECK(lp.run(main()) == 2);
  CHECK(cancelled == 2);
}

CORIO_TEST_IF("without CANCEL_FD (before 5.19, or disabled) cancel_fd fails with Invalid argument",
              !corio::kernel_feature_on(corio::kernel_feature::cancel_any),
              "this kernel has cancel_any and it is not disabled: the fallback is not taken") {
  corio::loop lp;
  pipe_fds p;
  auto main = [&]() -> task<std::string> {
    try {
      (void)co_await corio::cancel_fd(p.r);
    } catch (const std::system_error& e) {
      CHECK(e.code() == std::errc::invalid_argument);
      co_return e.what();
    }
    co_return "no error";
  };
  CHECK(lp.run(main()) == "cancel fd " + std::to_string(p.r) + ": Invalid argument");
}
