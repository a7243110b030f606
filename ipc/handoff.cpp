#include "handoff.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace corio {
namespace detail {
namespace {

std::string kind_name(std::uint32_t kind) {
  switch (static_cast<handoff_kind>(kind)) {
    case handoff_kind::region: return "shm_region";
    case handoff_kind::queue: return "queue";
    case handoff_kind::joinable_queue: return "joinable_queue";
    case handoff_kind::connection: return "connection";
    case handoff_kind::shared_state: return "process object";
  }
  return "unknown kind of object (" + std::to_string(kind) + ")";
}

}  // namespace

// Why fd is not an AF_UNIX SOCK_STREAM socket; empty when it is one.
std::string unix_stream_socket_problem(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return "is not open";
  if (!S_ISSOCK(st.st_mode))
    return "is not a socket";
  int domain = 0, type = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX)
    return "is not a Unix-domain socket (domain " + std::to_string(domain) + ")";
  len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
    return "is not a stream socket (type " + std::to_string(type) + ")";
  return {};
}

namespace {

std::string readable_type(const char* mangled) {
  if (*mangled == '\0')
    return "no element type";
  return demangled_name(mangled).c_str();
}

void close_all(int* fds, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (fds[i] >= 0)
      ::close(fds[i]);
}

// Room for the most fds a handoff carries plus one (so that one fd too many shows as such,
// not as truncated control data), and for the sender's credentials.
constexpr std::size_t control_bytes = CMSG_SPACE(sizeof(int) * (handoff_max_fds + 1)) + CMSG_SPACE(sizeof(ucred));

}  // namespace

std::uint64_t type_fingerprint(const char* mangled, std::size_t size) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64
  for (const char* p = mangled; *p != '\0'; ++p) {
    h ^= static_cast<unsigned char>(*p);
    h *= 0x100000001b3ULL;
  }
  h ^= size;
  h *= 0x100000001b3ULL;
  return h == 0 ? 1 : h;  // 0 means untyped
}

// ---- received_handoff -----------------------------------------------------------------

received_handoff::received_handoff(received_handoff&& o) noexcept
    : header_(o.header_), fds_(std::exchange(o.fds_, {-1, -1, -1})), what_(std::move(o.what_)) {}

received_handoff::~received_handoff() { close_all(fds_.data(), fds_.size()); }

int received_handoff::take_fd(std::size_t i) noexcept { return std::exchange(fds_[i], -1); }

void received_handoff::refuse(const std::string& why) const { throw handoff_error(what_ + ": " + why); }

shm_region received_handoff::take_region(std::size_t i, const char* role) {
  std::optional<std::size_t> expected;
  if (header_.kind == static_cast<std::uint32_t>(handoff_kind::region) ||
      header_.kind == static_cast<std::uint32_t>(handoff_kind::shared_state))
    expected = static_cast<std::size_t>(header_.params[0]);
  try {
    return shm_region::adopt(take_fd(i), expected);  // closes the fd when it refuses
  } catch (const std::system_error& e) {
    refuse(std::string(role) + ": " + e.what());
  }
}

int received_handoff::take_unix_stream_socket(std::size_t i, const char* role) {
  const std::string problem = unix_stream_socket_problem(fds_[i]);
  if (!problem.empty())
    refuse(std::string(role) + ": the received fd " + problem);
  return take_fd(i);
}

void rethrow_as_handoff_error(const received_handoff& m) {
  try {
    throw;
  } catch (const handoff_error&) {
    throw;
  } catch (const std::exception& e) {
    m.refuse(e.what());
  }
}

// ---- handoff_reader -------------------------------------------------------------------

