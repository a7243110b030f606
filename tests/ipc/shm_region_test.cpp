// shm_region: creation, zero fill, sharing across fork and over SCM_RIGHTS, no /dev/shm
// names, clear errors for impossible sizes and broken transfers.
#include <doctest/doctest.h>

#include "ipc_test_support.hpp"

#include <corio/ipc/shm_region.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

using corio::shm_region;
using corio_test::exit_status;
using corio_test::fork_child;
using corio_test::raw_pipe;
using corio_test::socket_pair;

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

namespace {

// Sends any fd the way send_fd sends a region's: what a sender that is not corio can do.
void send_raw_fd(int socket_fd, int fd) {
  char byte = 'M';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  REQUIRE(::sendmsg(socket_fd, &msg, MSG_NOSIGNAL) == 1);
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

// What receive throws for the fd `fd` (closed here after sending), or "<mapped>".
std::string receive_error(int fd, std::optional<std::size_t> expected = std::nullopt) {
  socket_pair sp;
  send_raw_fd(sp.fd[0], fd);
  ::close(fd);
  const std::size_t before = open_fd_count();
  try {
    (void)shm_region::receive(sp.fd[1], expected);
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EINVAL);
    CHECK(open_fd_count() == before);  // the received fd was closed, not leaked
    return e.what();
  }
  return "<mapped>";
}

}  // namespace

TEST_CASE("a new region is sealed against shrinking and growing, so its size is final") {
  auto r = shm_region::create(8192, "corio-shm-sealed");
  CHECK(::fcntl(r.fd(), F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
  CHECK(::ftruncate(r.fd(), 4096) == -1);
  CHECK(errno == EPERM);
  CHECK(::ftruncate(r.fd(), 1 << 20) == -1);
  CHECK(errno == EPERM);
  CHECK(::fcntl(r.fd(), F_ADD_SEALS, F_SEAL_WRITE) == -1);  // F_SEAL_SEAL: the seals are final too
}

TEST_CASE("a sender that truncates its memfd after sending cannot make the receiver die of SIGBUS") {
  socket_pair sp;
  raw_pipe sender_says;
  const pid_t sender = fork_child([&] {
    auto r = shm_region::create(1 << 16, "corio-shm-truncating-sender");
    corio::send_fd(sp.fd[0], r);
    const int rc = ::ftruncate(r.fd(), 0);  // a peer trying to pull the pages from under the receiver
    const std::string said = rc == 0 ? "truncated" : std::string("refused: ") + std::strerror(errno);
    (void)!::write(sender_says.write_end(), said.data(), said.size());
    return 0;
  });
  sender_says.close_write();
  sp.close(0);
  auto got = shm_region::receive(sp.fd[1], std::size_t{1} << 16);
  CHECK(exit_status(sender) == 0);
  CHECK(sender_says.read_all() == "refused: Operation not permitted");
  // Touch every page in a child: if the truncation had gone through, this would be SIGBUS,
  // and the child's death is reported here rather than killing the test run.
  const pid_t reader = fork_child([&] {
    unsigned sum = 0;
    for (std::size_t i = 0; i < got.size(); i += 4096)
      sum += static_cast<unsigned>(*static_cast<volatile std::byte*>(got.data() + i));
    return sum == 0 ? 0 : 1;
  });
  int status = 0;
  REQUIRE(::waitpid(reader, &status, 0) == reader);
  CHECK_MESSAGE(WIFEXITED(status), "the receiver was killed by signal ", WTERMSIG(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("receive refuses an unsealed memfd, a regular file and a memfd of the wrong size") {
  const std::string refused = "receive shm_region: ";
  {
    const int fd = ::memfd_create("corio-unsealed", MFD_CLOEXEC);  // sealing not even allowed
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 4096) == 0);
    CHECK(receive_error(fd) == refused +
                                   "the received memfd is not sealed against shrinking and growing (seals 1, need "
                                   "F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): its sender could truncate it under our "
                                   "mapping: Invalid argument");
  }
  {
    const int fd = ::memfd_create("corio-sealable", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, 4096) == 0);
    REQUIRE(::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);  // may still grow: not enough
    CHECK(receive_error(fd).rfind(refused + "the received memfd is not sealed against shrinking and growing (seals 2,",
                                  0) == 0);
  }
  {
    char path[] = "/tmp/corio-shm-regular-XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::unlink(path);
    REQUIRE(::ftruncate(fd, 4096) == 0);
    CHECK(receive_error(fd) ==
          refused + "the received fd is not a memfd (F_GET_SEALS: Invalid argument): Invalid argument");
  }
  {
    auto r = shm_region::create(4096, "corio-shm-wrong-size");
    CHECK(receive_error(::dup(r.fd()), 8192) ==
          refused + "the received memfd has 4096 bytes, expected 8192: Invalid argument");
    CHECK(receive_error(::dup(r.fd()), 4096) == "<mapped>");
  }
}
