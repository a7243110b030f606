// shm_region: creation, zero fill, sharing across fork and over SCM_RIGHTS, no /dev/shm
// names, clear errors for impossible sizes and broken transfers.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"

#include <corio/ipc/shm_region.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

using corio::shm_region;
using corio_test::exit_status;
using corio_test::fork_child;

namespace {

std::string fd_link(int fd) {
  return std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd)).string();
}

bool all_zero(const shm_region& r) {
  for (std::size_t i = 0; i < r.size(); ++i)
    if (r.data()[i] != std::byte{0})
      return false;
  return true;
}

struct socket_pair {
  int fd[2] = {-1, -1};
  socket_pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0); }
  ~socket_pair() {
    for (int f : fd)
      if (f >= 0)
        ::close(f);
  }
  void close(int i) {
    ::close(fd[i]);
    fd[i] = -1;
  }
};

}  // namespace

TEST_CASE("a new region has the requested size, is zero-filled and is a close-on-exec memfd") {
  auto r = shm_region::create(10'000, "corio-shm-test");
  CHECK(r.size() == 10'000);
  REQUIRE(r.data() != nullptr);
  CHECK(all_zero(r));
  CHECK(fd_link(r.fd()) == "/memfd:corio-shm-test (deleted)");
  CHECK((::fcntl(r.fd(), F_GETFD) & FD_CLOEXEC) != 0);
  r.data()[9'999] = std::byte{7};
  CHECK(r.data()[9'999] == std::byte{7});
}

TEST_CASE("moving a region transfers the mapping and the fd") {
  auto a = shm_region::create(4096, "corio-shm-move");
  std::byte* p = a.data();
  int fd = a.fd();
  shm_region b = std::move(a);
  CHECK(b.data() == p);
  CHECK(b.fd() == fd);
  CHECK(a.data() == nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  CHECK(a.fd() == -1);
  CHECK(a.size() == 0);
  a = std::move(b);
  CHECK(a.data() == p);
}

TEST_CASE("nothing appears under /dev/shm") {
  const std::string name = "corio-shm-devshm-" + std::to_string(::getpid());
  auto r = shm_region::create(1 << 20, name.c_str());
  std::error_code ec;
  int matching = 0;
  for (auto& e : std::filesystem::directory_iterator("/dev/shm", ec))
    if (e.path().filename().string().find(name) != std::string::npos)
      ++matching;
  CHECK(matching == 0);
  CHECK(fd_link(r.fd()).rfind("/memfd:", 0) == 0);
}

TEST_CASE("a forked child's writes are seen by the parent") {
  auto r = shm_region::create(1 << 16, "corio-shm-fork");
  const pid_t pid = fork_child([&] {
    std::memcpy(r.data(), "written by the child", 21);
    r.data()[(1 << 16) - 1] = std::byte{0x5A};
    return 0;
  });
  CHECK(exit_status(pid) == 0);
  CHECK(std::string(reinterpret_cast<const char*>(r.data())) == "written by the child");
  CHECK(r.data()[(1 << 16) - 1] == std::byte{0x5A});
}

TEST_CASE("a region passed over a Unix socket maps the same memory in the receiver") {
  socket_pair sp;
  auto sent = shm_region::create(12'345, "corio-shm-scm");
  corio::send_fd(sp.fd[0], sent);
  auto got = shm_region::receive(sp.fd[1]);
  CHECK(got.size() == 12'345);
  CHECK(got.fd() != sent.fd());
  CHECK(got.data() != sent.data());
  CHECK((::fcntl(got.fd(), F_GETFD) & FD_CLOEXEC) != 0);
  std::memcpy(sent.data() + 100, "same memory", 12);
  CHECK(std::string(reinterpret_cast<const char*>(got.data() + 100)) == "same memory");
}

TEST_CASE("a region created by a child process reaches the parent over SCM_RIGHTS") {
  socket_pair sp;
  const pid_t pid = fork_child([&] {
    auto r = shm_region::create(8192, "corio-shm-from-child");
    std::memcpy(r.data() + 8000, "hello from the child", 21);
    corio::send_fd(sp.fd[0], r);
    return 0;  // the region dies with the child: the parent's fd keeps the memory alive
  });
  sp.close(0);
  auto r = shm_region::receive(sp.fd[1]);
  CHECK(exit_status(pid) == 0);
  CHECK(r.size() == 8192);
  CHECK(std::string(reinterpret_cast<const char*>(r.data() + 8000)) == "hello from the child");
}

TEST_CASE("receive reports a closed peer and a message without a descriptor") {
  {
    socket_pair sp;
    sp.close(0);
    try {
      (void)shm_region::receive(sp.fd[1]);
      FAIL("receive should throw");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ECONNRESET);
      CHECK(std::string(e.what()).find("the peer closed the socket") != std::string::npos);
    }
  }
  {
    socket_pair sp;
    REQUIRE(::write(sp.fd[0], "x", 1) == 1);
    try {
      (void)shm_region::receive(sp.fd[1]);
      FAIL("receive should throw");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == EBADMSG);
      CHECK(std::string(e.what()).find("the message carried no file descriptor") != std::string::npos);
    }
  }
}

TEST_CASE("an impossible size fails at creation with a clear system_error, not SIGBUS later") {
  const std::size_t huge = std::size_t{1} << 50;
  try {
    (void)shm_region::create(huge, "corio-shm-huge");
    FAIL("create should throw");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == ENOMEM);
    CHECK(std::string(e.what()).rfind("create shm_region 'corio-shm-huge' (1125899906842624 bytes): larger than "
                                      "physical memory plus swap",
                                      0) == 0);
  }
  CHECK_THROWS_WITH_AS((void)shm_region::create(0, "zero"), "corio::shm_region::create: size must be at least 1 byte",
                       std::invalid_argument);
}