passcred_scope::passcred_scope(int socket_fd, const std::string& what) {
  int on = 0;
  socklen_t len = sizeof on;
  if (::getsockopt(socket_fd, SOL_SOCKET, SO_PASSCRED, &on, &len) != 0)
    throw_errno(errno, what + ": SO_PASSCRED on fd " + std::to_string(socket_fd));
  if (on != 0)
    return;
  on = 1;
  if (::setsockopt(socket_fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
    throw_errno(errno, what + ": SO_PASSCRED on fd " + std::to_string(socket_fd));
  restore_fd_ = socket_fd;
}

passcred_scope::~passcred_scope() {
  if (restore_fd_ < 0)
    return;
  const int off = 0;
  (void)::setsockopt(restore_fd_, SOL_SOCKET, SO_PASSCRED, &off, sizeof off);
}

// SO_PASSCRED first: the kernel then reports the sender's pid as seen from here.
handoff_reader::handoff_reader(int socket_fd, handoff_expectation expect)
    : socket_(socket_fd), passcred_(socket_fd, expect.what), expect_(std::move(expect)) {
  message_.what_ = expect_.what;
}

void handoff_reader::keep_fds(const cmsghdr& rights) {
  const std::size_t count = (rights.cmsg_len - CMSG_LEN(0)) / sizeof(int);
  for (std::size_t k = 0; k < count; ++k) {
    int fd;
    std::memcpy(&fd, CMSG_DATA(&rights) + k * sizeof(int), sizeof fd);
    if (fds_got_ < handoff_max_fds && got_ == 0) {
      message_.fds_[fds_got_++] = fd;
    } else {
      ::close(fd);  // more than a handoff carries, or fds with a later part of the message
      extra_fds_ = true;
    }
  }
}

bool handoff_reader::step(int flags) {
  auto* bytes = reinterpret_cast<char*>(&message_.header_);
  iovec iov{bytes + got_, sizeof(handoff_header) - got_};
  alignas(cmsghdr) char control[control_bytes];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(socket_, &msg, MSG_CMSG_CLOEXEC | flags);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN)
      return false;
    throw_errno(errno, expect_.what + ": recvmsg on fd " + std::to_string(socket_));
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET)
      continue;
    if (c->cmsg_type == SCM_RIGHTS) {
      keep_fds(*c);
    } else if (c->cmsg_type == SCM_CREDENTIALS && got_ == 0) {
      ucred cred{};
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      credential_pid_ = cred.pid;
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0)
    extra_fds_ = true;  // the kernel closed the fds that did not fit
  if (n == 0) {
    if (got_ == 0)
      message_.refuse("the peer closed the socket before sending anything");
    message_.refuse("the message was cut short: " + std::to_string(got_) + " of " +
                    std::to_string(sizeof(handoff_header)) + " bytes arrived before the peer closed the socket");
  }
  got_ += static_cast<std::size_t>(n);
  return got_ == sizeof(handoff_header);
}

void handoff_reader::wait_readable() const {
  pollfd p{socket_, POLLIN, 0};
  while (::poll(&p, 1, -1) < 0)
    if (errno != EINTR)
      throw_errno(errno, expect_.what + ": poll on fd " + std::to_string(socket_));
}

received_handoff handoff_reader::finish() {
  const handoff_header& h = message_.header_;
  auto refuse = [this](const std::string& why) { message_.refuse(why); };
  if (h.magic != handoff_magic)
    refuse("not a corio handoff message (the first 8 bytes are not \"corioHO1\": something else wrote to the socket)");
  if (h.version != handoff_version)
    refuse("handoff version " + std::to_string(h.version) + ", this program speaks " + std::to_string(handoff_version));
  if (h.kind != static_cast<std::uint32_t>(expect_.kind))
    refuse("the peer sent a " + kind_name(h.kind) + ", expected a " +
           kind_name(static_cast<std::uint32_t>(expect_.kind)));
  const char* name_end = static_cast<const char*>(std::memchr(h.type_name, '\0', sizeof h.type_name));
  if (name_end == nullptr)
    refuse("the element type's name is not terminated");
  // A corio sender zero-fills what it does not use: anything else there is garbage.
  const bool name_tail_clear = std::all_of(name_end, h.type_name + sizeof h.type_name, [](char c) { return c == 0; });
  const std::size_t params_used = h.kind == static_cast<std::uint32_t>(handoff_kind::queue) ||
                                          h.kind == static_cast<std::uint32_t>(handoff_kind::joinable_queue)
                                      ? 2
                                      : 1;
  const bool params_clear =
      std::all_of(h.params + params_used, h.params + std::size(h.params), [](std::uint64_t p) { return p == 0; });
  if (!name_tail_clear || !params_clear)
    refuse("the header's unused bytes are not zero (a corio sender zero-fills them: this message is corrupt)");
  if (h.type_fingerprint != expect_.element.fingerprint ||
      std::strncmp(h.type_name, expect_.element.mangled, sizeof h.type_name - 1) != 0)
    refuse("type mismatch: the sender's " + kind_name(h.kind) + " carries " +
           readable_type(h.type_name) + ", this receiver expects " + readable_type(expect_.element.mangled));
  if (h.fd_count != expect_.fd_count)
    refuse("the message announces " + std::to_string(h.fd_count) + " fds, a " + kind_name(h.kind) + " has " +
           std::to_string(expect_.fd_count));
  if (extra_fds_)
    refuse("more fds arrived than the message announces (" + std::to_string(h.fd_count) + ")");
  if (fds_got_ != expect_.fd_count)
    refuse(fds_got_ == 0 ? std::string("no fd was attached to the message")
                         : std::to_string(fds_got_) + " fds arrived, the message announces " +
                               std::to_string(h.fd_count));
  if (expect_.same_pid_namespace && credential_pid_ == 0)
    refuse("the message carries no sender credentials (SCM_CREDENTIALS), or the sender's pid is not visible in this "
           "pid namespace: dead-process recovery needs to know the sender by pid");
  if (expect_.same_pid_namespace && credential_pid_ != h.sender_pid)
    refuse("the sender is in another pid namespace (it calls itself pid " + std::to_string(h.sender_pid) +
           ", here it is pid " + std::to_string(credential_pid_) +
           "): dead-process recovery names processes by pid and would free the claims of live ones");
  return std::move(message_);
}

