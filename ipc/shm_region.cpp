#include "shm_region.hpp"

#include "../runtime/errors.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace corio {
namespace {

std::string describe(const char* op, const char* name, std::size_t bytes) {
  return std::string(op) + " shm_region '" + (name ? name : "") + "' (" + std::to_string(bytes) + " bytes)";
}

// The size never changes once set, for anyone holding the fd (see shm_region.hpp).
constexpr int region_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

[[noreturn]] void refuse(int fd, const std::string& why) {
  ::close(fd);
  detail::throw_errno(EINVAL, "receive shm_region: " + why);
}

// The size of a received fd, once it is known to be a sealed memfd (its size is final).
std::size_t checked_size(int fd, std::optional<std::size_t> expected_bytes) {
  const std::string problem = detail::sealed_memfd_problem(fd);
  if (!problem.empty())
    refuse(fd, problem);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    detail::throw_errno(e, "fstat received shm_region fd");
  }
  const auto bytes = static_cast<std::size_t>(st.st_size);
  if (st.st_size <= 0)
    refuse(fd, "the received fd has size 0");
  if (expected_bytes && bytes != *expected_bytes)
    refuse(fd, "the received memfd has " + std::to_string(bytes) + " bytes, expected " +
                   std::to_string(*expected_bytes));
  return bytes;
}

std::byte* map_shared(int fd, std::size_t bytes, const std::string& what) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    ::close(fd);
    detail::throw_errno(e, what);
  }
  return static_cast<std::byte*>(p);
}

}  // namespace

// Asking tmpfs to reserve more than this would first push the machine (or cgroup) into
// the OOM killer before fallocate gives up.
std::size_t detail::memory_ceiling() noexcept {
  struct sysinfo si {};
  if (::sysinfo(&si) != 0)
    return static_cast<std::size_t>(-1);
  return (static_cast<std::size_t>(si.totalram) + si.totalswap) * si.mem_unit;
}

// Only memfd_create(MFD_ALLOW_SEALING) makes a file that F_SEAL_SHRINK and F_SEAL_GROW can
// be added to (every other file refuses F_GET_SEALS, or carries F_SEAL_SEAL alone from the
// start), so the seals prove both what the file is and that its size is final.
std::string detail::sealed_memfd_problem(int fd) {
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0)
    return std::string("the received fd is not a memfd (F_GET_SEALS: ") + std::strerror(errno) + ")";
  if ((seals & region_seals) != region_seals)
    return "the received memfd is not sealed against shrinking and growing (seals " + std::to_string(seals) +
           ", need F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): its sender could truncate it under our mapping";
  return {};
}

shm_region shm_region::create(std::size_t bytes, const char* name_for_debug) {
  const char* name = name_for_debug ? name_for_debug : "corio";
  if (bytes == 0)
    throw std::invalid_argument("corio::shm_region::create: size must be at least 1 byte");
  if (bytes > detail::memory_ceiling())
    detail::throw_errno(ENOMEM, describe("create", name, bytes) + ": larger than physical memory plus swap");
  int fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    detail::throw_errno(errno, describe("memfd_create", name, bytes));
  // mode 0 allocates every page now; EINTR (a signal during a large reservation) retries.
  int rc;
  do {
    rc = ::fallocate(fd, 0, 0, static_cast<off_t>(bytes));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int e = errno;
    ::close(fd);
    detail::throw_errno(e, describe("fallocate", name, bytes));
  }
  if (::fcntl(fd, F_ADD_SEALS, region_seals) != 0) {
    int e = errno;
    ::close(fd);
    detail::throw_errno(e, describe("seal (F_ADD_SEALS)", name, bytes));
  }
  return shm_region(fd, map_shared(fd, bytes, describe("mmap", name, bytes)), bytes);
}

namespace {

// One payload byte (SCM_RIGHTS needs at least one) plus room for one fd in the control
// data: the message send_fd sends and receive reads. Not copyable: msg points into it.
struct fd_message {
  explicit fd_message(char b) noexcept : byte(b) {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
  }
  fd_message(const fd_message&) = delete;
  char byte;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
};

}  // namespace

shm_region shm_region::receive(int unix_socket_fd, std::optional<std::size_t> expected_bytes) {
  fd_message m(0);
  msghdr& msg = m.msg;
  ssize_t n;
  do {
    n = ::recvmsg(unix_socket_fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    detail::throw_errno(errno, "receive shm_region on fd " + std::to_string(unix_socket_fd));
  if (n == 0)
    detail::throw_errno(ECONNRESET, "receive shm_region on fd " + std::to_string(unix_socket_fd) +
                                        ": the peer closed the socket");
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  }
  if (fd < 0)
    detail::throw_errno(EBADMSG, "receive shm_region on fd " + std::to_string(unix_socket_fd) +
                                     ": the message carried no file descriptor");
  return adopt(fd, expected_bytes);
}

shm_region shm_region::adopt(int fd, std::optional<std::size_t> expected_bytes) {
  const std::size_t bytes = checked_size(fd, expected_bytes);
  return shm_region(fd, map_shared(fd, bytes, describe("mmap received", "", bytes)), bytes);
}

void send_fd(int unix_socket_fd, const shm_region& region) {
  fd_message m('M');
  msghdr& msg = m.msg;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  int fd = region.fd();
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  do {
    n = ::sendmsg(unix_socket_fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    detail::throw_errno(errno, "send shm_region fd over socket fd " + std::to_string(unix_socket_fd));
}

shm_region::shm_region(shm_region&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

shm_region& shm_region::operator=(shm_region&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

shm_region::~shm_region() { reset(); }

void shm_region::reset() noexcept {
  if (data_ != nullptr)
    ::munmap(data_, size_);
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  data_ = nullptr;
  size_ = 0;
}

}  // namespace corio