task<received_handoff> async_receive_message(handoff_reader reader) {
  while (!reader.step(MSG_DONTWAIT))
    co_await corio::poll(reader.socket_fd(), POLLIN);
  co_return reader.finish();
}

// ---- sending --------------------------------------------------------------------------

void send_handoff(int socket_fd, handoff_kind kind, type_identity element, const handoff_parts& parts,
                  const std::string& what) {
  handoff_header h{};
  h.magic = handoff_magic;
  h.version = handoff_version;
  h.kind = static_cast<std::uint32_t>(kind);
  h.fd_count = parts.fd_count;
  h.sender_pid = ::getpid();
  h.type_fingerprint = element.fingerprint;
  for (std::size_t i = 0; i < parts.params.size(); ++i) h.params[i] = parts.params[i];
  // A longer name is cut: the fingerprint covers all of it.
  std::strncpy(h.type_name, element.mangled, sizeof h.type_name - 1);

  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * handoff_max_fds) + CMSG_SPACE(sizeof(ucred))] = {};
  const auto* bytes = reinterpret_cast<const char*>(&h);
  iovec iov{const_cast<char*>(bytes), sizeof h};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * parts.fd_count) + CMSG_SPACE(sizeof(ucred));
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * parts.fd_count);
  std::memcpy(CMSG_DATA(c), parts.fds.data(), sizeof(int) * parts.fd_count);
  c = CMSG_NXTHDR(&msg, c);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_CREDENTIALS;
  c->cmsg_len = CMSG_LEN(sizeof(ucred));
  const ucred cred{::getpid(), ::geteuid(), ::getegid()};  // the kernel checks them
  std::memcpy(CMSG_DATA(c), &cred, sizeof cred);

  std::size_t done = 0;
  while (done < sizeof h) {
    ssize_t n;
    if (done == 0) {
      n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL);  // the fds go with the first byte
    } else {
      n = ::send(socket_fd, bytes + done, sizeof h - done, MSG_NOSIGNAL);
    }
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
    } else if (errno == EAGAIN) {  // a non-blocking socket with a full buffer
      pollfd p{socket_fd, POLLOUT, 0};
      (void)::poll(&p, 1, -1);
    } else if (errno != EINTR) {
      throw_errno(errno, what + ": sendmsg on fd " + std::to_string(socket_fd));
    }
  }
}

}  // namespace detail

// ---- inheritance ----------------------------------------------------------------------

child_handoff::child_handoff() {
  auto [parent, child] = unix_stream::pair();
  parent_end_ = std::move(parent);
  child_end_ = std::move(child);
}

subprocess::child child_handoff::spawn(std::vector<std::string> argv, subprocess::options opts) {
  if (!child_end_.is_open())
    throw std::logic_error("corio::child_handoff::spawn: the child's end went to a child already");
  const int number = 3 + opts.passed_fd_count();
  opts.pass_fd(child_end_.fd()).env(handoff_fd_variable, std::to_string(number));
  subprocess::child c = subprocess::spawn(std::move(argv), std::move(opts));
  child_end_.close();  // the child's copy is its own now; ours would hide its exit
  return c;
}

unix_stream handoff_from_parent() {
  const std::string what = "corio::handoff_from_parent";
  const char* value = std::getenv(handoff_fd_variable);
  if (value == nullptr)
    throw handoff_error(what + ": " + handoff_fd_variable +
                        " is not set (this program was not started by corio::child_handoff::spawn, "
                        "or the handoff socket was taken already)");
  const std::string_view text(value);
  int fd = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), fd);
  if (ec != std::errc() || end != text.data() + text.size() || fd < 3)
    throw handoff_error(what + ": " + handoff_fd_variable + "=\"" + std::string(text) + "\" is not an fd number above 2");
  ::unsetenv(handoff_fd_variable);
  const std::string problem = detail::unix_stream_socket_problem(fd);
  if (!problem.empty())
    throw handoff_error(what + ": fd " + std::to_string(fd) + " (" + handoff_fd_variable + ") " + problem);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return unix_stream(fd);
}

}  // namespace corio
